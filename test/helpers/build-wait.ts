import type { Client } from "./harness.js";

export interface BuildSeen {
  id: string;
  status: string;
  reason: string | null;
  jobs: Array<{ id: string; status: string; reason: string | null; logBytes: number }>;
}

export const FINAL_STATUSES = ["success", "failed", "error", "canceled"];
export const hasEnded = (status: string) => FINAL_STATUSES.includes(status);

/** Polls a build until `done(status)`; fails with what it last saw when that takes longer than `ms`. */
export async function buildWhen(client: Client, buildId: string, done: (status: string) => boolean, ms = 90_000): Promise<BuildSeen> {
  const until = Date.now() + ms;
  for (;;) {
    const b = (await client.get(`/api/v1/builds/${buildId}`)).json() as BuildSeen;
    if (done(b.status)) return b;
    if (Date.now() > until) throw new Error(`build ${buildId} still ${b.status} after ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
