import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LeasedJob } from "../src/builds/builds.js";
import { injectTransport } from "../src/runner/embedded.js";
import { Runner } from "../src/runner/runner.js";
import type { Sandbox, SandboxBackend, SandboxSpec } from "../src/sandbox/backend.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { Client, createUser, signIn, startHarness, type Harness } from "./helpers/harness.js";

const SECRET = "build-secret-value-42";
let h: Harness;
let url: string;
let owner: Client;
let runner: Runner;
let backend: BwrapBackend;
const repos = new Map<string, string>();

/** A git repository on this machine with the given .slipway.yml. */
function makeRepo(config: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), "slipway-build-repo-"));
  writeFileSync(path.join(dir, ".slipway.yml"), config);
  execFileSync("git", ["-C", dir, "init", "-q", "-b", "main"]);
  execFileSync("git", ["-C", dir, "-c", "user.name=Ada", "-c", "user.email=ada@example.com", "add", "-A"]);
  execFileSync("git", ["-C", dir, "-c", "user.name=Ada", "-c", "user.email=ada@example.com", "commit", "-qm", "first"]);
  return dir;
}

/**
 * These tests are about builds, runners and logs; the repository reaches the sandbox as a tar of
 * a local clone (cloning with deploy keys over SSH is tested with sshd in its own suite).
 */
async function localCheckout(job: LeasedJob, sandbox: Sandbox): Promise<void> {
  const dir = repos.get(job.projectId)!;
  const archive = execFileSync("tar", ["-C", dir, "-cf", "-", "."]);
  const status = await sandbox.exec({ argv: ["tar", "-xf", "-", "-C", "/workspace"] }, { stdin: archive });
  if (status.code !== 0) throw new Error("checkout failed");
}

async function project(config: string): Promise<string> {
  const res = await owner.post("/api/v1/projects", { name: `p${Math.random().toString(36).slice(2, 8)}` });
  const id = res.json().id as string;
  repos.set(id, makeRepo(config));
  expect((await owner.put(`/api/v1/projects/${id}/secrets/API_KEY`, { value: SECRET })).statusCode).toBe(201);
  return id;
}

async function waitFor(buildId: string, done: (status: string) => boolean, ms = 30_000): Promise<{ status: string; reason: string | null; jobs: Array<{ id: string; status: string; attempts: number }> }> {
  const until = Date.now() + ms;
  for (;;) {
    const b = (await owner.get(`/api/v1/builds/${buildId}`)).json();
    if (done(b.status) || Date.now() > until) return b;
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  h = await startHarness();
  await h.app.listen({ host: "127.0.0.1", port: 0 });
  url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  await createUser(h, "ci@example.com");
  owner = await signIn(h, "ci@example.com");
  backend = new BwrapBackend();
  const { token } = await h.services.runners.register("test runner");
  runner = new Runner({ server: url, token, backend, checkout: localCheckout });
  runner.start(2);
});

afterAll(async () => {
  await runner?.stop();
  await h?.close();
  for (const dir of repos.values()) rmSync(dir, { recursive: true, force: true });
});

describe("builds", () => {
  it("a build started through the API runs on a runner in sandboxes and passes, with CI variables and masked secrets in its stored log", async () => {
    const id = await project(`image: host
secrets: [API_KEY]
steps:
  - name: show
    command: echo "building $CI_BRANCH as build $CI_BUILD_NUMBER"; echo "key=$API_KEY"; echo "b64=$(printf %s "$API_KEY" | base64)"
`);
    const created = await owner.post(`/api/v1/projects/${id}/builds`, { branch: "main" });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ number: 1, status: "queued", branch: "main", trigger: "api" });
    const build = await waitFor(created.json().id, (s) => !["queued", "running"].includes(s));
    expect(build.status).toBe("success");
    const log = await owner.get(`/api/v1/builds/${build.jobs[0] ? created.json().id : ""}/jobs/${build.jobs[0]!.id}/log?format=text`);
    expect(log.statusCode).toBe(200);
    expect(log.body).toContain("building main as build 1");
    expect(log.body).toContain("key=***");
    expect(log.body).toContain("b64=***");
    expect(log.body).not.toContain(SECRET);
    // P17: the stored chunks are sealed with the project's key.
    const chunks = await h.services.store.db.selectFrom("log_chunks").select("data").where("job_id", "=", build.jobs[0]!.id).execute();
    expect(chunks.length).toBeGreaterThan(0);
    for (const c of chunks) {
      expect(c.data.startsWith("sb1:")).toBe(true);
      expect(c.data).not.toContain("building main");
    }
    expect(readFileSync(path.join(h.dataDir, "slipway.db")).includes("building main as build")).toBe(false);
  });

  it("a failing step fails the build with the reason", async () => {
    const id = await project("image: host\nsteps:\n  - name: broken\n    command: exit 5\n");
    const created = (await owner.post(`/api/v1/projects/${id}/builds`, { branch: "main" })).json();
    const build = await waitFor(created.id, (s) => !["queued", "running"].includes(s));
    expect(build.status).toBe("failed");
    expect(build.reason).toMatch(/step broken: exited with code 5/);
  });

  it("reports every step of a job live: status, exit code, which sandbox it shared, and where its output starts in the log", async () => {
    const id = await project(`image: host
steps:
  - name: first
    command: echo one > /workspace/made-by-first
  - type: parallel
    steps:
      - name: left
        command: sleep 2; test ! -e /workspace/made-by-first && echo fresh-checkout
      - name: right
        command: exit 3
  - name: after
    command: echo never
`);
    const created = (await owner.post(`/api/v1/projects/${id}/builds`, { branch: "main" })).json();
    type Seen = { id: string; name: string; status: string; sandbox: number; logOffset: number; exitCode: number | null; reason: string | null; startedAt: string | null; finishedAt: string | null };
    const stepsNow = async () => ((await owner.get(`/api/v1/builds/${created.id}`)).json().jobs[0]?.steps ?? []) as Seen[];
    // While `left` sleeps, the API already shows it running, with no end yet.
    let running: Seen | undefined;
    for (const until = Date.now() + 30_000; !running && Date.now() < until; await new Promise((r) => setTimeout(r, 50))) running = (await stepsNow()).find((st) => st.name === "left" && st.status === "running");
    expect(running).toMatchObject({ startedAt: expect.any(String), finishedAt: null });

    const build = await waitFor(created.id, (st) => !["queued", "running"].includes(st));
    expect(build.status).toBe("failed");
    const steps = await stepsNow();
    const byName = Object.fromEntries(steps.map((st) => [st.name, st]));
    expect(Object.keys(byName).sort()).toEqual(["after", "first", "left", "right"]);
    expect(byName.first).toMatchObject({ id: "1", status: "success", exitCode: 0, sandbox: 0, reason: null });
    expect(byName.left).toMatchObject({ id: "2.1", status: "success", exitCode: 0 });
    expect(byName.right).toMatchObject({ id: "2.2", status: "failed", exitCode: 3, reason: "exited with code 3" });
    expect(new Set([byName.first!.sandbox, byName.left!.sandbox, byName.right!.sandbox]).size).toBe(3);
    expect(byName.after).toMatchObject({ status: "skipped", startedAt: null, finishedAt: expect.any(String), reason: "an earlier step failed" });
    for (const st of [byName.first!, byName.left!, byName.right!]) expect(Date.parse(st.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(st.startedAt!));

    const log = Buffer.from((await owner.get(`/api/v1/builds/${created.id}/jobs/${build.jobs[0]!.id}/log?format=text`)).rawPayload);
    for (const st of [byName.first!, byName.left!, byName.right!]) expect(log.subarray(st.logOffset).toString().startsWith(`\x1b[36m▶ ${st.name}`), st.name).toBe(true);
    // `left` ran in a sandbox of its own, with a fresh checkout: the top level's file is not there.
    expect(log.toString()).toContain("fresh-checkout");
  });

  it("services run beside the steps: their output is in the job's stored log, prefixed and masked; an unhealthy one fails the build with the reason", async () => {
    const config = (check: string, retries: number) => `image: host
secrets: [API_KEY]
services:
  db:
    image: host
    command: echo "db starting with $API_KEY"; exec python3 -m http.server 8000 --bind 127.0.0.1
    healthcheck: { command: ${JSON.stringify(check)}, interval: 50ms, retries: ${retries} }
steps:
  - name: query
    command: python3 -c 'import urllib.request; urllib.request.urlopen("http://db:8000/", timeout=10); print("db answered")'
`;
    const ok = (await owner.post(`/api/v1/projects/${await project(config("python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8000/\")'", 100))}/builds`, { branch: "main" })).json();
    const passed = await waitFor(ok.id, (s) => !["queued", "running"].includes(s));
    expect(passed.status).toBe("success");
    const log = (await owner.get(`/api/v1/builds/${ok.id}/jobs/${passed.jobs[0]!.id}/log?format=text`)).body;
    expect(log).toMatch(/● db: started[\s\S]*● db: healthy[\s\S]*db answered/);
    expect(log).toContain("[db] db starting with ***\n");
    expect(log).not.toContain(SECRET);
    const bad = (await owner.post(`/api/v1/projects/${await project(config('echo "no db yet"; exit 1', 3))}/builds`, { branch: "main" })).json();
    const failed = await waitFor(bad.id, (s) => !["queued", "running"].includes(s));
    expect(failed.status).toBe("failed");
    expect(failed.reason).toBe("step query: service db is unhealthy: its health check failed 3 times in a row, the last one exited with code 1, saying: no db yet");
  });

  it("streams a running job's log live over Server-Sent Events and closes with its status", async () => {
    const id = await project("image: host\nsteps:\n  - name: ticker\n    command: for i in 1 2 3 4 5; do echo tick-$i; sleep 0.3; done\n");
    const created = (await owner.post(`/api/v1/projects/${id}/builds`, { branch: "main" })).json();
    const running = await waitFor(created.id, (s) => s === "running");
    const res = await fetch(`${url}/api/v1/builds/${created.id}/jobs/${running.jobs[0]!.id}/log`, { headers: { cookie: owner.auth.cookie! } });
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const reader = res.body!.getReader();
    let text = "";
    const arrivals: number[] = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
      arrivals.push(Date.now());
    }
    const events = text.split("\n\n").filter((e) => e.startsWith("event: log"));
    const output = events.map((e) => Buffer.from(JSON.parse(e.split("\ndata: ")[1]!).data, "base64").toString()).join("");
    for (let i = 1; i <= 5; i++) expect(output).toContain(`tick-${i}`);
    expect(text).toMatch(/event: end\ndata: \{"status":"success"/);
    // Lines arrived while the step ran, not all at its end.
    expect(arrivals[arrivals.length - 1]! - arrivals[0]!).toBeGreaterThan(600);
    // Resuming from an offset sends only what follows it.
    const offset = Number(/id: (\d+)/.exec(events[0]!)![1]);
    const resumed = await owner.get(`/api/v1/builds/${created.id}/jobs/${running.jobs[0]!.id}/log?format=text&offset=${offset}`);
    expect(output.endsWith(resumed.body)).toBe(true);
    expect(resumed.body.length).toBeLessThan(output.length);
  });

  it("cancel kills a running build within seconds", async () => {
    const id = await project("image: host\nsteps:\n  - name: forever\n    command: sleep 120\n");
    const created = (await owner.post(`/api/v1/projects/${id}/builds`, { branch: "main" })).json();
    await waitFor(created.id, (s) => s === "running");
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    expect((await owner.post(`/api/v1/builds/${created.id}/cancel`)).statusCode).toBe(200);
    const build = await waitFor(created.id, (s) => !["queued", "running"].includes(s), 20_000);
    expect(build.status).toBe("canceled");
    expect(Date.now() - started).toBeLessThan(8_000);
  });

  it("a job whose runner died is leased again once and then finishes; nothing is left stuck", async () => {
    const id = await project("image: host\nsteps:\n  - name: quick\n    command: echo finished-by-a-live-runner\n");
    await runner.stop();
    // Let the server see the stopped runner's long polls end before a job is queued.
    await new Promise((r) => setTimeout(r, 300));
    const created = (await owner.post(`/api/v1/projects/${id}/builds`, { branch: "main" })).json();
    // A runner that leases the job and then dies without a word.
    const { token } = await h.services.runners.register("doomed");
    const doomed = new Runner({ server: url, token, backend, checkout: localCheckout });
    const leased = await doomed.call<{ job: LeasedJob }>("/runner/lease", { waitMs: 5_000 });
    expect(leased.job.buildId).toBe(created.id);
    await doomed.call(`/runner/jobs/${leased.job.jobId}/log`, { offset: 0, data: Buffer.from("stale output of the lost attempt\n").toString("base64") });
    await h.services.store.db.updateTable("jobs").set({ lease_expires_at: new Date(Date.now() - 1000).toISOString() }).where("id", "=", leased.job.jobId).execute();
    expect(await h.services.builds.expireLeases()).toBe(1);
    const { token: t2 } = await h.services.runners.register("test runner 2");
    runner = new Runner({ server: url, token: t2, backend, checkout: localCheckout });
    runner.start(2);
    const build = await waitFor(created.id, (s) => !["queued", "running"].includes(s));
    expect(build.status).toBe("success");
    expect(build.jobs[0]!.attempts).toBe(2);
    // The retry's log starts afresh: the lost attempt's output is gone, the new one complete.
    const log = (await owner.get(`/api/v1/builds/${created.id}/jobs/${build.jobs[0]!.id}/log?format=text`)).body;
    expect(log).toContain("finished-by-a-live-runner");
    expect(log).not.toContain("stale output");
    // The dead runner's lease is gone: it can no longer write to the job.
    await expect(doomed.call(`/runner/jobs/${leased.job.jobId}/log`, { offset: 0, data: "eA==" })).rejects.toThrow(/no longer holds/);
  });

  it("the embedded runner's in-process transport runs builds through the same runner API", async () => {
    const id = await project("image: host\nsteps:\n  - name: inside\n    command: echo via-inject\n");
    await runner.stop();
    const { token } = await h.services.runners.register("embedded");
    runner = new Runner({ server: "embedded", token, backend, checkout: localCheckout, transport: injectTransport(h.app, token), leaseWaitMs: 500 });
    runner.start(1);
    const created = (await owner.post(`/api/v1/projects/${id}/builds`, { branch: "main" })).json();
    const build = await waitFor(created.id, (s) => !["queued", "running"].includes(s));
    expect(build.status).toBe("success");
    expect((await owner.get(`/api/v1/builds/${created.id}/jobs/${build.jobs[0]!.id}/log?format=text`)).body).toContain("via-inject");
    // The same token over the transport is checked like any other: a wrong one is refused.
    await expect(new Runner({ server: "embedded", token: "slr_wrong", backend, transport: injectTransport(h.app, "slr_wrong") }).call("/runner/lease", { waitMs: 0 })).rejects.toThrow(/runner token/);
  });

  it("P08: a project's egress allowlist is validated and narrows the network of every sandbox of its builds", async () => {
    const id = await project("image: host\nsteps:\n  - name: a\n    command: echo allowed\n  - type: parallel\n    steps:\n      - name: b\n        command: echo b\n      - name: c\n        command: echo c\n");
    const bad = await owner.patch(`/api/v1/projects/${id}`, { egressAllowlist: ["not a host:port!"] });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.message).toMatch(/egressAllowlist\.0: /);
    const set = await owner.patch(`/api/v1/projects/${id}`, { egressAllowlist: ["203.0.113.7:22", "198.51.100.0/24:443"] });
    expect(set.statusCode).toBe(200);
    expect(set.json().egressAllowlist).toEqual(["203.0.113.7:22", "198.51.100.0/24:443"]);
    // The real backend, recording the spec of every sandbox that runs anything (the runner's
    // spare sandbox, started ahead on its own network, is used only by jobs of that network).
    const specs = new Set<SandboxSpec>();
    const recording: SandboxBackend = {
      create: async (spec) => {
        const sandbox = await backend.create(spec);
        const exec = sandbox.exec.bind(sandbox);
        sandbox.exec = (cmd, io) => (specs.add(spec), exec(cmd, io));
        return sandbox;
      },
    };
    await runner.stop();
    const { token } = await h.services.runners.register("networked");
    runner = new Runner({ server: url, token, backend: recording, checkout: localCheckout, network: { mode: "outbound" } });
    runner.start(1);
    const created = (await owner.post(`/api/v1/projects/${id}/builds`, { branch: "main" })).json();
    const build = await waitFor(created.id, (s) => !["queued", "running"].includes(s));
    expect(build.status).toBe("success");
    expect(specs.size).toBe(3);
    for (const spec of specs) expect(spec.network).toEqual({ mode: "outbound", allow: ["203.0.113.7:22", "198.51.100.0/24:443"] });
    // Control: without an allowlist the same runner gives plain outbound access.
    expect((await owner.patch(`/api/v1/projects/${id}`, { egressAllowlist: null })).json().egressAllowlist).toBeNull();
    specs.clear();
    const again = (await owner.post(`/api/v1/projects/${id}/builds`, { branch: "main" })).json();
    expect((await waitFor(again.id, (s) => !["queued", "running"].includes(s))).status).toBe("success");
    expect(specs.size).toBe(3);
    for (const spec of specs) expect(spec.network).toEqual({ mode: "outbound" });
  });

  it("runner routes refuse users and unknown runner tokens", async () => {
    for (const headers of [{}, { authorization: "Bearer slr_unknown" }, { cookie: owner.auth.cookie! }] as Array<Record<string, string>>) {
      const res = await fetch(`${url}/api/v1/runner/lease`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: "{}" });
      expect(res.status).toBe(401);
    }
  });
});

it("a runner cannot grow a job's steps without end", async () => {
  const other = await startHarness();
  try {
    await createUser(other, "steps@example.com");
    const client = await signIn(other, "steps@example.com");
    const projectId = (await client.post("/api/v1/projects", { name: "many-steps" })).json().id as string;
    await client.post(`/api/v1/projects/${projectId}/builds`, { branch: "main" });
    const { id: runnerId, token } = await other.services.runners.register("steps");
    const job = (await other.services.builds.lease(runnerId, 0))!;
    const runnerClient = new Client(other.app, { bearer: token });
    const report = (step: string) => runnerClient.post(`/api/v1/runner/jobs/${job.jobId}/steps`, { step, name: `s${step}`, status: "success", sandbox: 0, logOffset: 0, exitCode: 0 });
    expect((await report("1")).statusCode).toBe(204);
    const rows = Array.from({ length: 4_999 }, (_, i) => ({ job_id: job.jobId, step_id: String(i + 2), name: "filler", status: "success", sandbox: 0, log_offset: 0, exit_code: 0, reason: null, started_at: null, finished_at: null }));
    for (let i = 0; i < rows.length; i += 500) await other.services.store.db.insertInto("job_steps").values(rows.slice(i, i + 500)).execute();
    const refused = await report("9999");
    expect([refused.statusCode, refused.json().error.code]).toEqual([409, "too_many_steps"]);
    // A step already there can still end.
    expect((await report("1")).statusCode).toBe(204);
  } finally {
    await other.close();
  }
});

it("refuses project secrets too short to be masked in logs, and says why", async () => {
  const id = (await owner.post("/api/v1/projects", { name: "short-secrets" })).json().id as string;
  const res = await owner.put(`/api/v1/projects/${id}/secrets/PIN`, { value: "123" });
  expect(res.statusCode).toBe(400);
  expect(res.json().error.message).toMatch(/at least 4 characters/);
  expect((await owner.put(`/api/v1/projects/${id}/secrets/PIN`, { value: "1234" })).statusCode).toBe(201);
});
