import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import path from "node:path";

export type LockPurpose = "serve" | "rotate-master-key" | "admin";

export interface LockHolder {
  pid: number;
  purpose: LockPurpose;
}

export class DataDirBusyError extends Error {}

const file = (dataDir: string) => path.join(dataDir, "server.pid");

/**
 * Takes the data dir for this process (created atomically; a lock left by a dead process is taken
 * over). Serving and key rotation need it alone; other admin commands take it when nobody holds it,
 * so that no rotation can start under them. Returns the release function.
 */
export function claimDataDir(dataDir: string, purpose: LockPurpose): () => void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  for (;;) {
    try {
      const fd = openSync(file(dataDir), "wx", 0o600);
      try {
        writeSync(fd, `${process.pid} ${purpose}\n`);
      } finally {
        closeSync(fd);
      }
      return () => rmSync(file(dataDir), { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = lockHolder(dataDir);
      if (holder) throw new DataDirBusyError(`${describe(holder)} is using ${dataDir}`);
      rmSync(file(dataDir), { force: true });
    }
  }
}

/** The live process holding the data dir, if any. */
export function lockHolder(dataDir: string): LockHolder | undefined {
  let text: string;
  try {
    text = readFileSync(file(dataDir), "utf8");
  } catch {
    return undefined;
  }
  const [pidText, purpose = "serve"] = text.trim().split(/\s+/);
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return { pid, purpose: purpose as LockPurpose };
  } catch {
    return undefined;
  }
}

export function describe(holder: LockHolder): string {
  return holder.purpose === "serve" ? `a Slipway server (pid ${holder.pid})` : `slipway ${holder.purpose} (pid ${holder.pid})`;
}
