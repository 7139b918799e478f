import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import { Client, createUser, outbox, signIn, startHarness, totpCode, type Harness } from "./helpers/harness.js";
import { browse, connectAccount } from "./helpers/scm-connect.js";
import { GitHubSim } from "./helpers/scm-sim/github.js";

// Connecting GitHub accounts, linking repositories and posting statuses through Slipway's own API,
// against the GitHub simulator over real TLS. The server listens on loopback so that the
// simulator's webhooks arrive as real HTTP requests.

const SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
let sim: GitHubSim;
let h: Harness;
let dir: string;
let base: string;
let owner: Client;
let orgId: string;

async function newProject(name: string): Promise<string> {
  const res = await owner.post("/api/v1/projects", { name, organization: orgId });
  expect(res.statusCode).toBe(201);
  return res.json().id as string;
}

/** The mails to `to` saying a GitHub account was connected, once the background sending is done. */
async function connectedMails(to: string): Promise<string[]> {
  await sleep(200);
  return outbox(h).filter((m) => m.includes(`To: ${to}`) && /Subject: Slipway: GitHub account \S+ connected/.test(m));
}

/** The message Slipway put in the fragment of its redirect back to the account page. */
async function scmError(res: { headers: Record<string, unknown> }): Promise<string | null> {
  const id = new URLSearchParams(String(res.headers.location).split("#")[1]).get("scm-error");
  return id === null ? null : messageOf(id);
}

/** The text behind a callback's `#scm-error=<id>`, as the page reads it. */
async function messageOf(id: string): Promise<string> {
  const res = await new Client(h.app).get(`/api/v1/scm/errors/${id}`);
  expect(res.statusCode).toBe(200);
  return res.json().message as string;
}

async function settled() {
  await h.services.scm.statuses.settled();
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "slipway-scm-"));
  sim = await GitHubSim.start({ callbackUrl: "http://127.0.0.1/api/v1/scm/github/callback", extraRepos: 150 });
  const caFile = path.join(dir, "github-ca.pem");
  writeFileSync(caFile, sim.ca);
  h = await startHarness({ githubClientId: sim.clientId, githubClientSecret: sim.clientSecret, githubUrl: sim.url, githubCaFile: caFile });
  await h.app.listen({ host: "127.0.0.1", port: 0 });
  base = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  h.services.setPublicUrl(base);
  await createUser(h, "owner@example.com");
  owner = await signIn(h, "owner@example.com");
  orgId = (await owner.post("/api/v1/orgs", { name: "acme" })).json().id;
});

afterAll(async () => {
  await h?.close();
  await sim?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("connecting a GitHub account", () => {
  it("lists GitHub among the providers with the scopes it asks for", async () => {
    const res = await new Client(h.app).get("/api/v1/scm/providers");
    expect(res.statusCode).toBe(200);
    expect(res.json().providers).toEqual([{ name: "github", label: "GitHub", scopes: ["repo", "user:email"] }]);
  });

  it("P15: connects through OAuth with PKCE and keeps only the basic profile and the grant; no token is ever returned", async () => {
    expect(await connectAccount(owner, "github", sim.ca)).toBe("/account#connected=github");
    const res = await owner.get("/api/v1/me/connections");
    expect(res.statusCode).toBe(200);
    expect(res.json().connections).toEqual([{ provider: "github", login: "octocat", name: "The Octocat", email: "octocat@example.com", avatarUrl: `${sim.url}/avatars/u/583231`, scopes: ["repo", "user:email"], connectedAt: expect.any(String), problem: null }]);
    expect(res.body).not.toMatch(/gho_/);
    // The token is sealed in the database: its plaintext is nowhere in the data dir.
    const row = await h.services.store.db.selectFrom("scm_connections").selectAll().executeTakeFirstOrThrow();
    expect(row.access_token).toMatch(/^sb1:/);
    const issued = sim.lastToken();
    for (const file of readdirSync(h.dataDir, { recursive: true, encoding: "utf8" }).filter((f) => statSync(path.join(h.dataDir, f)).isFile())) {
      const content = readFileSync(path.join(h.dataDir, file));
      expect(content.includes(issued), file).toBe(false);
    }
  });

  it("P15: tells the user by mail that a new account can now sign them in; reconnecting the same account does not", async () => {
    const mails = await connectedMails("owner@example.com");
    expect(mails).toHaveLength(1);
    expect(mails[0]).toMatch(/The GitHub account octocat was connected[\s\S]*If this was not you, disconnect it at http:\/\/127\.0\.0\.1:\d+\/account/);
    expect(await connectAccount(owner, "github", sim.ca)).toBe("/account#connected=github");
    expect(await connectedMails("owner@example.com")).toHaveLength(1);
  });

  it("refuses a callback whose state another account started, or that was used already", async () => {
    await createUser(h, "mallory@example.com");
    const mallory = await signIn(h, "mallory@example.com");
    const start = await owner.post("/api/v1/me/connections/github");
    const back = await browse(new URL(start.json().authorizeUrl), sim.ca);
    // Another account presenting the owner's code and state (a planted link) gets nothing attached.
    const planted = await mallory.get(`${back.pathname}${back.search}`);
    expect(planted.statusCode).toBe(303);
    expect(await scmError(planted)).toMatch(/started by another account/);
    expect((await mallory.get("/api/v1/me/connections")).json().connections).toEqual([]);
    // The state was spent by that attempt: the owner's own replay of it is refused too.
    const replay = await owner.get(`${back.pathname}${back.search}`);
    expect(await scmError(replay)).toMatch(/start again/);
    // Control: a fresh round trip works for the owner.
    expect(await connectAccount(owner, "github", sim.ca)).toBe("/account#connected=github");
  });

  it("says what to do when the user declines at GitHub, and connects nothing without the session that began it", async () => {
    const start = await owner.post("/api/v1/me/connections/github");
    const state = new URL(start.json().authorizeUrl).searchParams.get("state")!;
    const declined = await owner.get(`/api/v1/scm/github/callback?error=access_denied&state=${state}`);
    expect(declined.statusCode).toBe(303);
    expect(await scmError(declined)).toMatch(/did not grant access \(access_denied\).*allow Slipway/);
    // The redirect carries an id, not the text: a crafted link cannot put words on the page.
    expect(String(declined.headers.location)).toMatch(/^\/account#scm-error=[A-Za-z0-9_-]{40,}$/);
    expect((await new Client(h.app).get("/api/v1/scm/errors/made-up")).statusCode).toBe(404);
    // Anything but an OAuth error code is not repeated on the page.
    const state2 = new URL((await owner.post("/api/v1/me/connections/github")).json().authorizeUrl).searchParams.get("state")!;
    const odd = await owner.get(`/api/v1/scm/github/callback?error=${encodeURIComponent("call +1 555 0100 now")}&state=${state2}`);
    expect(await scmError(odd)).toMatch(/did not grant access \(no code\)/);
    // Without the session that began it, the callback connects nothing.
    const fresh = new URL((await owner.post("/api/v1/me/connections/github")).json().authorizeUrl).searchParams.get("state")!;
    const anonymous = await new Client(h.app).get(`/api/v1/scm/github/callback?code=x&state=${fresh}`);
    expect(anonymous.statusCode).toBe(303);
    expect(await scmError(anonymous)).toMatch(/started by another account/);
  });

  it("lists the account's repositories a page at a time", async () => {
    const first = await owner.get("/api/v1/me/connections/github/repositories");
    expect(first.statusCode).toBe(200);
    expect(first.json().repos).toHaveLength(100);
    expect(first.json().nextPage).toBe(2);
    const second = (await owner.get("/api/v1/me/connections/github/repositories?page=2")).json();
    expect(second.nextPage).toBeUndefined();
    const names = [...first.json().repos, ...second.repos].map((r: { fullName: string }) => r.fullName);
    expect(names).toContain("acme/private-app");
    expect(names).not.toContain("acme/secret");
    expect(new Set(names).size).toBe(names.length);
  });

  it("tells whether the user can read a repository, asking GitHub once a minute at most", async () => {
    const userId = (await owner.get("/api/v1/me")).json().user.id as string;
    const asked = () => sim.requests.filter((r) => r.path.startsWith("/api/v3/repos/")).length;
    const before = asked();
    expect(await h.services.scm.connections.canRead(userId, "github", "acme/private-app")).toBe(true);
    expect(await h.services.scm.connections.canRead(userId, "github", "acme/secret")).toBe(false);
    expect(asked()).toBe(before + 2);
    // Answered from the cache: GitHub is not asked again.
    expect(await h.services.scm.connections.canRead(userId, "github", "acme/private-app")).toBe(true);
    expect(await h.services.scm.connections.canRead(userId, "github", "acme/secret")).toBe(false);
    expect(asked()).toBe(before + 2);
    // No connection, no access.
    expect(await h.services.scm.connections.canRead(userId, "gitlab", "acme/private-app")).toBe(false);
  });

  it("answers an unconfigured provider and an unconnected account with what to do", async () => {
    const gitlab = await owner.post("/api/v1/me/connections/gitlab");
    expect(gitlab.statusCode).toBe(404);
    expect(gitlab.json().error.message).toMatch(/SLIPWAY_GITLAB_CLIENT_ID/);
    await createUser(h, "newcomer@example.com");
    const newcomer = await signIn(h, "newcomer@example.com");
    const res = await newcomer.get("/api/v1/me/connections/github/repositories");
    expect(res.statusCode).toBe(404);
    expect(res.json().error).toMatchObject({ code: "not_connected", message: expect.stringMatching(/connect it from your account page/) });
  });
});

describe("P07: linking a repository", () => {
  let projectId: string;

  it("P07: installs the project's deploy key read-only and a webhook with a fresh secret, and points the project at the repository", async () => {
    projectId = await newProject("linked");
    const key = (await owner.get(`/api/v1/projects/${projectId}/deploy-key`)).json();
    const res = await owner.put(`/api/v1/projects/${projectId}/repository-link`, { provider: "github", repo: "acme/private-app" });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ provider: "github", repo: "acme/private-app", linkedAt: expect.any(String), problem: null });
    const keys = sim.keys.get("acme/private-app")!;
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ key: key.publicKey, read_only: true, title: "Slipway: linked" });
    const hooks = sim.hooks.get("acme/private-app")!;
    expect(hooks).toHaveLength(1);
    expect(hooks[0]!.config).toMatchObject({ url: `${base}/api/v1/hooks/${projectId}/github`, content_type: "json", insecure_ssl: "0" });
    expect(hooks[0]!.events.sort()).toEqual(["pull_request", "push"]);
    // The hook's secret is the project's webhook secret now, stored sealed.
    expect(hooks[0]!.config.secret).toBe(await h.services.webhooks.reveal(projectId));
    expect((await owner.get(`/api/v1/projects/${projectId}`)).json().repositoryUrl).toBe(`git@${new URL(sim.url).host}:acme/private-app.git`);
    expect((await owner.put(`/api/v1/projects/${projectId}/repository-link`, { provider: "github", repo: "acme/private-app" })).statusCode).toBe(409);
  });

  it("a push the simulator delivers starts a build, and its statuses go back to the commit with a link to the build", async () => {
    const [delivery] = await sim.deliver("acme/private-app", "push", sim.pushPayload("acme/private-app", { ref: "refs/heads/main", after: SHA }));
    expect(delivery!.status).toBe(202);
    const buildId = JSON.parse(delivery!.body).buildId as string;
    await settled();
    const runner = await h.services.runners.register("status runner");
    const job = await h.services.builds.lease(runner.id, 0);
    expect(job?.buildId).toBe(buildId);
    await settled();
    await h.services.builds.finish(runner.id, job!.jobId, { status: "success", reason: null });
    await settled();
    const posted = sim.statuses.filter((s) => s.sha === SHA);
    expect(posted.map((s) => [s.state, s.description])).toEqual([
      ["pending", "Queued"],
      ["pending", "Running"],
      ["success", expect.stringMatching(/^Passed in \d+ s$/)],
    ]);
    for (const s of posted) expect(s).toMatchObject({ repo: "acme/private-app", context: "slipway", target_url: `${base}/builds/${buildId}` });
  });

  it("a failing provider never holds a build up: the status is retried, and what still fails shows on the project", async () => {
    sim.misbehave({ method: "POST", path: /\/statuses\// }, { status: 401 }, 1);
    const [delivery] = await sim.deliver("acme/private-app", "push", sim.pushPayload("acme/private-app", { ref: "refs/heads/main", after: SHA.replace(/^6/, "7") }));
    expect(delivery!.status).toBe(202);
    await settled();
    const link = (await owner.get(`/api/v1/projects/${projectId}/repository-link`)).json();
    expect(link.problem).toMatch(/^Build statuses cannot be posted: GitHub rejected the token .*reconnect your GitHub account/);
    const connection = (await owner.get("/api/v1/me/connections")).json().connections[0];
    expect(connection.problem).toMatch(/reconnect your GitHub account/);
    // The build itself was created and queued regardless.
    const build = (await owner.get(`/api/v1/builds/${JSON.parse(delivery!.body).buildId}`)).json();
    expect(build.status).toBe("queued");
    // The next successful call clears both notes.
    await h.services.builds.cancel({ principal: { userId: "x", email: "x", isAdmin: false, twoFactor: false, via: "session", scopes: "all" }, ip: null }, build.id);
    await settled();
    expect((await owner.get(`/api/v1/projects/${projectId}/repository-link`)).json().problem).toBeNull();
    expect((await owner.get("/api/v1/me/connections")).json().connections[0].problem).toBeNull();
    expect(sim.statuses.at(-1)).toMatchObject({ state: "error", description: "Canceled" });
  });

  it("P07: unlinking removes the key and the hook at GitHub and replaces the key pair and secret here", async () => {
    const before = (await owner.get(`/api/v1/projects/${projectId}/deploy-key`)).json();
    const res = await owner.delete(`/api/v1/projects/${projectId}/repository-link`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ leftovers: [] });
    expect(sim.keys.get("acme/private-app")).toEqual([]);
    expect(sim.hooks.get("acme/private-app")).toEqual([]);
    const after = (await owner.get(`/api/v1/projects/${projectId}/deploy-key`)).json();
    expect(after.fingerprint).not.toBe(before.fingerprint);
    expect((await owner.get(`/api/v1/projects/${projectId}`)).json().repositoryUrl).toBeNull();
    expect((await owner.get(`/api/v1/projects/${projectId}/repository-link`)).statusCode).toBe(404);
  });

  it("P07: what GitHub would not remove is named, with why, never silently left", async () => {
    const id = await newProject("leftover");
    expect((await owner.put(`/api/v1/projects/${id}/repository-link`, { provider: "github", repo: "octocat/Hello-World" })).statusCode).toBe(200);
    sim.misbehave({ method: "DELETE", path: /\/keys\// }, { status: 403 }, 1);
    const res = await owner.delete(`/api/v1/projects/${id}/repository-link`);
    expect(res.statusCode).toBe(200);
    const [left] = res.json().leftovers;
    expect(res.json().leftovers).toHaveLength(1);
    expect(left).toMatchObject({ what: "deploy key", repo: "octocat/Hello-World", provider: "github", reason: expect.stringMatching(/admin rights/) });
    expect(sim.keys.get("octocat/hello-world")!.map((k) => String(k.id))).toEqual([left.id]);
    expect(sim.hooks.get("octocat/hello-world")).toEqual([]);
  });

  it("P07: deleting a linked project removes its key and hook at GitHub first", async () => {
    const id = await newProject("doomed");
    expect((await owner.put(`/api/v1/projects/${id}/repository-link`, { provider: "github", repo: "octocat/repo-001" })).statusCode).toBe(200);
    expect(sim.keys.get("octocat/repo-001")).toHaveLength(1);
    const res = await owner.delete(`/api/v1/projects/${id}`);
    expect(res.statusCode).toBe(204);
    expect(sim.keys.get("octocat/repo-001")).toEqual([]);
    expect(sim.hooks.get("octocat/repo-001")).toEqual([]);
  });

  it("P07: deleting a linked project whose hook GitHub keeps names it, and the audit log keeps that after the project is gone", async () => {
    const id = await newProject("doomed-too");
    expect((await owner.put(`/api/v1/projects/${id}/repository-link`, { provider: "github", repo: "octocat/repo-004" })).statusCode).toBe(200);
    sim.misbehave({ method: "DELETE", path: /\/hooks\// }, { status: 403 }, 1);
    const res = await owner.delete(`/api/v1/projects/${id}`);
    expect(res.statusCode).toBe(200);
    expect(res.json().leftovers).toEqual([expect.objectContaining({ what: "webhook", repo: "octocat/repo-004" })]);
    expect((await owner.get(`/api/v1/projects/${id}`)).statusCode).toBe(404);
    const audit = await h.services.store.db.selectFrom("audit_log").select("details").where("action", "=", "project.repository_unlinked").where("target", "=", id).executeTakeFirstOrThrow();
    expect(JSON.parse(audit.details)).toMatchObject({ repo: "octocat/repo-004", projectDeleted: true, leftovers: [{ what: "webhook" }] });
  });

  it("takes the key back off when the webhook cannot be added, and says why", async () => {
    const id = await newProject("half");
    sim.misbehave({ method: "POST", path: /\/hooks$/ }, { status: 422 }, 1);
    const res = await owner.put(`/api/v1/projects/${id}/repository-link`, { provider: "github", repo: "octocat/repo-002" });
    expect(res.statusCode).toBe(422);
    expect(res.json().error).toMatchObject({ code: "provider_invalid", message: expect.stringMatching(/Hook already exists/) });
    expect(sim.keys.get("octocat/repo-002")).toEqual([]);
    expect((await owner.get(`/api/v1/projects/${id}/repository-link`)).statusCode).toBe(404);
  });

  it("maps GitHub's failures to answers that say what failed and what to do", async () => {
    const id = await newProject("errors");
    const link = () => owner.put(`/api/v1/projects/${id}/repository-link`, { provider: "github", repo: "octocat/repo-003" });
    const cases = [
      [{ status: 403 }, 403, "provider_forbidden", /admin rights/],
      [{ status: 404 }, 404, "provider_not_found", /check the name/],
      [{ status: 503 }, 502, "provider_unavailable", /try again later/],
      [{ rateLimit: "secondary", status: 429, retryAfterSeconds: 30 }, 429, "provider_rate_limited", /try again in 30 s/],
      [{ raw: "<html>oops</html>" }, 502, "provider_malformed", /not JSON/],
    ] as const;
    for (const [what, status, code, message] of cases) {
      sim.misbehave({ method: "GET", path: "/repos/octocat/repo-003" }, what, 1);
      const res = await link();
      expect(res.statusCode, code).toBe(status);
      expect(res.json().error).toMatchObject({ code, message: expect.stringMatching(message) });
      if (status === 429) expect(res.headers["retry-after"]).toBe("30");
    }
    expect((await owner.put(`/api/v1/projects/${id}/repository-link`, { provider: "github", repo: "acme/secret" })).statusCode).toBe(404);
    expect(sim.keys.get("octocat/repo-003") ?? []).toEqual([]);
    // Control: without a fault the same call links.
    expect((await link()).statusCode).toBe(200);
  });

  it("P11: only the project's owners and admins may link and unlink", async () => {
    await createUser(h, "member@example.com");
    const { token } = await h.services.orgs.invite({ principal: { userId: (await owner.get("/api/v1/me")).json().user.id, email: "owner@example.com", isAdmin: false, twoFactor: false, via: "session", scopes: "all" }, ip: null }, orgId, "member@example.com", "member");
    const member = await signIn(h, "member@example.com");
    expect((await member.post("/api/v1/invitations/accept", { token })).statusCode).toBe(200);
    const id = await newProject("guarded");
    expect((await member.put(`/api/v1/projects/${id}/repository-link`, { provider: "github", repo: "octocat/repo-004" })).statusCode).toBe(403);
    expect((await member.get(`/api/v1/projects/${id}/repository-link`)).statusCode).toBe(404);
    expect(sim.keys.get("octocat/repo-004") ?? []).toEqual([]);
  });
});

describe("P07, P15: tokens", () => {
  it("refreshes an expiring token before use, with rotation, and the spent refresh token is refused", async () => {
    const expiring = await GitHubSim.start({ callbackUrl: "http://127.0.0.1/api/v1/scm/github/callback", expiringTokens: true });
    const caFile = path.join(dir, "expiring-ca.pem");
    writeFileSync(caFile, expiring.ca);
    const h2 = await startHarness({ githubClientId: expiring.clientId, githubClientSecret: expiring.clientSecret, githubUrl: expiring.url, githubCaFile: caFile });
    try {
      await createUser(h2, "ada@example.com");
      const ada = await signIn(h2, "ada@example.com");
      await connectAccount(ada, "github", expiring.ca);
      const db = h2.services.store.db;
      const first = await db.selectFrom("scm_connections").selectAll().executeTakeFirstOrThrow();
      expect(first.expires_at).not.toBeNull();
      await db.updateTable("scm_connections").set({ expires_at: new Date(Date.now() - 1000).toISOString() }).execute();
      // Two calls at once share one refresh; a second would present the refresh token the first spent.
      const [a, b] = await Promise.all([ada.get("/api/v1/me/connections/github/repositories"), ada.get("/api/v1/me/connections/github/repositories")]);
      expect([a.statusCode, b.statusCode]).toEqual([200, 200]);
      const second = await db.selectFrom("scm_connections").selectAll().executeTakeFirstOrThrow();
      expect(second.refresh_token).not.toBe(first.refresh_token);
      expect(Date.parse(second.expires_at!)).toBeGreaterThan(Date.now());
      expect(expiring.requests.filter((r) => r.path === "/login/oauth/access_token")).toHaveLength(2);
    } finally {
      await h2.close();
      await expiring.close();
    }
  });

  it("P07, P15: disconnecting revokes the grant at GitHub and deletes the tokens here; a revoked token fails the next call with what to do", async () => {
    await createUser(h, "leaver@example.com");
    const leaver = await signIn(h, "leaver@example.com");
    // The simulator has one GitHub user, so the owner lets go of it first.
    expect((await owner.delete("/api/v1/me/connections/github")).json()).toEqual({ revoked: true, manual: null });
    // A project linked through that connection: GitHub dropped the deploy key the revoked grant made,
    // and the project page says statuses stop until the repository is linked again.
    const linked = await h.services.store.db.selectFrom("repository_links").select("project_id").where("repo", "=", "octocat/repo-003").executeTakeFirstOrThrow();
    expect(sim.keys.get("octocat/repo-003")).toEqual([]);
    await sim.deliver("octocat/repo-003", "push", sim.pushPayload("octocat/repo-003", { ref: "refs/heads/main", after: SHA }));
    await settled();
    expect((await owner.get(`/api/v1/projects/${linked.project_id}/repository-link`)).json().problem).toMatch(/the account that linked this repository was disconnected.*link it again/);
    await connectAccount(leaver, "github", sim.ca);
    const res = await leaver.delete("/api/v1/me/connections/github");
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ revoked: true, manual: null });
    expect((await leaver.get("/api/v1/me/connections")).json().connections).toEqual([]);
    expect(await h.services.store.db.selectFrom("scm_connections").select("id").execute()).toEqual([]);

    // A token revoked at GitHub itself: the next call says so, and the account page shows it.
    await connectAccount(owner, "github", sim.ca);
    const issued = sim.lastToken();
    sim.invalidateToken(issued);
    const list = await owner.get("/api/v1/me/connections/github/repositories");
    expect(list.statusCode).toBe(409);
    expect(list.json().error).toMatchObject({ code: "provider_unauthorized", message: expect.stringMatching(/rejected the token.*reconnect your GitHub account/) });
    expect((await owner.get("/api/v1/me/connections")).json().connections[0].problem).toMatch(/reconnect your GitHub account/);
    // Reconnecting clears it.
    await connectAccount(owner, "github", sim.ca);
    expect((await owner.get("/api/v1/me/connections")).json().connections[0].problem).toBeNull();
  });

  it("a revoked token shows on the project page as what to do, and unlinking then names what is left at GitHub", async () => {
    const id = await newProject("revoked");
    expect((await owner.put(`/api/v1/projects/${id}/repository-link`, { provider: "github", repo: "octocat/repo-005" })).statusCode).toBe(200);
    const issued = sim.lastToken();
    // GitHub stops accepting the token (expired, or an organisation's policy); what it made stays there.
    sim.invalidateToken(issued);
    await sim.deliver("octocat/repo-005", "push", sim.pushPayload("octocat/repo-005", { ref: "refs/heads/main", after: SHA }));
    await settled();
    const link = (await owner.get(`/api/v1/projects/${id}/repository-link`)).json();
    expect(link.problem).toMatch(/GitHub rejected the token.*reconnect your GitHub account/);
    const res = await owner.delete(`/api/v1/projects/${id}/repository-link`);
    expect(res.json().leftovers.map((l: { what: string }) => l.what).sort()).toEqual(["deploy key", "webhook"]);
    for (const l of res.json().leftovers) expect(l.reason).toMatch(/reconnect your GitHub account/);
  });
});

describe("P15: signing in with GitHub", () => {
  const STATE = "slipway_scm_state";

  /** A browser with no session starts a sign-in and comes back from GitHub's page. */
  async function startSignIn(): Promise<{ back: URL; cookie: string }> {
    const res = await new Client(h.app).post("/api/v1/session/scm/github");
    expect(res.statusCode).toBe(200);
    const state = res.cookies.find((c) => c.name === STATE)!;
    expect(state).toMatchObject({ httpOnly: true, sameSite: "Lax", path: "/api/v1/scm" });
    return { back: await browse(new URL(res.json().authorizeUrl), sim.ca), cookie: `${STATE}=${state.value}` };
  }
  const callback = (back: URL, cookie?: string) => h.app.inject({ method: "GET", url: `${back.pathname}${back.search}`, headers: cookie ? { cookie } : {} });
  const sessionCookie = (res: { cookies: Array<{ name: string; value: string }> }) => res.cookies.find((c) => c.name === "slipway_session");
  const signInError = (res: { headers: Record<string, unknown> }) => (String(res.headers.location).startsWith("/sign-in#") ? scmError(res) : null);

  it("P15: signs in the Slipway account connected to that GitHub account, with a new session", async () => {
    const tokens = () => h.services.store.db.selectFrom("scm_connections").select(["access_token", "scopes"]).where("login", "=", "octocat").executeTakeFirstOrThrow();
    const stored = await tokens();
    // One wrong password from this address, which a sign-in through GitHub must not take back.
    expect((await new Client(h.app).post("/api/v1/session", { email: "nobody@example.com", password: "wrong password" })).statusCode).toBe(401);
    const attempts = () => h.services.store.db.selectFrom("auth_throttle").select("failures").where("key", "=", "ip:127.0.0.1").executeTakeFirstOrThrow();
    const before = await attempts();

    const { back, cookie } = await startSignIn();
    // Signing in asks only to read who the account is.
    expect(sim.requestedScopes.at(-1)).toEqual(["read:user"]);
    const res = await callback(back, cookie);
    expect(res.statusCode).toBe(303);
    expect(res.headers.location).toBe("/");
    const session = sessionCookie(res)!;
    const me = await h.app.inject({ method: "GET", url: "/api/v1/session", headers: { cookie: `slipway_session=${session.value}` } });
    expect(me.json().user.email).toBe("owner@example.com");
    const audit = await h.services.store.db.selectFrom("audit_log").select("details").where("action", "=", "auth.signin").orderBy("seq", "desc").executeTakeFirstOrThrow();
    expect(JSON.parse(audit.details)).toEqual({ via: "github" });
    // The sign-in's narrow token was dropped: the connection keeps its own.
    expect(await tokens()).toEqual(stored);
    expect(await attempts()).toEqual(before);
  });

  it("P15: a callback in a browser that did not start the sign-in signs nobody in (login CSRF)", async () => {
    const { back, cookie } = await startSignIn();
    const res = await callback(back, `${STATE}=${"x".repeat(43)}`);
    expect(res.statusCode).toBe(303);
    expect(await signInError(res)).toMatch(/started by another account: start again/);
    expect(sessionCookie(res)).toBeUndefined();
    // The state was spent by that try: the right browser cannot use it now either.
    expect(sessionCookie(await callback(back, cookie))).toBeUndefined();
  });

  it("P15: accounts are never matched by email: a GitHub account connected to nobody signs nobody in", async () => {
    expect((await owner.delete("/api/v1/me/connections/github")).statusCode).toBe(200);
    const { back, cookie } = await startSignIn();
    const res = await callback(back, cookie);
    expect(await signInError(res)).toMatch(/no Slipway account is connected to the GitHub account octocat: sign in with your email and password, then connect GitHub/);
    expect(sessionCookie(res)).toBeUndefined();
  });

  it("P15: an account with two-factor gets a one-try ticket, and a session only with its code", async () => {
    const user = await createUser(h, "careful@example.com");
    const careful = await signIn(h, "careful@example.com");
    await connectAccount(careful, "github", sim.ca);
    const ctx = { principal: { userId: user.id, email: user.email, isAdmin: false, twoFactor: false, via: "session" as const, scopes: "all" as const }, ip: null };
    const { otpauthUri } = await h.services.twoFactor.begin(ctx);
    await h.services.twoFactor.confirm(ctx, totpCode(otpauthUri));
    const ticketOf = async () => {
      const { back, cookie } = await startSignIn();
      const res = await callback(back, cookie);
      expect(sessionCookie(res)).toBeUndefined();
      const m = /^\/sign-in#scm-ticket=([A-Za-z0-9_-]+)$/.exec(String(res.headers.location));
      expect(m, String(res.headers.location)).not.toBeNull();
      return m![1]!;
    };
    const finish = (ticket: string, totp: string) => new Client(h.app).post("/api/v1/session/scm", { ticket, totp });

    const first = await ticketOf();
    const wrong = await finish(first, "000000");
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.code).toBe("invalid_code");
    // Spent by the wrong try: guessing codes needs a new GitHub round trip each time.
    const again = await finish(first, totpCode(otpauthUri, 1));
    expect(again.json().error.code).toBe("ticket_invalid");

    const ok = await finish(await ticketOf(), totpCode(otpauthUri, 1));
    expect(ok.statusCode).toBe(200);
    expect(ok.json().user.email).toBe("careful@example.com");
    expect(sessionCookie(ok)).toBeDefined();
  });
});
