import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { User } from "../src/auth/users.js";
import type { Build, LeasedJob } from "../src/builds/builds.js";
import { memoryFiles, readPipeline, selectSteps } from "../src/pipeline/index.js";
import { PipelineRunner, type RunOptions } from "../src/runner/pipeline-runner.js";
import { Runner } from "../src/runner/runner.js";
import type { Sandbox } from "../src/sandbox/backend.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { createUser, signIn, startHarness, type Client, type Harness } from "./helpers/harness.js";
import { startPostgres } from "./helpers/postgres.js";

/**
 * Manual steps with the real embedded runner and the real sandbox: a build stops at one and waits,
 * an owner or admin approves it, and a new job runs the pipeline from that step on.
 */

let h: Harness;
let url: string;
let backend: BwrapBackend;
let runner: Runner;
let owner: Client;
let admin: Client;
let member: Client;
let adminUser: User;
let orgId: string;
const repos = new Map<string, string>();
/** The commit each job's checkout was asked for (null: the branch head). */
const checkedOut = new Map<string, string | null>();

const git = (dir: string, ...args: string[]) => execFileSync("git", ["-C", dir, "-c", "user.name=Ada", "-c", "user.email=ada@example.com", ...args], { encoding: "utf8" }).trim();

function makeRepo(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), "slipway-approvals-"));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  git(dir, "init", "-q", "-b", "main");
  git(dir, "add", "-A");
  git(dir, "commit", "-qm", "first");
  return dir;
}

/**
 * The repository reaches the sandbox as a tar (cloning over SSH has its own suite): the working
 * tree with its .git for the branch head, or `git archive` of the commit a job is pinned to.
 */
async function localCheckout(job: LeasedJob, sandbox: Sandbox): Promise<void> {
  const dir = repos.get(job.projectId)!;
  checkedOut.set(job.jobId, job.commit);
  const archive = job.commit ? execFileSync("git", ["-C", dir, "archive", "--format=tar", job.commit]) : execFileSync("tar", ["-C", dir, "-cf", "-", "."]);
  const status = await sandbox.exec({ argv: ["tar", "-xf", "-", "-C", "/workspace"] }, { stdin: archive });
  if (status.code !== 0) throw new Error("checkout failed");
}

const PIPELINE = `image: host
steps:
  - name: a
    command: echo "ran a"
  - name: deploy
    type: manual
    command: echo "ran deploy"
  - name: b
    command: echo "ran b $(cat version.txt)"
`;

async function project(files: Record<string, string>): Promise<string> {
  const res = await owner.post("/api/v1/projects", { name: `p${Math.random().toString(36).slice(2, 8)}` });
  expect(res.statusCode, res.body).toBe(201);
  repos.set(res.json().id, makeRepo(files));
  return res.json().id as string;
}

async function waitFor(buildId: string, done: (b: Build) => boolean, ms = 30_000): Promise<Build> {
  const until = Date.now() + ms;
  for (;;) {
    const b = (await owner.get(`/api/v1/builds/${buildId}`)).json() as Build;
    if (done(b) || Date.now() > until) return b;
    await new Promise((r) => setTimeout(r, 100));
  }
}
const settled = (b: Build) => !["queued", "running"].includes(b.status);

const logOf = async (buildId: string, jobId: string) => (await owner.get(`/api/v1/builds/${buildId}/jobs/${jobId}/log?format=text`)).body;

/** A new build of the a → deploy (manual) → b pipeline, once it waits at deploy. */
async function waitingBuild(): Promise<{ projectId: string; build: Build }> {
  const projectId = await project({ ".slipway.yml": PIPELINE, "version.txt": "v1" });
  const created = await owner.post(`/api/v1/projects/${projectId}/builds`, { branch: "main" });
  expect(created.statusCode, created.body).toBe(201);
  const build = await waitFor(created.json().id, settled);
  expect(build.status, JSON.stringify(build)).toBe("waiting-for-approval");
  return { projectId, build };
}

const approve = (as: Client, buildId: string, step: string) => as.post(`/api/v1/builds/${buildId}/approvals`, { step });

function startRunner(token: string): void {
  runner = new Runner({ server: url, token, backend, checkout: localCheckout });
  runner.start(2);
}

beforeAll(async () => {
  h = await startHarness();
  await h.app.listen({ host: "127.0.0.1", port: 0 });
  url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  const ownerUser = await createUser(h, "olivia@example.com");
  adminUser = await createUser(h, "adam@example.com");
  const memberUser = await createUser(h, "mia@example.com");
  owner = await signIn(h, "olivia@example.com");
  orgId = (await owner.post("/api/v1/projects", { name: "first" })).json().organization;
  const ctx = { principal: { userId: ownerUser.id, email: ownerUser.email, isAdmin: false, twoFactor: false, via: "session", scopes: "all" }, ip: null } as const;
  for (const [user, role] of [[adminUser, "admin"], [memberUser, "member"]] as const) {
    const { token } = await h.services.orgs.invite(ctx, orgId, user.email, role);
    const client = await signIn(h, user.email);
    expect((await client.post("/api/v1/invitations/accept", { token })).statusCode).toBe(200);
  }
  admin = await signIn(h, "adam@example.com");
  member = await signIn(h, "mia@example.com");
  backend = new BwrapBackend();
  startRunner((await h.services.runners.register("approvals runner")).token);
});

afterAll(async () => {
  await runner?.stop();
  await h?.close();
  for (const dir of repos.values()) rmSync(dir, { recursive: true, force: true });
});

describe("manual steps", () => {
  it("a build waits at its manual step; a member's approval is refused, an admin's resumes it from that step, at the same commit, to success", async () => {
    const { projectId, build } = await waitingBuild();
    const dir = repos.get(projectId)!;
    const startedAt = git(dir, "rev-parse", "HEAD");
    // Waiting is not an end: no finish time, and the build says which step waits.
    expect(build).toMatchObject({ finishedAt: null, waitingFor: { id: "2", name: "deploy" }, commit: startedAt, approvals: [{ step: "2", name: "deploy", approvedBy: null, approvedAt: null }] });
    expect(build.reason).toMatch(/deploy/);
    expect(build.jobs).toMatchObject([{ status: "waiting-for-approval", attempts: 1 }]);
    const first = await logOf(build.id, build.jobs[0]!.id);
    expect(first).toContain("ran a");
    expect(first).toContain("▶ a\x1b");
    expect(first).toContain("deploy: waiting for an approval");
    expect(first).not.toContain("ran deploy");
    expect(first).not.toContain("ran b");
    expect((await owner.get(`/api/v1/projects/${projectId}/builds?status=waiting-for-approval`)).json().builds.map((b: Build) => b.id)).toEqual([build.id]);

    // A push while the build waits: what runs after the approval is still the commit that waited.
    writeFileSync(path.join(dir, "version.txt"), "v2");
    git(dir, "commit", "-qam", "second");

    const refused = await approve(member, build.id, "2");
    expect(refused.statusCode).toBe(403);
    const wrongStep = await approve(admin, build.id, "3");
    expect(wrongStep.statusCode).toBe(409);
    expect(wrongStep.json().error.message).toMatch(/step 3 is not waiting for an approval; the build waits for step "deploy" \(2\)/);
    const unchanged = (await owner.get(`/api/v1/builds/${build.id}`)).json() as Build;
    expect(unchanged).toMatchObject({ status: "waiting-for-approval", approvals: [{ approvedBy: null }] });
    expect(unchanged.jobs).toHaveLength(1);

    const approved = await approve(admin, build.id, "2");
    expect(approved.statusCode, approved.body).toBe(200);
    expect(approved.json()).toMatchObject({ waitingFor: null, approvals: [{ step: "2", approvedBy: adminUser.name }] });
    expect(approved.json().jobs).toHaveLength(2);
    const twice = await approve(admin, build.id, "2");
    expect(twice.statusCode).toBe(409);
    expect(twice.json().error.code).toBe("already_approved");

    const done = await waitFor(build.id, settled);
    expect(done.status, JSON.stringify(done)).toBe("success");
    expect(done.finishedAt).not.toBeNull();
    expect(done.startedAt).toBe(build.startedAt);
    const [waited, resumed] = done.jobs;
    expect(waited).toMatchObject({ status: "success", reason: `approved by ${adminUser.name}` });
    expect(resumed).toMatchObject({ name: "pipeline from deploy", status: "success", attempts: 1 });
    const second = await logOf(build.id, resumed!.id);
    expect(second).toContain("ran deploy");
    expect(second).toContain("ran b v1");
    // The steps before the approved one ran in the first job only.
    expect(second).not.toContain("ran a");
    expect(second).not.toContain("▶ a\x1b");
    expect(second).toContain("▶ deploy\x1b");
    expect(checkedOut.get(resumed!.id)).toBe(startedAt);

    const audit = (await owner.get(`/api/v1/orgs/${orgId}/audit?action=build.step_approved`)).json().entries;
    expect(audit).toMatchObject([{ action: "build.step_approved", actorId: adminUser.id, target: build.id, details: { step: "2", name: "deploy" } }]);
    const ended = await approve(admin, build.id, "2");
    expect(ended.statusCode).toBe(409);
    expect(ended.json().error).toMatchObject({ code: "build_finished", message: expect.stringMatching(/already ended \(success\)/) });
  });

  it("a waiting build can be canceled, and is then no longer approvable", async () => {
    const { build } = await waitingBuild();
    const canceled = await owner.post(`/api/v1/builds/${build.id}/cancel`);
    expect(canceled.statusCode).toBe(200);
    expect(canceled.json()).toMatchObject({ status: "canceled", waitingFor: null, jobs: [{ status: "canceled" }] });
    expect(canceled.json().finishedAt).not.toBeNull();
    const late = await approve(admin, build.id, "2");
    expect(late.statusCode).toBe(409);
    expect(late.json().error.message).toMatch(/already ended \(canceled\)/);
    expect((await owner.get(`/api/v1/builds/${build.id}`)).json().jobs).toHaveLength(1);
  });

  it("the resumed job's lease names where to resume and what is approved; when its runner dies it is leased again, once", async () => {
    const { build } = await waitingBuild();
    await runner.stop();
    // Let the server see the stopped runner's long polls end before the job is queued.
    await new Promise((r) => setTimeout(r, 300));
    expect((await approve(owner, build.id, "2")).statusCode).toBe(200);
    const doomed = new Runner({ server: url, token: (await h.services.runners.register("doomed")).token, backend, checkout: localCheckout });
    const leased = (await doomed.call<{ job: LeasedJob }>("/runner/lease", { waitMs: 5_000 })).job;
    expect(leased).toMatchObject({ buildId: build.id, resumeFrom: "2", approvedSteps: ["2"], commit: build.commit });
    await h.services.store.db.updateTable("jobs").set({ lease_expires_at: new Date(Date.now() - 1000).toISOString() }).where("id", "=", leased.jobId).execute();
    expect(await h.services.builds.expireLeases()).toBe(1);
    startRunner((await h.services.runners.register("approvals runner 2")).token);
    const done = await waitFor(build.id, settled);
    expect(done.status).toBe("success");
    expect(done.jobs.map((j) => [j.status, j.attempts])).toEqual([["success", 1], ["success", 2]]);
    expect(await logOf(build.id, leased.jobId)).toContain("ran deploy");
  });
});

describe("manual groups in the pipeline runner", () => {
  const config = {
    "codeship-services.yml": "app:\n  image: host\n",
    "codeship-steps.yml": [
      "- name: a",
      "  service: app",
      "  command: echo a",
      "- name: release",
      "  type: manual",
      "  service: app",
      "  steps:",
      "    - name: one",
      "      command: echo one",
      "    - name: two",
      "      command: echo two",
      "- name: b",
      "  service: app",
      "  command: echo b",
    ].join("\n"),
  };

  async function run(opts: Partial<RunOptions>) {
    const loaded = readPipeline(memoryFiles(config));
    expect(loaded.problems).toEqual([]);
    const output: string[] = [];
    const result = await new PipelineRunner({
      backend,
      pipeline: loaded.pipeline!,
      nodes: selectSteps(loaded.pipeline!, { branch: "main" }),
      checkout: async () => undefined,
      env: {},
      secrets: [],
      onEvent: (e) => e.type === "output" && output.push(e.data.toString().trim()),
      ...opts,
    }).run();
    return { ...result, output, ran: result.steps.map((s) => `${s.name}:${s.status}`) };
  }

  it("stops at an unapproved manual group, and resumes from it once approved", async () => {
    const waiting = await run({ approvals: new Set() });
    expect(waiting.waitingFor).toEqual({ id: "2", name: "release" });
    expect(waiting.ran).toEqual(["a:success"]);
    expect(waiting.output).toEqual(["a"]);
    const resumed = await run({ approvals: new Set(["2"]), resumeFrom: "2" });
    expect(resumed.waitingFor).toBeUndefined();
    expect(resumed.ran).toEqual(["one:success", "two:success", "b:success"]);
    expect(resumed.output).toEqual(["one", "two", "b"]);
  });

  it("without approvals (slipway run) skips the manual group's steps with the reason and runs the rest", async () => {
    const local = await run({});
    expect(local.status).toBe("success");
    expect(local.waitingFor).toBeUndefined();
    expect(local.ran).toEqual(["a:success", "one:skipped", "two:skipped", "b:success"]);
    expect(local.steps.find((s) => s.name === "one")!.reason).toBe("manual group: needs an approval");
  });
});

describe("approvals on PostgreSQL", () => {
  it("a build waits, is approved and resumes through the same queries as on SQLite", async () => {
    const server = await startPostgres();
    const hp = await startHarness({ databaseUrl: server.url });
    try {
      await createUser(hp, "olivia@example.com");
      const browser = await signIn(hp, "olivia@example.com");
      const projectId = (await browser.post("/api/v1/projects", { name: "pg" })).json().id as string;
      const { id: runnerId } = await hp.services.runners.register("pg runner");
      const build = await hp.services.builds.create(projectId, { branch: "main", trigger: "api" });
      const first = (await hp.services.builds.lease(runnerId, 0))!;
      expect(first).toMatchObject({ jobId: build.jobs[0]!.id, resumeFrom: null, approvedSteps: [] });
      const commit = "a".repeat(40);
      await hp.services.builds.finish(runnerId, first.jobId, { status: "waiting-for-approval", step: { id: "2", name: "deploy" }, commit });
      expect((await browser.get(`/api/v1/builds/${build.id}`)).json()).toMatchObject({ status: "waiting-for-approval", commit, waitingFor: { id: "2", name: "deploy" }, finishedAt: null });
      expect((await browser.post(`/api/v1/builds/${build.id}/approvals`, { step: "2" })).statusCode).toBe(200);
      expect((await browser.post(`/api/v1/builds/${build.id}/approvals`, { step: "2" })).statusCode).toBe(409);
      const resumed = (await hp.services.builds.lease(runnerId, 0))!;
      expect(resumed).toMatchObject({ buildId: build.id, resumeFrom: "2", approvedSteps: ["2"], commit });
      await hp.services.builds.finish(runnerId, resumed.jobId, { status: "success", reason: null });
      const done = (await browser.get(`/api/v1/builds/${build.id}`)).json() as Build;
      expect(done).toMatchObject({ status: "success", approvals: [{ step: "2", approvedBy: "olivia" }] });
      expect(done.jobs.map((j) => j.status)).toEqual(["success", "success"]);
    } finally {
      await hp.close();
      await server.stop();
    }
  });
});
