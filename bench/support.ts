import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import type { RequestContext } from "../src/auth/permissions.js";
import { loadSettings, type SettingsInput } from "../src/config/settings.js";
import type { Project } from "../src/projects/projects.js";
import { createServices, type Services } from "../src/services.js";

/** Real services on a fresh SQLite data dir, with one user who owns one project. */
export interface Slipway {
  services: Services;
  ctx: RequestContext;
  project: Project;
}

/**
 * Runs `fn` against real Slipway services in a temp data dir, and removes the dir afterwards
 * even when `fn` fails, so repeated runs leave nothing behind.
 */
export async function withSlipway<T>(fn: (s: Slipway) => Promise<T>, opts: { repositoryUrl?: string; settings?: SettingsInput } = {}): Promise<T> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "slipway-bench-"));
  try {
    const services = await createServices(loadSettings({ dataDir, logLevel: "silent", ...opts.settings }, {}), pino({ level: "silent" }));
    try {
      const user = await services.users.create({ email: "bench@example.test", password: "correct horse battery staple", isAdmin: false, verified: true }, { actor: "bench" });
      const ctx: RequestContext = {
        principal: { userId: user.id, email: user.email, isAdmin: false, twoFactor: false, via: "session", scopes: "all" },
        ip: null,
      };
      const org = await services.orgs.create(ctx, "bench");
      const project = await services.projects.create(ctx, org.id, "bench", opts.repositoryUrl ?? null);
      return await fn({ services, ctx, project });
    } finally {
      await services.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

type Cell = string | number;

/** The `p`th percentile of an ascending list. */
export const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

/** Prints a titled table with right-aligned columns (the first column left-aligned). */
export function printTable(title: string, headers: string[], rows: Cell[][]): void {
  const text = [headers, ...rows].map((row) => row.map(String));
  const widths = headers.map((_, i) => Math.max(...text.map((row) => (row[i] ?? "").length)));
  const line = (row: string[]) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ");
  console.log(`\n${title}`);
  console.log(line(text[0]!));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of text.slice(1)) console.log(line(row));
}

/** A number with thousands separators and a fixed number of decimals. */
export function fmt(n: number, decimals = 0): string {
  return n.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/** "0.87x": how the measured figure compares with its baseline ("n/a" when the baseline rounds to 0). */
export function ratio(measured: number, baseline: number): string {
  return baseline === 0 ? "n/a" : `${(measured / baseline).toFixed(2)}x`;
}

/** Wall times (ms, ascending) of `rounds` runs of `once`, after one warm-up run. */
export async function timeRounds(rounds: number, once: () => unknown): Promise<number[]> {
  await once();
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const start = process.hrtime.bigint();
    await once();
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return times.sort((a, b) => a - b);
}
