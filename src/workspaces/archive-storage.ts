import { once } from "node:events";
import { createReadStream, createWriteStream, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";

/**
 * Where encrypted workspace archives and snapshots are kept. Objects are written whole or not at
 * all, never changed, and named by the caller with names of its own making.
 */
export interface ArchiveStorage {
  /** Stores the stream under `name`; resolves to its size once it is all safely written. */
  put(name: string, data: Readable): Promise<number>;
  /** The object's bytes; the stream fails when there is no such object. */
  get(name: string): Readable;
  delete(name: string): Promise<void>;
}

const NAME = /^[A-Za-z0-9_-]{1,64}\.[a-z0-9.]{1,32}$/;

/** The name, checked to be one of the caller's making: never a path, never empty. */
export function objectName(name: string): string {
  if (!NAME.test(name)) throw new Error(`not an archive name: ${JSON.stringify(name)}`);
  return name;
}

/** A folder of this machine, readable by the server's user alone. */
export class LocalArchiveStorage implements ArchiveStorage {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private file(name: string): string {
    return path.join(this.dir, objectName(name));
  }

  async put(name: string, data: Readable): Promise<number> {
    const file = this.file(name);
    const partial = `${file}.partial`;
    const out = createWriteStream(partial, { mode: 0o600, flags: "wx" });
    try {
      await pipeline(data, out);
      // Written and flushed before it takes the name: a crash leaves a .partial, never half an archive.
      const handle = await open(partial, "r+");
      await handle.sync().finally(() => handle.close());
      renameSync(partial, file);
      return statSync(file).size;
    } catch (err) {
      if (!out.closed) {
        out.destroy();
        await once(out, "close").catch(() => undefined);
      }
      rmSync(partial, { force: true });
      throw err;
    }
  }

  get(name: string): Readable {
    return createReadStream(this.file(name));
  }

  async delete(name: string): Promise<void> {
    rmSync(this.file(name), { force: true });
  }
}
