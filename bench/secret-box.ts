import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { Owner } from "../src/crypto/secret-box.js";
import { fmt, printTable, ratio, withSlipway } from "./support.js";

const WARMUP_MS = 500;
const MEASURE_MS = 2_000;
const SIZES = [
  { label: "1 KiB", bytes: 1024 },
  { label: "1 MiB", bytes: 1024 * 1024 },
];

type SealOpen = (data: Buffer) => Buffer | Promise<Buffer>;

/** The least a caller could do by hand: fresh IV, encrypt, tag, decrypt; no AAD, no encoding, no store. */
function rawSealOpen(key: Buffer): SealOpen {
  return (data) => {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    const body = Buffer.concat([cipher.update(data), cipher.final()]);
    const decipher = createDecipheriv("aes-256-gcm", key, iv);
    decipher.setAuthTag(cipher.getAuthTag());
    return Buffer.concat([decipher.update(body), decipher.final()]);
  };
}

/** Seal+open operations per second for `ms` milliseconds; awaits only when the operation is async. */
async function opsPerSecond(op: SealOpen, data: Buffer, ms: number): Promise<number> {
  const start = performance.now();
  let ops = 0;
  let elapsed = 0;
  do {
    const out = op(data);
    if (out instanceof Promise) await out;
    ops++;
    elapsed = performance.now() - start;
  } while (elapsed < ms);
  return ops / (elapsed / 1000);
}

/** A benchmark that round-trips the wrong bytes would be measuring nothing. */
async function assertRoundTrips(name: string, op: SealOpen, data: Buffer): Promise<void> {
  if (!(await op(data)).equals(data)) throw new Error(`${name} did not give back the plaintext it sealed`);
}

/** SecretBox seal+open on a real SQLite store vs raw node:crypto AES-256-GCM, same data, same run. */
export async function secretBoxBench(): Promise<void> {
  await withSlipway(async ({ services, project }) => {
    const owner: Owner = { kind: "project", id: project.id };
    const db = services.store.db;
    const box: SealOpen = async (data) => services.box.open(db, owner, "bench", await services.box.seal(db, owner, "bench", data));
    const raw = rawSealOpen(randomBytes(32));
    const rows = [];
    for (const size of SIZES) {
      const data = randomBytes(size.bytes);
      await assertRoundTrips("secret box", box, data);
      await assertRoundTrips("raw AES-GCM", raw, data);
      await opsPerSecond(box, data, WARMUP_MS);
      await opsPerSecond(raw, data, WARMUP_MS);
      const boxOps = await opsPerSecond(box, data, MEASURE_MS);
      const rawOps = await opsPerSecond(raw, data, MEASURE_MS);
      const mib = (ops: number) => (ops * size.bytes) / (1024 * 1024);
      rows.push([size.label, fmt(boxOps), fmt(mib(boxOps), 1), fmt(rawOps), fmt(mib(rawOps), 1), ratio(boxOps, rawOps)]);
    }
    printTable(
      `seal+open round trips, ${MEASURE_MS / 1000} s per case after ${WARMUP_MS} ms warm-up (MiB/s = plaintext through seal+open)`,
      ["value", "secret box ops/s", "MiB/s", "raw AES-GCM ops/s", "MiB/s", "ratio (box/raw)"],
      rows,
    );
  });
}
