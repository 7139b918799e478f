/**
 * Secret masking for build logs (P21).
 *
 * Every secret handed to a job is turned into a set of byte patterns (the value itself and the
 * encodings a build is likely to print it in), and every occurrence of any pattern in the log is
 * replaced by `***` before the log is stored or streamed. Masking is a second line of defence:
 * untrusted builds get no secrets at all.
 *
 * Streaming: logs arrive in arbitrary chunks, so a secret can be split across writes. The masker
 * holds back only the longest tail of what it has seen that is a proper prefix of some pattern
 * (at most longest pattern − 1 bytes), plus any masked region that a match still under way could
 * extend; everything else is emitted at once, so live logs stay live. The output depends only on
 * the bytes written, never on how they were split (the tests check this).
 *
 * Overlaps: the matches (of all patterns, so also a secret that is a prefix of another) are taken
 * as byte intervals; intervals that overlap are merged and each merged interval becomes one `***`.
 * This masks the union of everything matched, which is at least what "longest first" would mask.
 *
 * Speed: one pass over the text whatever the number of patterns. Every pattern is at least
 * `shortest` bytes long, so every occurrence contains the 4-byte gram at one of its first
 * `shortest − 3` offsets, and exactly one of those falls on a position that is a multiple of
 * `stride = shortest − 3`. The scan therefore reads one 4-byte gram every `stride` bytes, rejects
 * almost all of them with a bit table, and compares the few candidate patterns byte for byte
 * (a q-gram sampling filter; with 100 secrets of ordinary length it reads about 1 byte in 15).
 */
import { endianness } from "node:os";
import { Transform, type TransformCallback } from "node:stream";
import { z } from "zod";

/** Values shorter than this (in characters) are refused as secrets; see {@link secretValueProblem}. */
export const MIN_SECRET_LENGTH = 4;
export const MASK = "***";

const MASK_BYTES = Buffer.from(MASK);
const EMPTY = Buffer.alloc(0);
const GRAM = 4;
const [HASH_1, HASH_2] = [0x9e3779b1, 0x85ebca6b];
const LITTLE_ENDIAN = endianness() === "LE";

export class SecretValueError extends Error {
  override name = "SecretValueError";
}

/** Why `value` cannot be a secret, or undefined when it can. */
export function secretValueProblem(value: string): string | undefined {
  if ([...value].length >= MIN_SECRET_LENGTH) return undefined;
  return (
    `a secret value must be at least ${MIN_SECRET_LENGTH} characters long: build logs replace every occurrence ` +
    `of a secret with ${MASK}, so a shorter value would also mask ordinary text all over the logs, ` +
    `and where the ${MASK} appear would reveal the value`
  );
}

/** Throws a {@link SecretValueError} explaining why `value` cannot be a secret. */
export function validateSecretValue(value: string): void {
  const problem = secretValueProblem(value);
  if (problem !== undefined) throw new SecretValueError(problem);
}

/** For the secret APIs: `z.string().superRefine(refineMaskableSecret)`. */
export function refineMaskableSecret(value: string, ctx: z.RefinementCtx): void {
  const problem = secretValueProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
}

export const maskableSecretValueSchema = z.string().superRefine(refineMaskableSecret);

/**
 * Base64 of a secret inside a larger base64 blob (a config file, a docker auth) depends on where
 * the secret starts modulo 3: base64 turns each 3 bytes into 4 characters of 6 bits, so only the
 * characters whose 6 bits all come from the secret are the same whatever surrounds it. For each of
 * the three alignments k (the secret preceded by k = 0, 1 or 2 bytes of its 3-byte group), this
 * returns that stable core: character i covers bits [6i, 6i + 6) of the stream and the secret
 * occupies bits [8k, 8(k + n)), so the core is characters ceil(8k / 6) .. floor(8(k + n) / 6) − 1.
 * Masking the core leaves at most the few bits of the secret's first and last bytes that share a
 * character with their neighbours.
 */
function alignedBase64Cores(raw: Buffer): string[] {
  const cores: string[] = [];
  for (let k = 0; k < 3; k++) {
    const encoded = Buffer.concat([Buffer.alloc(k), raw, Buffer.alloc(3)]).toString("base64");
    const core = encoded.slice(Math.ceil((8 * k) / 6), Math.floor((8 * (k + raw.length)) / 6));
    if (core.length >= MIN_SECRET_LENGTH) cores.push(core);
  }
  return cores;
}

const toBase64Url = (b64: string) => b64.replace(/\+/g, "-").replace(/\//g, "_");
const lowercaseEscapes = (s: string) => s.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase());

/** Base64 in every way it is commonly printed: padded, unpadded, url-safe, and inside a larger blob. */
function base64Forms(raw: Buffer): string[] {
  const padded = raw.toString("base64");
  const std = [padded, padded.replace(/=+$/, ""), ...alignedBase64Cores(raw)];
  return [...std, ...std.map(toBase64Url)];
}

function urlForms(value: string): string[] {
  let component: string;
  try {
    component = encodeURIComponent(value);
  } catch {
    return []; // a lone surrogate cannot be URL-encoded, so it cannot be printed that way either
  }
  const form = new URLSearchParams([["", value]]).toString().slice(1); // x-www-form-urlencoded: + for space
  return [component, form, component.replace(/%20/g, "+")].flatMap((s) => [s, lowercaseEscapes(s)]);
}

/** The byte patterns that mask `secret`: the value and the encodings it is likely to be printed in. */
export function secretPatterns(secret: string): Buffer[] {
  const values = [secret];
  const trimmed = secret.trim();
  // A value read from a file often carries a trailing newline that a build does not print.
  if (trimmed !== secret && secretValueProblem(trimmed) === undefined) values.push(trimmed);
  const forms = new Set<string>();
  const add = (text: string, encoding: BufferEncoding = "utf8") => forms.add(Buffer.from(text, encoding).toString("latin1"));
  for (const value of values) {
    const raw = Buffer.from(value, "utf8");
    forms.add(raw.toString("latin1"));
    add(value.replace(/\r?\n/g, "\r\n")); // a terminal turns \n into \r\n
    add(JSON.stringify(value).slice(1, -1)); // a multi-line value printed inside JSON
    for (const form of [...base64Forms(raw), ...urlForms(value)]) add(form);
    add(raw.toString("hex"));
    add(raw.toString("hex").toUpperCase());
    // Base64 of base64 (the 2025 tj-actions leak printed secrets this way to get past masking).
    for (const form of base64Forms(Buffer.from(raw.toString("base64")))) add(form);
  }
  return [...forms].filter((f) => f.length >= MIN_SECRET_LENGTH).map((f) => Buffer.from(f, "latin1"));
}

const gramAt = (b: Uint8Array, i: number) => (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0;

/** All patterns of all secrets, compiled once: the gram filter for finding matches and a trie for the held-back tail. */
class Matcher {
  readonly longest: number;
  readonly patternCount: number;
  readonly #patterns: Buffer[];
  readonly #stride: number;
  readonly #bits: Uint32Array;
  readonly #shift: number;
  /**
   * gram → candidates, as an open-addressing table of int32 keys (a Map would box most 32-bit
   * grams): slot i holds gram #slotKeys[i] and its (pattern index, offset of the gram in the
   * pattern) pairs are #candidates[#slotStart[i] .. #slotEnd[i]); #slotStart[i] is −1 when empty.
   */
  readonly #slotKeys: Int32Array;
  readonly #slotStart: Int32Array;
  readonly #slotEnd: Int32Array;
  readonly #slotShift: number;
  readonly #candidates: Int32Array;
  /** Trie of all patterns: (node × 256 + byte) → child node; node 0 is the root. */
  readonly #trie = new Map<number, number>();
  readonly #hasChildren: Uint8Array;
  /** Bit set of the first two bytes of every pattern. */
  readonly #prefixPairs = new Uint32Array(65536 / 32);

  constructor(patterns: Buffer[]) {
    this.#patterns = patterns;
    this.patternCount = patterns.length;
    this.longest = patterns.reduce((max, p) => Math.max(max, p.length), 0);
    const shortest = patterns.reduce((min, p) => Math.min(min, p.length), Infinity);
    if (shortest < GRAM) throw new Error(`a masking pattern is shorter than ${GRAM} bytes`);
    this.#stride = patterns.length === 0 ? 0 : shortest - GRAM + 1;

    const entries = patterns.length * this.#stride;
    const bitCount = Math.min(2 ** 24, Math.max(2 ** 12, 2 ** Math.ceil(Math.log2(entries * 32))));
    this.#bits = new Uint32Array(bitCount / 32);
    this.#shift = 32 - Math.log2(bitCount);
    const byGram = new Map<number, number[]>();
    patterns.forEach((pattern, index) => {
      for (let offset = 0; offset < this.#stride; offset++) {
        const gram = gramAt(pattern, offset) | 0;
        for (const h of [Math.imul(gram, HASH_1) >>> this.#shift, Math.imul(gram, HASH_2) >>> this.#shift]) this.#bits[h >>> 5]! |= 1 << (h & 31);
        const list = byGram.get(gram);
        if (list) list.push(index, offset);
        else byGram.set(gram, [index, offset]);
      }
    });
    const slotBits = Math.max(4, Math.ceil(Math.log2(byGram.size * 2)));
    this.#slotShift = 32 - slotBits;
    this.#slotKeys = new Int32Array(2 ** slotBits);
    this.#slotStart = new Int32Array(2 ** slotBits).fill(-1);
    this.#slotEnd = new Int32Array(2 ** slotBits);
    this.#candidates = new Int32Array(entries * 2);
    let filled = 0;
    for (const [gram, list] of byGram) {
      let slot = Math.imul(gram, 0x9e3779b1) >>> this.#slotShift;
      while (this.#slotStart[slot] !== -1) slot = (slot + 1) & (2 ** slotBits - 1);
      this.#slotKeys[slot] = gram;
      this.#slotStart[slot] = filled;
      this.#candidates.set(list, filled);
      filled += list.length;
      this.#slotEnd[slot] = filled;
    }

    let nodes = 1;
    const hasChildren: number[] = [0];
    for (const pattern of patterns) {
      const pair = pattern[0]! | (pattern[1]! << 8);
      this.#prefixPairs[pair >>> 5]! |= 1 << (pair & 31);
      let node = 0;
      for (const byte of pattern) {
        const key = node * 256 + byte;
        let child = this.#trie.get(key);
        if (child === undefined) {
          child = nodes++;
          this.#trie.set(key, child);
          hasChildren[node] = 1;
          hasChildren[child] = 0;
        }
        node = child;
      }
    }
    this.#hasChildren = Uint8Array.from(hasChildren);
  }

  /** Every match in `buf`, as sorted, merged [start, end) pairs (overlapping matches become one). */
  matches(buf: Buffer): number[] {
    const found: number[] = [];
    if (this.#stride === 0) return found;
    // Reading each gram as one aligned 32-bit word is several times faster than four byte reads;
    // sampling every 4·k bytes with 4·k ≤ stride keeps the guarantee (a gap is never wider than stride).
    const wordStride = this.#stride & ~3;
    if (!LITTLE_ENDIAN || wordStride === 0 || buf.length < 8) {
      for (let p = 0; p <= buf.length - GRAM; p += this.#stride) if (this.#mayHold(gramAt(buf, p))) this.#check(buf, p, gramAt(buf, p) | 0, found);
      return mergeIntervals(found);
    }
    const first = (4 - (buf.byteOffset & 3)) & 3;
    const words = new Uint32Array(buf.buffer, buf.byteOffset + first, (buf.length - first) >>> 2);
    const step = wordStride >>> 2;
    const bits = this.#bits;
    const shift = this.#shift;
    const [keys, starts, slotShift, mask] = [this.#slotKeys, this.#slotStart, this.#slotShift, this.#slotKeys.length - 1];
    for (let w = 0, n = words.length; w < n; w += step) {
      const h = Math.imul(words[w]!, HASH_1) >>> shift;
      if ((bits[h >>> 5]! & (1 << (h & 31))) === 0) continue;
      // A two-hash Bloom filter: the second probe (rarely reached) lets through about 1 gram in 1000.
      const h2 = Math.imul(words[w]!, HASH_2) >>> shift;
      if ((bits[h2 >>> 5]! & (1 << (h2 & 31))) === 0) continue;
      const key = words[w]! | 0;
      let slot = Math.imul(key, 0x9e3779b1) >>> slotShift;
      while (starts[slot] !== -1 && keys[slot] !== key) slot = (slot + 1) & mask;
      if (starts[slot] !== -1) this.#verify(buf, first + 4 * w, slot, found);
    }
    return mergeIntervals(found);
  }

  #mayHold(gram: number): boolean {
    const [h1, h2] = [Math.imul(gram, HASH_1) >>> this.#shift, Math.imul(gram, HASH_2) >>> this.#shift];
    return (this.#bits[h1 >>> 5]! & (1 << (h1 & 31))) !== 0 && (this.#bits[h2 >>> 5]! & (1 << (h2 & 31))) !== 0;
  }

  /** Looks `key` (a gram read at `p`) up and compares its candidate patterns with `buf`. */
  #check(buf: Buffer, p: number, key: number, found: number[]): void {
    const mask = this.#slotKeys.length - 1;
    let slot = Math.imul(key, 0x9e3779b1) >>> this.#slotShift;
    while (this.#slotStart[slot] !== -1 && this.#slotKeys[slot] !== key) slot = (slot + 1) & mask;
    if (this.#slotStart[slot] !== -1) this.#verify(buf, p, slot, found);
  }

  /** Compares the patterns that have the gram of `slot` at some offset with `buf` placed so that offset falls on `p`. */
  #verify(buf: Buffer, p: number, slot: number, found: number[]): void {
    const end = this.#slotEnd[slot]!;
    for (let c = this.#slotStart[slot]!; c < end; c += 2) {
      const pattern = this.#patterns[this.#candidates[c]!]!;
      const start = p - this.#candidates[c + 1]!;
      const length = pattern.length;
      if (start < 0 || start + length > buf.length) continue;
      let k = 0;
      while (k < length && buf[start + k] === pattern[k]) k++;
      if (k === length) found.push(start, start + length);
    }
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of some pattern: a match may still start there. */
  heldSuffix(buf: Buffer): number {
    const trie = this.#trie;
    const end = buf.length;
    for (let start = Math.max(0, end - this.longest + 1); start < end; start++) {
      // Most positions are ruled out by their first two bytes, without walking the trie.
      if (start + 1 < end) {
        const pair = buf[start]! | (buf[start + 1]! << 8);
        if ((this.#prefixPairs[pair >>> 5]! & (1 << (pair & 31))) === 0) continue;
      }
      let node = 0;
      let i = start;
      for (; i < end; i++) {
        const next = trie.get(node * 256 + buf[i]!);
        if (next === undefined) break;
        node = next;
      }
      if (i === end && this.#hasChildren[node] === 1) return end - start;
    }
    return 0;
  }
}

function mergeIntervals(flat: number[]): number[] {
  if (flat.length <= 2) return flat;
  const pairs: [number, number][] = [];
  for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!]);
  pairs.sort((a, b) => a[0] - b[0]);
  const merged: number[] = [pairs[0]![0], pairs[0]![1]];
  for (const [start, end] of pairs.slice(1)) {
    const lastEnd = merged.length - 1;
    if (start < merged[lastEnd]!) merged[lastEnd] = Math.max(merged[lastEnd]!, end);
    else merged.push(start, end);
  }
  return merged;
}

/** A streaming masker: feed it the log in any chunks; the concatenated outputs are the masked log. */
export class Masker {
  readonly #matcher: Matcher;
  #pending: Buffer = EMPTY;

  constructor(secrets: string[]) {
    for (const secret of secrets) validateSecretValue(secret);
    const all = new Map<string, Buffer>();
    for (const secret of secrets) for (const p of secretPatterns(secret)) all.set(p.toString("latin1"), p);
    this.#matcher = new Matcher([...all.values()]);
  }

  /** The longest pattern; at most this − 1 bytes that will not be masked are ever held back. */
  get longestPattern(): number {
    return this.#matcher.longest;
  }

  get patternCount(): number {
    return this.#matcher.patternCount;
  }

  /** Bytes written but not yet emitted (the tail that may start a match, or a match that may still grow). */
  get heldBytes(): number {
    return this.#pending.length;
  }

  /**
   * Masks what can be decided now and returns it; holds back only what a later write could still
   * change. When nothing needs masking, the result may share memory with `chunk` (no copy): do not
   * modify a chunk after writing it.
   */
  write(chunk: Buffer | string): Buffer {
    const input = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk;
    const buf = this.#pending.length === 0 ? input : Buffer.concat([this.#pending, input]);
    return this.#emit(buf, this.#matcher.heldSuffix(buf));
  }

  /** Flushes everything held back; the masker can then be used for a new stream. */
  end(): Buffer {
    const buf = this.#pending;
    this.#pending = EMPTY;
    return this.#emit(buf, 0);
  }

  /** One-shot masking of a whole text (for anything not streamed). */
  mask(text: Buffer | string): Buffer {
    if (this.#pending.length > 0) throw new Error("mask() called in the middle of a stream");
    return Buffer.concat([this.write(text), this.end()]);
  }

  /**
   * Emits `buf` up to the first byte a later write could still change: the last `held` bytes may
   * start a match, and a masked region that reaches into them may still be extended by it.
   */
  #emit(buf: Buffer, held: number): Buffer {
    const safe = buf.length - held;
    const intervals = this.#matcher.matches(buf);
    const parts: Buffer[] = [];
    let at = 0;
    let cut = safe;
    for (let i = 0; i < intervals.length; i += 2) {
      const [start, end] = [intervals[i]!, intervals[i + 1]!];
      if (end > safe) {
        cut = Math.min(safe, start);
        break;
      }
      if (start > at) parts.push(buf.subarray(at, start));
      parts.push(MASK_BYTES);
      at = end;
    }
    if (cut > at) parts.push(buf.subarray(at, cut));
    this.#pending = cut === buf.length ? EMPTY : Buffer.from(buf.subarray(cut));
    if (parts.length === 1 && parts[0] !== MASK_BYTES) return parts[0]!;
    return Buffer.concat(parts);
  }
}

/** A whole text with every form of the secrets masked, for a message rather than a stream. */
export function maskText(secrets: string[], text: string): string {
  const masker = createMasker(secrets);
  return Buffer.concat([masker.write(Buffer.from(text)), masker.end()]).toString("utf8");
}

export function createMasker(secrets: string[]): Masker {
  return new Masker(secrets);
}

/** The masker as a Node stream, for piping a step's output through. */
export class MaskingTransform extends Transform {
  readonly #masker: Masker;

  constructor(secrets: string[] | Masker) {
    super();
    this.#masker = secrets instanceof Masker ? secrets : new Masker(secrets);
  }

  override _transform(chunk: Buffer | string, _encoding: BufferEncoding, callback: TransformCallback): void {
    const out = this.#masker.write(chunk);
    if (out.length > 0) this.push(out);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    const out = this.#masker.end();
    if (out.length > 0) this.push(out);
    callback();
  }
}
