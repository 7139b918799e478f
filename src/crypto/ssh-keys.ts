import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";

/**
 * Ed25519 key pairs in OpenSSH's own formats, made with node:crypto: the `authorized_keys`
 * public key line, its `SHA256:` fingerprint as ssh-keygen prints it, and the private key as an
 * unencrypted `openssh-key-v1` file that `ssh -i` accepts (node:crypto writes only PKCS#8,
 * which OpenSSH reads for ed25519 only in recent versions).
 */

export interface SshKeyPair {
  /** `ssh-ed25519 AAAA… comment`, one line for authorized_keys or a provider's deploy key form. */
  publicKey: string;
  /** `SHA256:…` (unpadded base64), as `ssh-keygen -lf` shows it. */
  fingerprint: string;
  /** `-----BEGIN OPENSSH PRIVATE KEY-----…`, an identity file for `ssh -i`. Secret. */
  privateKey: string;
}

const KEY_TYPE = "ssh-ed25519";
const AUTH_MAGIC = Buffer.from("openssh-key-v1\0", "latin1");
/** The cipher "none" pads the private section to multiples of 8 bytes. */
const BLOCK_SIZE = 8;

/** RFC 4251 `string`: a uint32 length, then the bytes. */
function sshString(data: Buffer | string): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** The wire-format public key blob: string "ssh-ed25519", string key (32 bytes). */
function publicBlob(publicKey: Buffer): Buffer {
  return Buffer.concat([sshString(KEY_TYPE), sshString(publicKey)]);
}

export function fingerprintOfBlob(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** The fingerprint of an OpenSSH public key line (`type base64 [comment]`). */
export function fingerprintOf(publicKeyLine: string): string {
  const [, base64] = publicKeyLine.trim().split(/\s+/);
  if (!base64) throw new Error("not an OpenSSH public key line");
  return fingerprintOfBlob(Buffer.from(base64, "base64"));
}

/**
 * PROTOCOL.key: magic, cipher/kdf "none", one public key, then the private section (two equal
 * check integers, key type, public key, seed‖public key, comment, padding 1, 2, 3…).
 */
export function encodeOpenSshPrivateKey(seed: Buffer, publicKey: Buffer, comment: string): string {
  if (seed.length !== 32 || publicKey.length !== 32) throw new Error("an ed25519 key has a 32-byte seed and a 32-byte public key");
  const check = randomBytes(4);
  const section = Buffer.concat([check, check, sshString(KEY_TYPE), sshString(publicKey), sshString(Buffer.concat([seed, publicKey])), sshString(comment)]);
  const padding = Buffer.from(Array.from({ length: (BLOCK_SIZE - (section.length % BLOCK_SIZE)) % BLOCK_SIZE }, (_, i) => i + 1));
  const body = Buffer.concat([
    AUTH_MAGIC,
    sshString("none"),
    sshString("none"),
    sshString(Buffer.alloc(0)),
    uint32(1),
    sshString(publicBlob(publicKey)),
    sshString(Buffer.concat([section, padding])),
  ]);
  const lines = body.toString("base64").match(/.{1,70}/g)!;
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join("\n")}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

/** A new ed25519 key pair; `comment` ends the public key line and is kept in the private key. */
export function generateEd25519KeyPair(comment: string): SshKeyPair {
  if (/[\s\0]/.test(comment)) throw new Error("an SSH key comment has no whitespace");
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const pub = Buffer.from(publicKey.export({ format: "jwk" }).x!, "base64url");
  const seed = Buffer.from(privateKey.export({ format: "jwk" }).d!, "base64url");
  try {
    const blob = publicBlob(pub);
    return {
      publicKey: `${KEY_TYPE} ${blob.toString("base64")} ${comment}`,
      fingerprint: fingerprintOfBlob(blob),
      privateKey: encodeOpenSshPrivateKey(seed, pub, comment),
    };
  } finally {
    seed.fill(0);
  }
}
