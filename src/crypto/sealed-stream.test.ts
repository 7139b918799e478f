import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, expect, it } from "vitest";
import { DecryptError } from "./aead.js";
import { openStream, SEALED_CHUNK_BYTES, sealStream } from "./sealed-stream.js";

const key = randomBytes(32);
const through = (stream: NodeJS.ReadWriteStream, data: Buffer, pieces = 7) => {
  // Written in uneven pieces, as a pipe delivers it.
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; ) {
    const size = Math.max(1, Math.floor(data.length / pieces) + (at % 13));
    parts.push(data.subarray(at, at + size));
    at += size;
  }
  return buffer(Readable.from(parts.length ? parts : [Buffer.alloc(0)]).pipe(stream));
};
const seal = (data: Buffer, purpose = "test") => through(sealStream(key, purpose), data);
const open = (sealed: Buffer, purpose = "test", k = key) => through(openStream(k, purpose), sealed);

const HEADER = 4 + 16;
const CHUNK = 12 + 5 + SEALED_CHUNK_BYTES + 16;

describe("sealed streams", () => {
  it("round-trips empty, small, exactly-one-chunk and many-chunk data, and hides the plaintext", async () => {
    for (const size of [0, 1, 1000, SEALED_CHUNK_BYTES, SEALED_CHUNK_BYTES + 1, 3 * SEALED_CHUNK_BYTES + 17]) {
      const data = Buffer.alloc(size, "secret-marker ");
      const sealed = await seal(data);
      expect(sealed.includes(Buffer.from("secret-marker"))).toBe(false);
      expect((await open(sealed)).equals(data)).toBe(true);
    }
  });

  it("a flipped byte anywhere is detected", async () => {
    const sealed = await seal(randomBytes(2 * SEALED_CHUNK_BYTES + 100));
    for (const at of [0, 5, HEADER, HEADER + 12, HEADER + 16, HEADER + 40, HEADER + CHUNK - 1, HEADER + CHUNK + 30, sealed.length - 1]) {
      const damaged = Buffer.from(sealed);
      damaged[at]! ^= 0x01;
      await expect(open(damaged), `byte ${at}`).rejects.toBeInstanceOf(DecryptError);
    }
  });

  it("truncation, at a chunk boundary or inside a chunk, is detected", async () => {
    const sealed = await seal(randomBytes(2 * SEALED_CHUNK_BYTES + 100));
    for (const length of [0, 10, HEADER, HEADER + CHUNK, HEADER + 2 * CHUNK, sealed.length - 1]) {
      await expect(open(sealed.subarray(0, length)), `cut at ${length}`).rejects.toBeInstanceOf(DecryptError);
    }
  });

  it("reordered, repeated or foreign chunks, data after the end, another purpose or key are detected", async () => {
    const sealed = await seal(randomBytes(2 * SEALED_CHUNK_BYTES + 100));
    const header = sealed.subarray(0, HEADER);
    const [c0, c1, c2] = [0, 1, 2].map((i) => sealed.subarray(HEADER + i * CHUNK, HEADER + (i + 1) * CHUNK));
    const other = await seal(randomBytes(2 * SEALED_CHUNK_BYTES + 100));
    const cases: Record<string, Buffer> = {
      reordered: Buffer.concat([header, c1!, c0!, c2!]),
      repeated: Buffer.concat([header, c0!, c0!, c1!, c2!]),
      dropped: Buffer.concat([header, c0!, c2!]),
      foreign: Buffer.concat([header, c0!, other.subarray(HEADER + CHUNK, HEADER + 2 * CHUNK), c2!]),
      appended: Buffer.concat([sealed, c2!]),
    };
    for (const [name, damaged] of Object.entries(cases)) await expect(open(damaged), name).rejects.toBeInstanceOf(DecryptError);
    await expect(open(sealed, "another purpose")).rejects.toBeInstanceOf(DecryptError);
    await expect(open(sealed, "test", randomBytes(32))).rejects.toBeInstanceOf(DecryptError);
    // Control: the untouched stream opens.
    expect((await open(sealed)).length).toBe(2 * SEALED_CHUNK_BYTES + 100);
  });
});
