import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from "node:crypto";
import { secretValueProblem } from "../crypto/masking.js";
import { classifyEncryptedFile, reencryptHint, slipwayEncryptedPrefix } from "../pipeline/encrypted.js";

/**
 * Slipway's encrypted env files (Codeship's `encrypted_env_file`). Each `NAME=value` entry is sealed
 * on its own line, `slipway:v1:` + base64url(ephemeral X25519 public key ‖ nonce ‖ AES-256-GCM
 * ciphertext and tag), for the project's X25519 public key: anyone who may read the project can add
 * or replace a line without being able to read the others, and a broken line is named by its number.
 * The AES key is HKDF-SHA256 of the shared secret, bound to the project and both public keys, so a
 * line copied into another project's repository does not open there.
 */

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** An env file is a handful of variables; this bounds what a runner reads and the server opens. */
export const ENV_FILE_MAX_BYTES = 64 * 1024;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A problem with an env file; the message names the file and, when there is one, the line. */
export class EnvFileError extends Error {
  override name = "EnvFileError";
}

export interface EnvEntry {
  name: string;
  value: string;
  /** 1-based line of the file it came from. */
  line: number;
}

export interface EnvFileKeyPair {
  /** Raw 32-byte X25519 public key. */
  publicKey: Buffer;
  /** Raw 32-byte X25519 private key. */
  privateKey: Buffer;
}

export function generateEnvFileKeyPair(): EnvFileKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync("x25519");
  return { publicKey: Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url"), privateKey: Buffer.from(privateKey.export({ format: "jwk" }).d!, "base64url") };
}

/** The public key as given to users (base64 of the raw key); base64url is accepted too. */
export const formatPublicKey = (raw: Buffer): string => raw.toString("base64");

export function parsePublicKey(text: string): Buffer {
  const trimmed = text.trim();
  const raw = /^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed.replace(/-/g, "+").replace(/_/g, "/"), "base64") : Buffer.alloc(0);
  if (raw.length !== KEY_BYTES) throw new EnvFileError("the public key is 32 bytes in base64, as GET /api/v1/projects/ID/env-file-key answers it");
  return raw;
}

const publicKeyObject = (raw: Buffer): KeyObject => createPublicKey({ key: { kty: "OKP", crv: "X25519", x: raw.toString("base64url") }, format: "jwk" });

function lineKey(projectId: string, shared: Buffer, ephemeral: Buffer, recipient: Buffer): Buffer {
  const info = Buffer.concat([Buffer.from(`slipway/env-file/v1\0${projectId}\0`, "utf8"), ephemeral, recipient]);
  return Buffer.from(hkdfSync("sha256", shared, Buffer.alloc(0), info, KEY_BYTES));
}

/** Seals one line of plaintext for the project's public key. */
export function sealLine(projectId: string, recipient: Buffer, plaintext: string): string {
  const { publicKey, privateKey } = generateKeyPairSync("x25519");
  const ephemeral = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey, publicKey: publicKeyObject(recipient) });
  } catch {
    // A low-order point gives no shared secret: it is not any project's key.
    throw new EnvFileError("that public key is not a project's key; copy it from GET /api/v1/projects/ID/env-file-key");
  }
  const key = lineKey(projectId, shared, ephemeral, recipient);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()]);
  return slipwayEncryptedPrefix + Buffer.concat([ephemeral, nonce, body]).toString("base64url");
}

/** Opens one sealed line, or undefined when it does not open (changed, truncated, or for another project or key). */
export function openLine(projectId: string, pair: EnvFileKeyPair, line: string): string | undefined {
  const encoded = line.trim().slice(slipwayEncryptedPrefix.length);
  if (!/^[A-Za-z0-9_-]+$/.test(encoded)) return undefined;
  const raw = Buffer.from(encoded, "base64url");
  if (raw.length < KEY_BYTES + NONCE_BYTES + TAG_BYTES) return undefined;
  const ephemeral = raw.subarray(0, KEY_BYTES);
  try {
    const privateKey = createPrivateKey({ key: { kty: "OKP", crv: "X25519", x: pair.publicKey.toString("base64url"), d: pair.privateKey.toString("base64url") }, format: "jwk" });
    // Throws for a low-order ephemeral key, whose shared secret would be known to anyone.
    const key = lineKey(projectId, diffieHellman({ privateKey, publicKey: publicKeyObject(ephemeral) }), ephemeral, pair.publicKey);
    const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(KEY_BYTES, KEY_BYTES + NONCE_BYTES));
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    const plain = Buffer.concat([decipher.update(raw.subarray(KEY_BYTES + NONCE_BYTES, raw.length - TAG_BYTES)), decipher.final()]);
    return plain.toString("utf8");
  } catch {
    return undefined;
  }
}

/**
 * A plain env file, as Docker reads `env_file`: one `NAME=value` a line, the value taken literally
 * (no quotes removed, no `$` expanded); blank lines and lines starting with `#` are skipped.
 */
export function parseEnvText(text: string, file: string): EnvEntry[] {
  const entries: EnvEntry[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/\r$/, "");
    if (line.trim() === "" || line.trimStart().startsWith("#")) return;
    entries.push(parseEntry(line.trimStart(), `${file} line ${i + 1}`, i + 1));
  });
  return entries;
}

function parseEntry(text: string, where: string, line: number): EnvEntry {
  const eq = text.indexOf("=");
  const name = eq < 0 ? text : text.slice(0, eq);
  if (eq < 0 || !NAME.test(name)) throw new EnvFileError(`${where}: expected NAME=value with a variable name of letters, digits and _ (not starting with a digit)`);
  const value = text.slice(eq + 1);
  if (value.includes("\0")) throw new EnvFileError(`${where}: the value of ${name} holds a NUL byte, which no environment variable can`);
  return { name, value, line };
}

/** Secret values must be maskable in logs; the message says why a short one is refused. */
export function checkSecretEntry(entry: EnvEntry, where: string): void {
  const problem = secretValueProblem(entry.value);
  if (problem) throw new EnvFileError(`${where}: ${entry.name}: ${problem}; put settings that are not secret in the service's environment instead`);
}

/** Encrypts a plain env file for the project: one sealed line per entry, comments and blank lines dropped. */
export function encryptEnvText(projectId: string, recipient: Buffer, text: string, file: string): string {
  const kind = classifyEncryptedFile(text);
  if (kind === "slipway") throw new EnvFileError(`${file} is already encrypted (its lines start with ${slipwayEncryptedPrefix})`);
  if (kind === "codeship") throw new EnvFileError(`${file} looks encrypted with Codeship's key: decrypt it with "jet decrypt" first, then encrypt the plain file`);
  const entries = parseEnvText(text, file);
  if (entries.length === 0) throw new EnvFileError(`${file} has no NAME=value line to encrypt`);
  for (const e of entries) checkSecretEntry(e, `${file} line ${e.line}`);
  return entries.map((e) => sealLine(projectId, recipient, `${e.name}=${e.value}`) + "\n").join("");
}

/** Each sealed line of a file opened, with its line number; every failure names the file and line. */
export function openEnvText(projectId: string, pair: EnvFileKeyPair | undefined, text: string, file: string): Array<{ line: number; plaintext: string }> {
  const kind = classifyEncryptedFile(text);
  if (kind === "codeship") throw new EnvFileError(`${file} is encrypted with Codeship's key, which Slipway cannot open: decrypt it with "jet decrypt", then ${reencryptHint(file, projectId)}`);
  if (kind === "plaintext") throw new EnvFileError(`${file} is not encrypted in Slipway's format (every line must start with ${slipwayEncryptedPrefix}): ${reencryptHint(file, projectId)}`);
  const opened: Array<{ line: number; plaintext: string }> = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const plaintext = pair && openLine(projectId, pair, line);
    if (plaintext === undefined) {
      throw new EnvFileError(`${file} line ${i + 1} does not open with this project's key: it was changed, or encrypted for another project; ${reencryptHint(file, projectId)}`);
    }
    opened.push({ line: i + 1, plaintext });
  });
  return opened;
}

/** The variables of an encrypted env file, each checked as a secret (its value will be masked). */
export function openEnvFile(projectId: string, pair: EnvFileKeyPair | undefined, text: string, file: string): EnvEntry[] {
  return openEnvText(projectId, pair, text, file).map(({ line, plaintext }) => {
    const where = `${file} line ${line}`;
    const entry = parseEntry(plaintext, where, line);
    checkSecretEntry(entry, where);
    return entry;
  });
}
