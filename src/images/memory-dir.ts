import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statfsSync } from "node:fs";
import path from "node:path";
import { ImageError } from "./reference.js";
import { isAlive } from "../processes.js";

const TMPFS_MAGIC = 0x01021994;
const SHM = "/dev/shm";

/**
 * A folder in memory (/dev/shm) of this process, named `<prefix>-<pid>-…`; those a process that
 * died left behind (a crash between making and removing one) are removed first.
 */
export function memoryDir(prefix: string): string {
  if (!existsSync(SHM) || statfsSync(SHM).type !== TMPFS_MAGIC) throw new ImageError(`Slipway keeps built images and registry credentials in memory, in ${SHM}, which is not a tmpfs on this machine: mount one there (as most Linux systems do)`);
  for (const entry of readdirSync(SHM)) {
    const owner = new RegExp(`^${prefix}-(\\d+)-`).exec(entry)?.[1];
    if (owner && !isAlive(Number(owner))) removeMemoryDir(path.join(SHM, entry));
  }
  const dir = mkdtempSync(path.join(SHM, `${prefix}-${process.pid}-`));
  chmodSync(dir, 0o700);
  return dir;
}

export function removeMemoryDir(dir: string): void {
  // A root runner's built images have a tmpfs of their own there.
  spawnSync("umount", ["--lazy", dir], { stdio: "ignore" });
  rmSync(dir, { recursive: true, force: true });
}


