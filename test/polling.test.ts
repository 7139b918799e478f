import path from "node:path";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseLsRemote } from "../src/runner/git-checkout.js";
import { MAX_POLLED_REFS } from "../src/scm/poll-report.js";
import { startGitLab, type GitLab } from "./helpers/git-lab.js";
import { Client, createUser, signIn, startHarness, type Harness } from "./helpers/harness.js";
import type { PollRunInput, PollRunOutput } from "./helpers/poll-runner.js";
import { LAB, runModuleInNetns } from "./helpers/sandbox-network.js";
import { SAMPLE_HOST_KEY } from "./helpers/web.js";

// P08: a git server that cannot call Slipway (behind a firewall) is polled by a runner, which
// lists its refs with `git ls-remote` in a sandbox; the server never connects to it.

const isRoot = process.getuid?.() === 0;
const here = path.dirname(fileURLToPath(import.meta.url));
const A = "a".repeat(40);
const B = "b".repeat(40);
const C = "c".repeat(40);

describe("reading git ls-remote", () => {
  it("keeps heads and tags, and an annotated tag's commit rather than the tag object", () => {
    const out = [`${A}\tHEAD`, `${A}\trefs/heads/main`, `${B}\trefs/tags/v1`, `${C}\trefs/tags/v1^{}`, `${B}\trefs/pull/1/head`, `${C}\trefs/tags/v2^{}`, `${A}\trefs/tags/v2`, "garbage", `${A}\trefs/heads/with space`, `${A}\trefs/heads/${"x".repeat(300)}`, `${A}\trefs/heads/a..b`].join("\n");
    expect(parseLsRemote(out)).toEqual({ "refs/heads/main": A, "refs/tags/v1": C, "refs/tags/v2": C });
  });
});

describe("P08: repository polls through the runner API", () => {
  let h: Harness;
  let owner: Client;
  let runner: Client;
  let other: Client;
  let project: string;

  const lease = (as = runner) => as.post("/api/v1/runner/polls/lease", {});
  const report = (body: unknown, as = runner, id = project) => as.post(`/api/v1/runner/polls/${id}/result`, body);
  const due = () => h.services.store.db.updateTable("repository_polls").set({ next_at: new Date(0).toISOString() }).execute();
  const builds = async () => (await owner.get(`/api/v1/projects/${project}/builds`)).json().builds as Array<{ branch: string | null; tag: string | null; commit: string; trigger: string }>;

  beforeAll(async () => {
    h = await startHarness();
    await createUser(h, "owner@example.com");
    owner = await signIn(h, "owner@example.com");
    project = (await owner.post("/api/v1/projects", { name: "polled", repositoryUrl: "ssh://git@git.example.com/app.git" })).json().id;
    runner = new Client(h.app, { bearer: (await h.services.runners.register("poller")).token });
    other = new Client(h.app, { bearer: (await h.services.runners.register("other")).token });
  });
  afterAll(() => h?.close());

  it("P08: polling is set per project within bounds, shown on the project and audited", async () => {
    for (const bad of [59, 86_401, 1.5, "60"]) expect((await owner.patch(`/api/v1/projects/${project}`, { pollIntervalSeconds: bad })).statusCode, String(bad)).toBe(400);
    const res = await owner.patch(`/api/v1/projects/${project}`, { pollIntervalSeconds: 300 });
    expect(res.statusCode).toBe(200);
    expect(res.json().polling).toEqual({ intervalSeconds: 300, polledAt: null, problem: null });
    expect((await owner.get("/api/v1/projects")).json().projects[0].polling).toEqual({ intervalSeconds: 300, polledAt: null, problem: null });
    const audit = await h.services.store.db.selectFrom("audit_log").select("details").where("action", "=", "project.polling_changed").execute();
    expect(audit.map((a) => JSON.parse(a.details))).toEqual([{ intervalSeconds: 300 }]);
  });

  it("P08: a due poll goes to one runner, with the deploy key for an SSH URL; no other runner may report it", async () => {
    const res = await lease();
    expect(res.statusCode).toBe(200);
    const { privateKey } = await h.services.deployKeys.revealDeployKey(project);
    expect(res.json().poll).toEqual({ projectId: project, repositoryUrl: "ssh://git@git.example.com/app.git", egressAllowlist: null, credentials: { privateKey, knownHosts: null } });
    // Not due again until its interval has passed, and held meanwhile.
    expect((await lease(other)).statusCode).toBe(204);
    const stolen = await report({ refs: { "refs/heads/main": A } }, other);
    expect(stolen.statusCode).toBe(409);
    expect(stolen.json().error.code).toBe("lease_lost");
    // A user's session is no runner.
    expect((await owner.post("/api/v1/runner/polls/lease", {})).statusCode).toBe(401);
  });

  it("P08: the first poll learns the refs and pins the host key it saw; later ones build what moved, once", async () => {
    const first = await report({ refs: { "refs/heads/main": A, "refs/heads/dev": A }, knownHosts: `git.example.com ${SAMPLE_HOST_KEY}\n` });
    expect(first.json()).toEqual({ builds: 0 });
    expect(await builds()).toEqual([]);
    const seen = (await owner.get(`/api/v1/projects/${project}`)).json();
    expect(seen.knownHosts).toBe(`git.example.com ${SAMPLE_HOST_KEY}\n`);
    expect(seen.polling.polledAt).not.toBeNull();
    // The report ended the lease: the same runner cannot report twice.
    expect((await report({ refs: {} })).statusCode).toBe(409);

    await due();
    expect((await lease()).json().poll.credentials.knownHosts).toBe(`git.example.com ${SAMPLE_HOST_KEY}\n`);
    const second = await report({ refs: { "refs/heads/main": B, "refs/heads/dev": A, "refs/tags/v1": C } });
    expect(second.json()).toEqual({ builds: 2 });
    const made = (await builds()).map((b) => ({ branch: b.branch, tag: b.tag, commit: b.commit, trigger: b.trigger }));
    expect(made).toEqual(
      expect.arrayContaining([
        { branch: "main", tag: null, commit: B, trigger: "poll" },
        { branch: null, tag: "v1", commit: C, trigger: "poll" },
      ]),
    );
    expect(made).toHaveLength(2);

    await due();
    await lease();
    expect((await report({ refs: { "refs/heads/main": B, "refs/tags/v1": C } })).json()).toEqual({ builds: 0 });
  });

  it("P01, P08: the host key pinned on first use shows its fingerprint until a person confirms exactly it", async () => {
    const seen = (await owner.get(`/api/v1/projects/${project}`)).json();
    const fingerprint = createHash("sha256").update(Buffer.from(SAMPLE_HOST_KEY.split(" ")[1]!, "base64")).digest("base64").replace(/=+$/, "");
    expect(seen.hostKeyFingerprints).toEqual([`git.example.com ssh-ed25519 SHA256:${fingerprint}`]);
    expect(seen.knownHostsConfirmed).toBe(false);
    const wrong = await owner.patch(`/api/v1/projects/${project}`, { confirmHostKeys: [`SHA256:${"A".repeat(43)}`] });
    expect(wrong.statusCode).toBe(409);
    expect(wrong.json().error.message).toMatch(/not the pinned keys'.*do not confirm/);
    expect((await owner.get(`/api/v1/projects/${project}`)).json().knownHostsConfirmed).toBe(false);
    expect((await owner.patch(`/api/v1/projects/${project}`, { confirmHostKeys: [`SHA256:${fingerprint}`], knownHosts: null })).statusCode).toBe(400);
    const confirmed = await owner.patch(`/api/v1/projects/${project}`, { confirmHostKeys: [`SHA256:${fingerprint}`] });
    expect(confirmed.statusCode).toBe(200);
    expect(confirmed.json().knownHostsConfirmed).toBe(true);
    const audit = await h.services.store.db.selectFrom("audit_log").select("details").where("action", "=", "project.known_hosts_confirmed").execute();
    expect(audit).toHaveLength(1);
  });

  it("P08: a failed poll shows what git said on the project, and the next success clears it", async () => {
    await due();
    await lease();
    expect((await report({ error: "could not list the refs of ssh://git@git.example.com/app.git: Permission denied (publickey)" })).statusCode).toBe(200);
    expect((await owner.get(`/api/v1/projects/${project}`)).json().polling.problem).toMatch(/Permission denied/);
    await due();
    await lease();
    await report({ refs: { "refs/heads/main": B } });
    expect((await owner.get(`/api/v1/projects/${project}`)).json().polling.problem).toBeNull();
  });

  it("P08: pointing the project at another repository forgets the old one's refs, and a poll of the old one may not report", async () => {
    await due();
    await lease();
    expect((await owner.patch(`/api/v1/projects/${project}`, { repositoryUrl: "ssh://git@git.example.com/other.git" })).statusCode).toBe(200);
    const stale = await report({ refs: { "refs/heads/main": A } });
    expect(stale.statusCode).toBe(409);
    expect(stale.json().error.code).toBe("lease_lost");
    expect((await lease()).json().poll.repositoryUrl).toBe("ssh://git@git.example.com/other.git");
    expect((await report({ refs: { "refs/heads/main": C, "refs/heads/other": C } })).json()).toEqual({ builds: 0 });
  });

  it("refuses malformed reports and host keys of another host, without changing anything", async () => {
    await due();
    await lease();
    for (const body of [{ refs: { "refs/heads/main": "not-a-commit" } }, { refs: { "refs/pull/1/head": A } }, { refs: {}, error: "both" }, { error: "" }, {}]) {
      const res = await report(body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
    }
    const stranger = await report({ refs: { "refs/heads/main": C }, knownHosts: `evil.example.com ${SAMPLE_HOST_KEY}\n` });
    expect(stranger.statusCode).toBe(400);
    expect(stranger.json().error.code).toBe("wrong_host");
    expect((await builds()).filter((b) => b.commit === C && b.branch === "main")).toEqual([]);
  });

  it("turning polling off ends it; a project without a repository URL is never leased", async () => {
    expect((await owner.patch(`/api/v1/projects/${project}`, { pollIntervalSeconds: null })).json().polling).toBeNull();
    const bare = (await owner.post("/api/v1/projects", { name: "no-url" })).json().id;
    expect((await owner.patch(`/api/v1/projects/${bare}`, { pollIntervalSeconds: 60 })).statusCode).toBe(200);
    await due();
    expect((await lease()).statusCode).toBe(204);
  });
});

describe.runIf(isRoot)("P08: a runner polls a plain git server over SSH and builds the commit pushed to it", () => {
  let git: GitLab;
  let out: PollRunOutput;

  beforeAll(async () => {
    git = await startGitLab("image: host\nsteps:\n  - name: show\n    command: echo \"version=$(cat version)\"\n", "poll");
    const input: PollRunInput = { repositoryUrl: git.urlOf(git.repos.app), authorizedKeys: git.authorizedKeys, bare: git.repos.app, ownerUid: git.user.uid };
    out = await runModuleInNetns<PollRunInput, PollRunOutput>(git.lab.runner, path.join(here, "helpers", "poll-runner.ts"), input, { timeoutMs: 240_000 });
  }, 300_000);

  afterAll(() => git?.close());

  it("P08: the first poll only learns the refs, and pins the git host's key it saw", () => {
    expect(out.tooShort).toBe(400);
    expect(out.firstPoll.builds).toBe(0);
    expect(out.firstPoll.polling).toMatchObject({ intervalSeconds: 60, problem: null });
    expect(out.firstPoll.knownHosts).toMatch(new RegExp(`^${LAB.allowed.replace(/\./g, "\\.")} ssh-ed25519 `, "m"));
  });

  it("P08: a commit pushed to the git server is built by the next poll, cloned over SSH in a sandbox", () => {
    expect(out.build).toMatchObject({ status: "success", commit: out.pushed, branch: "main", trigger: "poll" });
    expect(out.build.log).toContain("version=3");
  });

  it("P08: a poll that finds nothing new builds nothing", () => {
    expect(out.quietPoll).toEqual({ builds: 1, polledAgain: true });
  });

  it("P08: a repository with more heads and tags than a poll takes says so on the project, and builds nothing", () => {
    expect(out.tooManyRefs.problem).toMatch(new RegExp(`more than ${MAX_POLLED_REFS} heads and tags.*signed webhook`));
    expect(out.tooManyRefs.builds).toBe(1);
  });
});
