import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";
import { openStream, sealStream } from "../crypto/sealed-stream.js";
import { WORKSPACE, type Sandbox } from "../sandbox/backend.js";
import type { ArchiveStorage } from "./archive-storage.js";

/**
 * A workspace's /workspace as one object in storage: tar, made and unpacked inside the sandbox,
 * compressed with zstd and sealed in authenticated chunks (sealed-stream) with the workspace's
 * key, on the way, in memory. The plaintext never touches the host's disk.
 */

export class ArchiveError extends Error {}

/** The longest an archive or a restore may take: a stuck one must not hold a stop (or every other) forever. */
const ARCHIVE_TIMEOUT_MS = 30 * 60_000;

/** A fresh name for an archive of the workspace: a new stop never overwrites the archive the last one kept. */
export const archiveName = (workspaceId: string): string => `${workspaceId}-${randomBytes(6).toString("hex")}.tar.zst.sls`;

/** Bound to the object's name: an archive put in the place of another (of another workspace, or older) does not open. */
const purpose = (name: string) => `workspace-archive\0${name}`;

/** Writes the sandbox's /workspace into storage as `name`; resolves to the stored size. */
export async function saveWorkspace(sandbox: Sandbox, key: Buffer, storage: ArchiveStorage, name: string): Promise<number> {
  const abort = new AbortController();
  const zstd = compressor(["-q", "-c", "-3", "-T0"]);
  const stderr: string[] = [];
  const stored = storage.put(name, zstd.stdout!.pipe(sealStream(key, purpose(name))));
  const packed = sandbox.exec({ argv: ["tar", "--numeric-owner", "-C", WORKSPACE, "-cf", "-", "."], signal: abort.signal, timeoutMs: ARCHIVE_TIMEOUT_MS }, { stdout: zstd.stdin!, stderr: (d) => stderr.length < 64 && stderr.push(d.toString()) });
  try {
    const [status, size] = await Promise.all([packed, stored, exited(zstd, "zstd")]);
    if (status.code !== 0) throw new ArchiveError(`tar could not read /workspace (exit ${status.code ?? status.signal}): ${stderr.join("").trim().slice(-500)}`);
    return size;
  } catch (err) {
    abort.abort();
    zstd.kill("SIGKILL");
    await Promise.allSettled([packed, stored]);
    await storage.delete(name);
    throw err instanceof ArchiveError ? err : new ArchiveError(`the workspace could not be archived: ${(err as Error).message}`);
  }
}

/**
 * Unpacks the archive `name` into the sandbox's /workspace. Every chunk is verified before it
 * is passed on; a damaged or truncated archive fails (ArchiveError), and the caller throws the
 * sandbox away with whatever part of it was unpacked.
 */
export async function restoreWorkspace(sandbox: Sandbox, key: Buffer, storage: ArchiveStorage, name: string): Promise<void> {
  const abort = new AbortController();
  const zstd = compressor(["-q", "-d", "-c"]);
  const stderr: string[] = [];
  const fed = pipeline(storage.get(name), openStream(key, purpose(name)), zstd.stdin!);
  const unpacked = sandbox.exec({ argv: ["tar", "--no-same-owner", "-C", WORKSPACE, "-xpf", "-"], signal: abort.signal, timeoutMs: ARCHIVE_TIMEOUT_MS }, { stdin: zstd.stdout!, stderr: (d) => stderr.length < 64 && stderr.push(d.toString()) });
  try {
    await fed;
    await exited(zstd, "zstd");
    const status = await unpacked;
    if (status.code !== 0) throw new ArchiveError(`tar could not unpack the archive (exit ${status.code ?? status.signal}): ${stderr.join("").trim().slice(-500)}`);
  } catch (err) {
    abort.abort();
    zstd.kill("SIGKILL");
    await unpacked.catch(() => undefined);
    throw err instanceof ArchiveError ? err : new ArchiveError(`the workspace archive cannot be restored: ${(err as Error).message}`);
  }
}

/**
 * Copies a stored archive under a new name and key (a snapshot of a stopped workspace, a snapshot
 * opened as a new workspace): opened and sealed again chunk by chunk, in memory. Resolves to its size.
 */
export async function resealArchive(storage: ArchiveStorage, from: { key: Buffer; name: string }, to: { key: Buffer; name: string }): Promise<number> {
  try {
    // A damaged source fails the copy (pipe alone would leave the rest waiting).
    const out = new PassThrough();
    const copied = pipeline(storage.get(from.name), openStream(from.key, purpose(from.name)), sealStream(to.key, purpose(to.name)), out);
    copied.catch((err: Error) => out.destroy(err));
    const [size] = await Promise.all([storage.put(to.name, out), copied]);
    return size;
  } catch (err) {
    await storage.delete(to.name);
    throw new ArchiveError(`the archive could not be copied: ${(err as Error).message}`);
  }
}

/** zstd, as nobody when the server is root: it only ever sees bytes, it needs no rights. */
function compressor(args: string[]): ChildProcess {
  const asNobody = process.getuid?.() === 0 ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] : [];
  const [command, ...rest] = [...asNobody, "zstd", ...args];
  const child = spawn(command!, rest, { stdio: ["pipe", "pipe", "pipe"], env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
  child.stdin!.on("error", () => undefined);
  return child;
}

function exited(child: ChildProcess, name: string): Promise<void> {
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  return new Promise((resolve, reject) => {
    child.once("error", (err) => reject(new ArchiveError(`${name} could not run (Debian package zstd): ${err.message}`)));
    child.once("close", (code, signal) => (code === 0 ? resolve() : reject(new ArchiveError(`${name} failed (${code ?? signal}): ${stderr.trim()}`))));
  });
}
