import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

const file = (dataDir: string) => path.join(dataDir, "server.pid");

/** Marks the data dir as served by this process, so offline-only admin commands can refuse to run. */
export function claimDataDir(dataDir: string): () => void {
  writeFileSync(file(dataDir), `${process.pid}\n`, { mode: 0o600 });
  return () => rmSync(file(dataDir), { force: true });
}

export function runningServerPid(dataDir: string): number | undefined {
  if (!existsSync(file(dataDir))) return undefined;
  const pid = Number(readFileSync(file(dataDir), "utf8").trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}
