import { createHash, createHmac, hkdfSync } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { DecryptError } from "../crypto/aead.js";
import { openStream, sealStream } from "../crypto/sealed-stream.js";
import type { ImageStore, ResolvedImage } from "./image-store.js";

/** What a job may do with its project's image cache, as the server hands it over with the job. */
export interface ImageCacheAccess {
  /** Derived from the project's data key: the project's entries open only with it. */
  key: Buffer;
  project: string;
  branch: string;
  /** Read when the branch has no entry for the same inputs (Codeship's `default_cache_branch`). */
  fallbackBranch?: string;
  /** False for pull requests: they read the cache but never write it (P10). */
  write: boolean;
  maxAgeMs: number;
}

/** Entries kept per branch: the newest, as a branch's Dockerfile rarely goes back to an old state. */
const KEEP_PER_BRANCH = 5;
const FILE_NAME = /^(oci-layout|index\.json|blobs\/sha256\/[a-f0-9]{64})$/;
const MAX_NAME = 200;

/**
 * Built images kept between builds, only for services that opt in (`cached: true`), on the
 * runner's disk and sealed with the project's cache key: an entry holds the project's code, so
 * on disk it is ciphertext only, named by HMACs that reveal neither branch nor inputs, in a
 * folder of its project. An entry is found by the build's inputs (Dockerfile, context, args,
 * base image digests): the same inputs give the same image.
 */
export class ImageCache {
  constructor(private readonly root: string) {}

  /** The cached image for these inputs, from the branch or else its fallback, into `into`; undefined on a miss. */
  async restore(access: ImageCacheAccess, inputs: string, into: ImageStore): Promise<ResolvedImage | undefined> {
    this.expire(access);
    for (const branch of [access.branch, ...(access.fallbackBranch && access.fallbackBranch !== access.branch ? [access.fallbackBranch] : [])]) {
      const file = this.entryFile(access, branch, inputs);
      if (!existsSync(file)) continue;
      try {
        return await into.importLayout((layout) => pipeline(createReadStream(file), openStream(keysOf(access).seal, purposeOf(access, inputs)), unpackFiles(layout)));
      } catch (err) {
        // A damaged entry is a miss, and goes; any other failure (a full disk) is a miss that leaves it be.
        if (err instanceof DecryptError) rmSync(file, { force: true });
      }
    }
    return undefined;
  }

  /** Keeps the image for these inputs on the job's branch; a job without write access keeps nothing. */
  async save(access: ImageCacheAccess, inputs: string, layout: string): Promise<void> {
    if (!access.write) return;
    const file = this.entryFile(access, access.branch, inputs);
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const partial = `${file}.partial-${process.pid}`;
    try {
      await pipeline(Readable.from(packFiles(layout)), sealStream(keysOf(access).seal, purposeOf(access, inputs)), createWriteStream(partial, { mode: 0o600 }));
      renameSync(partial, file);
    } finally {
      rmSync(partial, { force: true });
    }
    this.trim(path.dirname(file));
  }

  private projectDir(access: ImageCacheAccess): string {
    return path.join(this.root, createHash("sha256").update(`slipway image cache\0${access.project}`).digest("hex").slice(0, 32));
  }

  private entryFile(access: ImageCacheAccess, branch: string, inputs: string): string {
    const name = (what: string) => createHmac("sha256", keysOf(access).name).update(what).digest("hex");
    return path.join(this.projectDir(access), name(`branch\0${branch}`).slice(0, 32), name(`inputs\0${inputs}`));
  }

  /** Removes the project's entries older than its maximum age (and partial writes a crash left). */
  private expire(access: ImageCacheAccess): void {
    const dir = this.projectDir(access);
    if (!existsSync(dir)) return;
    for (const branch of readdirSync(dir)) {
      for (const entry of readdirSync(path.join(dir, branch))) {
        const file = path.join(dir, branch, entry);
        if (Date.now() - (mtimeOf(file) ?? Date.now()) > access.maxAgeMs) rmSync(file, { force: true });
      }
    }
  }

  private trim(branchDir: string): void {
    const entries = readdirSync(branchDir)
      .filter((e) => !e.includes(".partial-"))
      .map((e) => ({ file: path.join(branchDir, e), at: mtimeOf(path.join(branchDir, e)) ?? 0 }))
      .sort((a, b) => b.at - a.at);
    for (const old of entries.slice(KEEP_PER_BRANCH)) rmSync(old.file, { force: true });
  }
}

/** When a file was written; undefined once another build has removed it. */
function mtimeOf(file: string): number | undefined {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
}

/** One key for naming entries, another for sealing them, both from the project's cache key. */
function keysOf(access: ImageCacheAccess): { name: Buffer; seal: Buffer } {
  const derive = (purpose: string) => Buffer.from(hkdfSync("sha256", access.key, Buffer.alloc(0), `slipway/image-cache/${purpose}`, 32));
  return { name: derive("names"), seal: derive("entries") };
}

/** Binds an entry to its project and inputs: renamed or moved to other ones, it does not open. */
const purposeOf = (access: ImageCacheAccess, inputs: string) => `image-cache\0${access.project}\0${inputs}`;

/** A layout's files as [u16 name length][name][u64 size][bytes] records. */
function* packFiles(layout: string): Generator<Buffer> {
  const blobs = readdirSync(path.join(layout, "blobs", "sha256")).map((b) => `blobs/sha256/${b}`);
  for (const name of ["oci-layout", "index.json", ...blobs]) {
    const data = readFileSync(path.join(layout, name));
    const head = Buffer.alloc(2 + Buffer.byteLength(name) + 8);
    head.writeUInt16BE(Buffer.byteLength(name));
    head.write(name, 2);
    head.writeBigUInt64BE(BigInt(data.length), 2 + Buffer.byteLength(name));
    yield head;
    yield data;
  }
}

/** Writes the records back as files of `layout`, refusing any name a layout does not have. */
function unpackFiles(layout: string): Writable {
  let pending = Buffer.alloc(0);
  let current: { file: FileHandle; left: bigint } | undefined;
  const closeCurrent = async () => {
    const open = current;
    current = undefined;
    await open?.file.close();
  };
  return new Writable({
    async write(chunk: Buffer, _encoding, callback) {
      try {
        pending = Buffer.concat([pending, chunk]);
        for (;;) {
          if (current) {
            const take = Number(current.left < BigInt(pending.length) ? current.left : BigInt(pending.length));
            if (take > 0) await current.file.write(pending.subarray(0, take));
            pending = pending.subarray(take);
            current.left -= BigInt(take);
            if (current.left > 0n) break;
            await closeCurrent();
          }
          if (pending.length < 2) break;
          const nameLength = pending.readUInt16BE(0);
          if (nameLength > MAX_NAME) throw new Error("bad cache entry");
          if (pending.length < 2 + nameLength + 8) break;
          const name = pending.subarray(2, 2 + nameLength).toString("utf8");
          if (!FILE_NAME.test(name)) throw new Error("bad cache entry");
          const size = pending.readBigUInt64BE(2 + nameLength);
          pending = pending.subarray(2 + nameLength + 8);
          mkdirSync(path.dirname(path.join(layout, name)), { recursive: true, mode: 0o700 });
          current = { file: await open(path.join(layout, name), "wx", 0o600), left: size };
        }
        callback();
      } catch (err) {
        await closeCurrent().catch(() => undefined);
        callback(err as Error);
      }
    },
    final(callback) {
      callback(current || pending.length > 0 ? new Error("truncated cache entry") : null);
    },
    destroy(err, callback) {
      closeCurrent().then(() => callback(err), () => callback(err));
    },
  });
}
