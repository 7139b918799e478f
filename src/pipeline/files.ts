import { closeSync, constants, fstatSync, openSync, readSync, realpathSync } from "node:fs";
import path from "node:path";
import { limits } from "./problems.js";

export type FileRead = { text: string } | { error: "missing" | "too_large" | "not_a_file" | "outside" };

/** Where config files (and the files they name) come from: a checkout on disk, or memory in tests and the API. */
export interface FileSource {
  read(relativePath: string): FileRead;
}

export function memoryFiles(files: Record<string, string>): FileSource {
  return {
    read: (p) => {
      const text = files[path.posix.normalize(p)];
      if (text === undefined) return { error: "missing" };
      return Buffer.byteLength(text) > limits.fileBytes ? { error: "too_large" } : { text };
    },
  };
}

/**
 * Reads files of a checkout. A repository is untrusted: a path that resolves (through symlinks)
 * outside the root is refused, and nothing larger than the file limit is read into memory.
 */
export function diskFiles(root: string): FileSource {
  const realRoot = realpathSync(root);
  return {
    read: (p) => {
      const full = path.resolve(realRoot, p);
      let real: string;
      try {
        real = realpathSync(full);
      } catch {
        return { error: "missing" };
      }
      if (real !== realRoot && !real.startsWith(realRoot + path.sep)) return { error: "outside" };
      let fd: number;
      try {
        fd = openSync(real, constants.O_RDONLY | constants.O_NOFOLLOW | (constants.O_NONBLOCK ?? 0));
      } catch {
        return { error: "missing" };
      }
      try {
        const st = fstatSync(fd);
        if (!st.isFile()) return { error: "not_a_file" };
        if (st.size > limits.fileBytes) return { error: "too_large" };
        const buf = Buffer.alloc(limits.fileBytes + 1);
        let n = 0;
        for (let r = 1; r > 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, null);
        if (n > limits.fileBytes) return { error: "too_large" };
        return { text: buf.subarray(0, n).toString("utf8") };
      } finally {
        closeSync(fd);
      }
    },
  };
}
