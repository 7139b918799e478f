import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, statSync, writeSync } from "node:fs";
import path from "node:path";

/** A key-encryption key and the short id stored beside everything it wraps. */
export interface MasterKey {
  id: string;
  key: Buffer;
}

export class MasterKeyError extends Error {}

export function masterKeyFrom(key: Buffer): MasterKey {
  if (key.length !== 32) throw new MasterKeyError("a master key is 32 bytes (64 hex digits or 44 base64 characters)");
  const id = createHash("sha256").update("slipway-kek-id\0").update(key).digest("hex").slice(0, 16);
  return { id, key };
}

export function parseMasterKey(text: string): MasterKey {
  const t = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, "hex") : Buffer.from(t, "base64");
  return masterKeyFrom(key);
}

export function generateMasterKey(): MasterKey {
  return masterKeyFrom(randomBytes(32));
}

export function encodeMasterKey(k: MasterKey): string {
  return k.key.toString("base64");
}

export const keyFileName = "master.key";
/** Written before a rotation touches the database, so a crash mid-rotation never strands data. */
export const nextKeyFileName = "master.key.next";

/**
 * The keys this process may unwrap with: the configured one, plus the next one while a
 * rotation is in flight. `current` is what new data keys are wrapped with.
 */
export interface Keyring {
  current: MasterKey;
  all: MasterKey[];
  /** The key file, when the key comes from one rather than from SLIPWAY_MASTER_KEY. */
  file?: string;
}

export function loadKeyring(dataDir: string, envKey: string | undefined): { keyring: Keyring; created: boolean } {
  if (envKey) {
    const current = parseMasterKey(envKey);
    return { keyring: { current, all: [current] }, created: false };
  }
  const file = path.join(dataDir, keyFileName);
  const next = path.join(dataDir, nextKeyFileName);
  let created = false;
  if (!existsSync(file)) {
    writeKeyFile(file, generateMasterKey());
    created = true;
  }
  const current = readKeyFile(file);
  const all = [current];
  if (existsSync(next)) all.push(readKeyFile(next));
  return { keyring: { current, all, file }, created };
}

export function readKeyFile(file: string): MasterKey {
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) {
    throw new MasterKeyError(`${file} is readable by other users (mode ${mode.toString(8)}); run: chmod 600 ${file}`);
  }
  return parseMasterKey(readFileSync(file, "utf8"));
}

/** Creates the file exclusively with mode 0600; it and its directory entry are on disk before this returns. */
export function writeKeyFile(file: string, key: MasterKey): void {
  const fd = openSync(file, "wx", 0o600);
  try {
    writeSync(fd, encodeMasterKey(key) + "\n");
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  syncDir(path.dirname(file));
}

export function promoteNextKeyFile(dataDir: string): void {
  renameSync(path.join(dataDir, nextKeyFileName), path.join(dataDir, keyFileName));
  syncDir(dataDir);
}

/** A next key whose rotation never committed is set aside, never deleted: keys are not thrown away. */
export function setAsideNextKeyFile(dataDir: string): void {
  const next = path.join(dataDir, nextKeyFileName);
  if (existsSync(next)) renameSync(next, path.join(dataDir, `master.key.unused-${Date.now()}`));
  syncDir(dataDir);
}

function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
