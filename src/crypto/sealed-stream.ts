import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { DecryptError } from "./aead.js";

/**
 * Streams of any length sealed with AES-256-GCM in chunks, for archives too large to hold in
 * memory (image caches, workspace archives). Each chunk is sealed on its own, with the stream's
 * purpose, the chunk's index and whether it is the last in its associated data: reordering,
 * dropping, repeating or truncating chunks, or flipping a byte, makes opening fail, and a stream
 * cut at a chunk boundary is caught because its last chunk does not say so.
 *
 * Format: "SLS1", a 16-byte random stream id (in every chunk's associated data, so chunks of two
 * streams cannot be mixed), then chunks of [12-byte IV][u32 length][u8 last][ciphertext][16-byte
 * tag]; the `last` byte is also in the associated data, so changing it breaks the chunk.
 *
 * What `openStream` passes on is verified chunk by chunk: a consumer must not act on the whole
 * until the stream has ended without an error.
 */
const MAGIC = Buffer.from("SLS1");
const STREAM_ID_BYTES = 16;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = IV_BYTES + 5;
export const SEALED_CHUNK_BYTES = 64 * 1024;

function chunkAad(purpose: string, streamId: Buffer, index: number, last: boolean): Buffer {
  const head = Buffer.alloc(9);
  head.writeBigUInt64BE(BigInt(index));
  head.writeUInt8(last ? 1 : 0, 8);
  return Buffer.concat([Buffer.from(`slipway/stream/v1\0${purpose}\0`, "utf8"), streamId, head]);
}

/** Encrypts what is written to it; `purpose` must be given again to open the stream. */
export function sealStream(key: Buffer, purpose: string): Transform {
  const streamId = randomBytes(STREAM_ID_BYTES);
  let pending = Buffer.alloc(0);
  let index = 0;
  let started = false;
  const sealChunk = (plain: Buffer, last: boolean): Buffer => {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    cipher.setAAD(chunkAad(purpose, streamId, index++, last));
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(body.length);
    head.writeUInt8(last ? 1 : 0, 4);
    return Buffer.concat([iv, head, body, cipher.getAuthTag()]);
  };
  const header = (): Buffer[] => (started ? [] : ((started = true), [MAGIC, streamId]));
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      pending = Buffer.concat([pending, chunk]);
      const out = header();
      // A full chunk is sealed only once more data follows it: the last one must say it is last.
      while (pending.length > SEALED_CHUNK_BYTES) {
        out.push(sealChunk(pending.subarray(0, SEALED_CHUNK_BYTES), false));
        pending = pending.subarray(SEALED_CHUNK_BYTES);
      }
      callback(null, Buffer.concat(out));
    },
    flush(callback: TransformCallback) {
      callback(null, Buffer.concat([...header(), sealChunk(pending, true)]));
    },
  });
}

/** Decrypts a sealed stream; fails with DecryptError on any damage, before passing on a byte of the damaged chunk. */
export function openStream(key: Buffer, purpose: string): Transform {
  let pending = Buffer.alloc(0);
  let streamId: Buffer | undefined;
  let index = 0;
  let ended = false;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      pending = Buffer.concat([pending, chunk]);
      const out: Buffer[] = [];
      try {
        if (!streamId) {
          if (pending.length < MAGIC.length + STREAM_ID_BYTES) return callback();
          if (!pending.subarray(0, MAGIC.length).equals(MAGIC)) throw new DecryptError("not a sealed stream");
          streamId = Buffer.from(pending.subarray(MAGIC.length, MAGIC.length + STREAM_ID_BYTES));
          pending = pending.subarray(MAGIC.length + STREAM_ID_BYTES);
        }
        while (pending.length >= HEADER_BYTES) {
          const length = pending.readUInt32BE(IV_BYTES);
          if (length > SEALED_CHUNK_BYTES) throw new DecryptError("a chunk of the sealed stream is too long: it was tampered with");
          const size = HEADER_BYTES + length + TAG_BYTES;
          if (pending.length < size) break;
          if (ended) throw new DecryptError("the sealed stream goes on after its last chunk");
          out.push(openChunk(pending.subarray(0, size), length));
          pending = pending.subarray(size);
        }
      } catch (err) {
        return callback(err as Error);
      }
      callback(null, Buffer.concat(out));
    },
    flush(callback: TransformCallback) {
      if (!ended || pending.length > 0) return callback(new DecryptError("the sealed stream is truncated"));
      callback();
    },
  });

  function openChunk(sealed: Buffer, length: number): Buffer {
    const last = sealed.readUInt8(IV_BYTES + 4) === 1;
    const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, IV_BYTES));
    decipher.setAAD(chunkAad(purpose, streamId!, index, last));
    decipher.setAuthTag(sealed.subarray(HEADER_BYTES + length));
    try {
      const plain = Buffer.concat([decipher.update(sealed.subarray(HEADER_BYTES, HEADER_BYTES + length)), decipher.final()]);
      index++;
      ended = last;
      return plain;
    } catch {
      throw new DecryptError();
    }
  }
}
