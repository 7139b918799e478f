import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { buildApp } from "../src/http/app.js";
import { injectTransport } from "../src/runner/embedded.js";
import { Runner } from "../src/runner/runner.js";
import type { Sandbox } from "../src/sandbox/backend.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import type { Services } from "../src/services.js";
import { fmt, percentile, printTable, withSlipway } from "./support.js";

const LINES = 60;

/**
 * A line printed by a running step → the same line at an SSE client, end to end: sandbox, masking,
 * runner, runner API, sealed log storage and the SSE route. Step and client share this machine's
 * clock, so the step stamps each line with the time it printed it. The baseline is a line written
 * straight to a local SSE stream on the same server, with no build in between.
 */
export async function liveLogBench(): Promise<void> {
  await withSlipway(async ({ services, project }) => {
    const repo = mkdtempSync(path.join(tmpdir(), "slipway-bench-repo-"));
    writeFileSync(path.join(repo, ".slipway.yml"), `image: host\nsteps:\n  - name: ticker\n    command: for i in $(seq ${LINES}); do echo "t=$(date +%s%N)"; sleep 0.05; done\n`);
    const app = await buildApp(services, { logger: false });
    app.get("/bench/baseline", { config: { access: { kind: "public" } } }, (_req, reply) => {
      reply.hijack();
      reply.raw.writeHead(200, { "content-type": "text/event-stream" });
      let n = 0;
      const timer = setInterval(() => {
        reply.raw.write(`data: t=${BigInt(Date.now()) * 1_000_000n}\n\n`);
        if (++n === LINES) {
          clearInterval(timer);
          reply.raw.end();
        }
      }, 50);
    });
    await app.listen({ host: "127.0.0.1", port: 0 });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const { token } = await services.runners.register("bench");
    const checkout = async (_job: unknown, sandbox: Sandbox) => {
      await sandbox.exec({ argv: ["tar", "-xf", "-", "-C", "/workspace"] }, { stdin: execFileSync("tar", ["-C", repo, "-cf", "-", "."]) });
    };
    const runner = new Runner({ server: "embedded", token, backend: new BwrapBackend(), transport: injectTransport(app, token), leaseWaitMs: 500, checkout });
    runner.start(1);
    try {
      const build = await services.builds.create(project.id, { branch: "main", trigger: "api" });
      while ((await services.builds.get(build.id)).status === "queued") await new Promise((r) => setTimeout(r, 20));
      const job = (await services.builds.get(build.id)).jobs[0]!;
      // The bench talks to the log route as the project's owner would, with a session.
      const session = await services.sessions.create(services.store.db, (await services.users.findByEmail(services.store.db, "bench@example.test"))!.id, null);
      const viaBuild = await sseLatencies(`${url}/api/v1/builds/${build.id}/jobs/${job.id}/log`, { cookie: `slipway_session=${session}` }, true);
      const baseline = await sseLatencies(`${url}/bench/baseline`, {}, false);
      const many = await manyBuilds(services, project.id, repo);
      printTable(`${MANY} one-step builds queued at once, embedded runner with 1 slot, server and runner in one process`, ["total s", "builds/s", "peak RSS MiB", "RSS before MiB"], [
        [fmt(many.seconds, 1), fmt(MANY / many.seconds, 1), fmt(many.peakRss / 1024 ** 2), fmt(many.rssBefore / 1024 ** 2)],
      ]);
      printTable(`${LINES} lines, one every 50 ms (ms from print to client)`, ["path", "p50", "p95", "lines"], [
        ["step → sandbox → runner → server → SSE client", fmt(percentile(viaBuild, 50), 1), fmt(percentile(viaBuild, 95), 1), viaBuild.length],
        ["server → SSE client (baseline)", fmt(percentile(baseline, 50), 2), fmt(percentile(baseline, 95), 2), baseline.length],
      ]);
    } finally {
      await runner.stop();
      await app.close();
      rmSync(repo, { recursive: true, force: true });
    }
  });
}

const MANY = 200;

/** Queues MANY builds at once and waits for all; samples the process's memory meanwhile. */
async function manyBuilds(services: Services, projectId: string, repo: string): Promise<{ seconds: number; peakRss: number; rssBefore: number }> {
  writeFileSync(path.join(repo, ".slipway.yml"), "image: host\nsteps:\n  - name: tiny\n    command: echo ok\n");
  const rssBefore = process.memoryUsage().rss;
  let peakRss = rssBefore;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  const started = Date.now();
  const ids = await Promise.all(Array.from({ length: MANY }, async () => (await services.builds.create(projectId, { branch: "main", trigger: "api" })).id));
  for (const id of ids) while (["queued", "running"].includes((await services.builds.get(id)).status)) await new Promise((r) => setTimeout(r, 50));
  clearInterval(sampler);
  return { seconds: (Date.now() - started) / 1000, peakRss, rssBefore };
}

/** Reads an SSE stream to its end; returns, sorted, arrival time minus the `t=` stamp of each line. */
async function sseLatencies(url: string, headers: Record<string, string>, base64: boolean): Promise<number[]> {
  const res = await fetch(url, { headers });
  const reader = res.body!.getReader();
  const latencies: number[] = [];
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const arrived = Date.now();
    buffered += Buffer.from(value).toString();
    const events = buffered.split("\n\n");
    buffered = events.pop()!;
    for (const e of events) {
      const data = /^data: (.*)$/m.exec(e)?.[1];
      if (!data) continue;
      const text = base64 ? (() => { try { return Buffer.from(JSON.parse(data).data ?? "", "base64").toString(); } catch { return ""; } })() : data;
      for (const m of text.matchAll(/t=(\d+)/g)) latencies.push(arrived - Number(BigInt(m[1]!) / 1_000_000n));
    }
  }
  return latencies.sort((a, b) => a - b);
}
