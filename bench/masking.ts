import { performance } from "node:perf_hooks";
import { createMasker, type Masker } from "../src/crypto/masking.js";
import { fmt, printTable, ratio } from "./support.js";
import { seededInts as prng } from "../test/helpers/prng.js";

const LOG_BYTES = 16 * 1024 * 1024;
const SECRET_COUNT = 100;
const ROUNDS = 5;
const CHUNKINGS = [
  { label: "64 KiB writes (a busy pipe)", bytes: 64 * 1024 },
  { label: "4 KiB writes", bytes: 4 * 1024 },
];

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** Secrets of the shapes CI jobs are given: registry tokens, cloud keys, passwords. */
function makeSecrets(random: (n: number) => number): string[] {
  const chars = (n: number, from = ALNUM) => Array.from({ length: n }, () => from[random(from.length)]).join("");
  const shapes = [
    () => `ghp_${chars(36)}`,
    () => `AKIA${chars(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")}`,
    () => chars(40, ALNUM + "+/"),
    () => `${chars(8)}-${chars(6)}!${chars(4)}`,
    () => `npm_${chars(36)}`,
  ];
  return Array.from({ length: SECRET_COUNT }, (_, i) => shapes[i % shapes.length]!());
}

/** Build output (compiler, test runner, package manager, docker, digests) with a secret, plainly or encoded, every ~400 lines. */
function makeLog(random: (n: number) => number, secrets: string[]): { log: Buffer; leaks: string[] } {
  const hex = (n: number) => Array.from({ length: n }, () => "0123456789abcdef"[random(16)]).join("");
  const lines: ((i: number) => string)[] = [
    (i) => `[${String(i % 100).padStart(3)}%] Building CXX object src/core/CMakeFiles/core.dir/module_${i % 977}.cpp.o`,
    (i) => `\x1b[32m ✓\x1b[39m src/feature_${i % 313}.test.ts \x1b[2m(${i % 40} tests)\x1b[22m \x1b[33m${i % 900}ms\x1b[39m`,
    (i) => `npm WARN deprecated package-${i % 71}@${i % 9}.${i % 13}.0: this version is no longer supported`,
    (i) => `${new Date(1_740_000_000_000 + i * 37).toISOString()} INFO  worker-${i % 8} GET https://registry.example.test/pkg-${i % 500}/-/pkg-${i % 500}-1.${i % 30}.0.tgz 200 (${i % 512} kB)`,
    (i) => `#${i % 20} [stage-${i % 3} ${i % 12}/14] RUN apt-get install -y --no-install-recommends libfoo${i % 40}-dev`,
    () => `#12 writing layer sha256:${hex(64)} done`,
    (i) => `    at Object.<anonymous> (/work/src/lib/parser_${i % 60}.js:${i % 400}:${i % 80}) ✗ ünïcode 日本語`,
  ];
  const encodings = [
    (s: string) => s,
    (s: string) => Buffer.from(s).toString("base64"),
    (s: string) => Buffer.from(s).toString("hex"),
    (s: string) => encodeURIComponent(s),
    (s: string) => Buffer.from(Buffer.from(s).toString("base64")).toString("base64"),
  ];
  const parts: string[] = [];
  const leaks: string[] = [];
  let size = 0;
  for (let i = 0; size < LOG_BYTES; i++) {
    let line = lines[random(lines.length)]!(i);
    if (random(400) === 0) {
      const leak = encodings[random(encodings.length)]!(secrets[random(secrets.length)]!);
      leaks.push(leak);
      line = `+ curl -H "Authorization: Bearer ${leak}" https://api.example.test/v1/deploy`;
    }
    parts.push(line + "\n");
    size += Buffer.byteLength(line) + 1;
  }
  return { log: Buffer.from(parts.join("")), leaks };
}

function chunk(log: Buffer, bytes: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < log.length; i += bytes) chunks.push(Buffer.from(log.subarray(i, i + bytes)));
  return chunks;
}

type Pass = (chunks: Buffer[]) => Buffer[];

const passThrough: Pass = (chunks) => chunks.map((c) => Buffer.from(c));

const masked =
  (masker: Masker): Pass =>
  (chunks) => {
    const out = chunks.map((c) => masker.write(c));
    out.push(masker.end());
    return out;
  };

/** MB/s of one pass over all chunks (1 MB = 10^6 bytes). */
function throughput(pass: Pass, chunks: Buffer[], bytes: number): number {
  const start = performance.now();
  const out = pass(chunks);
  const ms = performance.now() - start;
  if (out.length === 0) throw new Error("no output");
  return bytes / 1e6 / (ms / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A masker that let a secret through, or masked text that is no secret, would be measuring the wrong thing. */
function assertMasksExactly(masker: Masker, chunks: Buffer[], secrets: string[], leaks: string[]): void {
  const out = Buffer.concat(masked(masker)(chunks)).toString("latin1");
  for (const leak of new Set(leaks)) if (out.includes(Buffer.from(leak).toString("latin1"))) throw new Error(`masker let ${leak} through`);
  for (const secret of secrets) if (out.includes(secret)) throw new Error(`masker let ${secret} through`);
  const masks = out.split("***").length - 1;
  if (masks !== leaks.length) throw new Error(`expected ${leaks.length} masks, got ${masks}`);
}

/** Masking 16 MB of build output with 100 secrets vs copying the same chunks, same run. */
export async function maskingBench(): Promise<void> {
  const random = prng(21);
  const secrets = makeSecrets(random);
  const { log, leaks } = makeLog(random, secrets);
  const buildStart = performance.now();
  const masker = createMasker(secrets);
  const buildMs = performance.now() - buildStart;
  console.log(
    `${SECRET_COUNT} secrets -> ${fmt(masker.patternCount)} patterns (longest ${masker.longestPattern} B), masker built in ${fmt(buildMs, 1)} ms; ` +
      `log ${fmt(log.length / 1e6, 1)} MB with ${leaks.length} secrets printed plainly or encoded`,
  );

  const rows = [];
  for (const chunking of CHUNKINGS) {
    const chunks = chunk(log, chunking.bytes);
    assertMasksExactly(masker, chunks, secrets, leaks);
    const runs = { masked: [] as number[], copy: [] as number[] };
    throughput(masked(masker), chunks, log.length); // warm-up
    throughput(passThrough, chunks, log.length);
    for (let round = 0; round < ROUNDS; round++) {
      runs.masked.push(throughput(masked(masker), chunks, log.length));
      runs.copy.push(throughput(passThrough, chunks, log.length));
    }
    const [m, c] = [median(runs.masked), median(runs.copy)];
    rows.push([chunking.label, fmt(m), fmt(c), ratio(m, c)]);
  }
  printTable(
    `median of ${ROUNDS} passes over the log (MB/s = 10^6 bytes/s of input; pass-through copies each chunk; goal ratio >= 0.5x)`,
    ["writes", "masked MB/s", "pass-through MB/s", "ratio (masked/pass-through)"],
    rows,
  );
}
