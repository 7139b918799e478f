import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateEd25519KeyPair } from "../src/crypto/ssh-keys.js";
import { GITEA_SCOPES, GiteaProvider, type GiteaOptions } from "../src/scm/gitea.js";
import { codeChallenge, newOAuthSecret, type ScmErrorKind, type ScmProvider } from "../src/scm/provider.js";
import { readDelivery, signedWith } from "../src/scm/webhook-deliveries.js";
import { readEvent } from "../src/scm/webhook-events.js";
import { browse } from "./helpers/scm-connect.js";
import { expectHookFailure, expectNarrowSignIn, expectProfileTimeout, expectRefusedUnsent, failure, receiving, signInWith, simOptions } from "./helpers/scm-provider-tests.js";
import { GiteaSim, giteaSignature } from "./helpers/scm-sim/gitea.js";

// The Gitea/Forgejo client against the Gitea simulator: real HTTPS on 127.0.0.1 with a
// certificate the client trusts only through its `ca` option. The simulator is written from the
// Gitea and Forgejo docs apart from the client, so the two check each other.

const SHA = "bffeb74224043ba2feb48d137756c8a9331c449a";
const STATUS = { state: "success", targetUrl: "https://slipway.example/builds/1", description: "Build 1 passed", context: "slipway" } as const;
const SCOPES = [...GITEA_SCOPES];

let sim: GiteaSim;
let gitea: GiteaProvider;
const providerFor = (s: GiteaSim, over: Partial<GiteaOptions> = {}) => new GiteaProvider({ ...simOptions(s), ...over });
const provider = (over: Partial<GiteaOptions> = {}) => providerFor(sim, over);
const signIn = (p = gitea, s = sim) => signInWith(p, s.ca);

beforeAll(async () => {
  // 116 extra repositories + 4 visible fixed ones = 120: three pages of 50.
  sim = await GiteaSim.start({ extraRepos: 116 });
  gitea = provider();
});
afterEach(() => sim.calm());
afterAll(() => sim.close());

describe("Gitea sign-in (OAuth2 authorization code with PKCE)", () => {
  it("completes the round trip, with the documented parameters and an expiring token pair", async () => {
    const state = newOAuthSecret();
    const verifier = newOAuthSecret();
    const url = gitea.authorizeUrl(state, verifier, "connect");
    expect(`${url.origin}${url.pathname}`).toBe(`${sim.url}/login/oauth/authorize`);
    expect(Object.fromEntries(url.searchParams)).toEqual({ client_id: sim.clientId, redirect_uri: sim.callbackUrl, response_type: "code", scope: "read:user write:repository", state, code_challenge: codeChallenge(verifier), code_challenge_method: "S256" });

    const back = await browse(url, sim.ca);
    expect(back.searchParams.get("state")).toBe(state);
    const code = back.searchParams.get("code")!;
    const tokens = await gitea.exchangeCode(code, verifier);
    expect(sim.tokenIsValid(tokens.accessToken)).toBe(true);
    expect(tokens.scopes).toEqual(SCOPES);
    expect(tokens.refreshToken).toBeTruthy();
    // Gitea's access tokens live an hour.
    expect(tokens.expiresAt!.getTime()).toBeGreaterThan(Date.now() + 3_500_000);
    expect(tokens.expiresAt!.getTime()).toBeLessThanOrEqual(Date.now() + 3_600_000);
    const exchange = sim.requestsTo("/login/oauth/access_token").at(-1)!;
    expect(Object.fromEntries(new URLSearchParams(exchange.body))).toEqual({ client_id: sim.clientId, client_secret: sim.clientSecret, grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: sim.callbackUrl });
    await gitea.currentUser(tokens.accessToken);
    const apiCall = sim.requestsTo("/api/v1/user").at(-1)!.headers;
    expect([apiCall.accept, apiCall.authorization, apiCall["user-agent"]]).toEqual(["application/json", `Bearer ${tokens.accessToken}`, "Slipway"]);

    // A code works once.
    const replay = await failure(gitea.exchangeCode(code, verifier));
    expect(replay.kind).toBe("invalid");
    expect(replay.message).toMatch(/Gitea said: client is not authorized.*start the sign-in again/);
  });

  it("fails when the code verifier does not belong to the code (PKCE is checked)", async () => {
    const back = await browse(gitea.authorizeUrl("s", newOAuthSecret(), "connect"), sim.ca);
    const err = await failure(gitea.exchangeCode(back.searchParams.get("code")!, newOAuthSecret()));
    expect(err.kind).toBe("invalid");
    expect(err.message).toMatch(/failed PKCE code challenge.*start the sign-in again/);
  });

  it("says the operator must fix the OAuth application when its secret is wrong", async () => {
    const verifier = newOAuthSecret();
    const back = await browse(gitea.authorizeUrl("s", verifier, "connect"), sim.ca);
    const err = await failure(provider({ clientSecret: "wrong" }).exchangeCode(back.searchParams.get("code")!, verifier));
    expect(err.kind).toBe("invalid");
    expect(err.message).toMatch(/invalid client secret.*operator must correct the client id, secret or redirect URI/);
    await expect(gitea.exchangeCode(back.searchParams.get("code")!, verifier)).resolves.toMatchObject({ scopes: SCOPES }); // control: the code was not spent
  });

  it("refuses a configuration it cannot use safely, with the setting named", () => {
    expect(() => provider({ baseUrl: "http://127.0.0.1:1" })).toThrow(/baseUrl/);
    expect(() => new GiteaProvider({ clientId: "id", clientSecret: "s", redirectUri: "https://slipway.example/cb" } as GiteaOptions)).toThrow(/baseUrl/);
    expect(() => provider({ clientSecret: "" })).toThrow(/clientSecret/);
  });

  it("refreshes with rotation: each refresh gives a new pair, and a spent refresh token is refused", async () => {
    const { tokens: first } = await signIn();
    const second = await gitea.refresh(first.refreshToken!);
    expect(second.accessToken).not.toBe(first.accessToken);
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(second.scopes).toEqual(SCOPES);
    expect(Object.fromEntries(new URLSearchParams(sim.requestsTo("/login/oauth/access_token").at(-1)!.body))).toEqual({ client_id: sim.clientId, client_secret: sim.clientSecret, grant_type: "refresh_token", refresh_token: first.refreshToken });
    await expect(gitea.currentUser(second.accessToken)).resolves.toMatchObject({ login: "alice" });
    const spent = await failure(gitea.refresh(first.refreshToken!));
    expect(spent.kind).toBe("unauthorized");
    expect(spent.message).toMatch(/token was already used.*reconnect your Gitea account/);
    await expect(gitea.refresh(second.refreshToken!)).resolves.toMatchObject({ scopes: SCOPES }); // control: the newest one works
  });

  it("verifies TLS for real: without the server's CA the call fails and says to configure it", async () => {
    const token = sim.issueToken(SCOPES);
    const err = await failure(provider({ ca: undefined }).currentUser(token));
    expect(err.kind).toBe("unavailable");
    expect(err.message).toMatch(/certificate is not trusted.*configure the CA/);
    await expect(gitea.currentUser(token)).resolves.toMatchObject({ login: "alice" }); // control
  });

  it("works with a server under a sub-path (ROOT_URL with a path), e.g. Forgejo behind a proxy", async () => {
    const forgejo = await GiteaSim.start({ flavour: "forgejo", subPath: "/forgejo" });
    try {
      const p = providerFor(forgejo, { baseUrl: `${forgejo.url}/` });
      const { tokens } = await signIn(p, forgejo);
      expect((await p.listRepositories(tokens.accessToken, 1)).repos.map((r) => r.fullName)).toContain("acme/private-app");
      expect(forgejo.requests.map((r) => r.path)).toEqual(["/forgejo/login/oauth/authorize", "/forgejo/login/oauth/access_token", "/forgejo/api/v1/user/repos"]);
    } finally {
      await forgejo.close();
    }
  });
});

describe("Gitea account and repositories", () => {
  it("reads the profile with the email Gitea shows its own user", async () => {
    const { tokens } = await signIn();
    expect(await gitea.currentUser(tokens.accessToken)).toEqual({ id: "1", login: "alice", name: "Alice Liddell", email: "alice@example.com", avatarUrl: `${sim.url}/avatars/1` });
    sim.user.fullName = "";
    try {
      expect((await gitea.currentUser(tokens.accessToken)).name).toBeNull();
    } finally {
      sim.user.fullName = "Alice Liddell";
    }
  });

  it("lists repositories across three pages by the Link header", async () => {
    const token = sim.issueToken(SCOPES);
    const pages = [await gitea.listRepositories(token, 1)];
    while (pages.at(-1)!.nextPage) pages.push(await gitea.listRepositories(token, pages.at(-1)!.nextPage!));
    expect(pages.map((p) => p.repos.length)).toEqual([50, 50, 20]);
    expect(pages.map((p) => p.nextPage)).toEqual([2, 3, undefined]);
    const all = pages.flatMap((p) => p.repos);
    expect(new Set(all.map((r) => r.fullName)).size).toBe(120);
    expect(all.find((r) => r.fullName === "acme/private-app")).toEqual({ id: "12", fullName: "acme/private-app", sshUrl: "git@127.0.0.1:acme/private-app.git", cloneUrl: `${sim.url}/acme/private-app.git`, private: true, defaultBranch: "trunk" });
    expect(all.some((r) => r.fullName === "acme/secret")).toBe(false);
    expect(sim.requestsTo("/api/v1/user/repos").every((r) => r.query.get("limit") === "50")).toBe(true);
  });

  it("tells who can read what: visible repositories yes, hidden or missing ones no", async () => {
    const token = sim.issueToken(SCOPES);
    expect(await gitea.canRead(token, "acme/private-app")).toBe(true);
    expect(await gitea.canRead(token, "acme/read-only")).toBe(true);
    expect(await gitea.canRead(token, "gitea/tea")).toBe(true); // public
    expect(await gitea.canRead(token, "acme/secret")).toBe(false);
    expect(await gitea.canRead(token, "acme/no-such-repo")).toBe(false);
    sim.misbehave({ path: "/repos/acme/private-app" }, { status: 403 });
    expect(await gitea.canRead(token, "acme/private-app")).toBe(false);
    // A dead token is an error to act on, not a "no".
    expect((await failure(gitea.canRead("not-a-token", "acme/private-app"))).kind).toBe("unauthorized");
  });
});

describe("Gitea deploy keys, webhooks and statuses", () => {
  it("adds a read-only deploy key and removes it", async () => {
    const token = sim.issueToken(SCOPES);
    const { publicKey } = generateEd25519KeyPair("slipway-project-7");
    const { id } = await gitea.addDeployKey(token, "acme/private-app", "Slipway (project 7)", publicKey);
    // Gitea's read_only defaults to false, so this shows the client asked for read-only.
    expect(sim.keys.get("acme/private-app")).toEqual([{ id: Number(id), title: "Slipway (project 7)", key: publicKey, read_only: true }]);
    await gitea.removeDeployKey(token, "acme/private-app", id);
    expect(sim.keys.get("acme/private-app")).toEqual([]);
    const again = await failure(gitea.removeDeployKey(token, "acme/private-app", id));
    expect(again.kind).toBe("not_found");
    expect(again.message).toMatch(new RegExp(`removing deploy key ${id} from acme/private-app`));
  });

  it("adds an active webhook (type gitea, JSON, secret, push + pull_request) and removes it", async () => {
    const token = sim.issueToken(SCOPES);
    const { id } = await gitea.addWebhook(token, "acme/private-app", "https://127.0.0.1:8443/api/v1/hooks/gitea/7", "whsec_7", ["push", "pull_request"]);
    // `active` defaults to false in Gitea's API: a hook that was not asked to be active never fires.
    expect(sim.hooks.get("acme/private-app")).toEqual([{ id: Number(id), type: "gitea", active: true, events: ["push", "pull_request"], config: { url: "https://127.0.0.1:8443/api/v1/hooks/gitea/7", content_type: "json", secret: "whsec_7" } }]);
    await gitea.removeWebhook(token, "acme/private-app", id);
    expect(sim.hooks.get("acme/private-app")).toEqual([]);
  });

  it("refuses deploy keys and hooks on a repository the account cannot administer", async () => {
    const token = sim.issueToken(SCOPES);
    const err = await failure(gitea.addDeployKey(token, "acme/writer", "t", generateEd25519KeyPair("k").publicKey));
    expect(err.kind).toBe("forbidden");
    expect(err.message).toMatch(/admin write of a repository.*ask a repository admin/);
    expect(sim.keys.get("acme/writer")).toBeUndefined();
    expect((await failure(gitea.addWebhook(token, "acme/read-only", "https://127.0.0.1:1/h", "s", ["push"]))).kind).toBe("forbidden");
  });

  it("posts commit statuses in Gitea's state names with their link and context", async () => {
    const token = sim.issueToken(SCOPES);
    const before = sim.statuses.length;
    for (const state of ["pending", "success", "failure", "error"] as const) await gitea.setCommitStatus(token, "acme/writer", SHA, { ...STATUS, state });
    expect(sim.statuses.slice(before)).toEqual(["pending", "success", "failure", "error"].map((state) => ({ repo: "acme/writer", sha: SHA, state, target_url: STATUS.targetUrl, description: STATUS.description, context: "slipway" })));
    expect((await failure(gitea.setCommitStatus(token, "acme/read-only", SHA, STATUS))).kind).toBe("forbidden");
  });

  it("retries a status with backoff through 503s, then it is posted once", async () => {
    const token = sim.issueToken(SCOPES);
    const path = `/api/v1/repos/acme/private-app/statuses/${SHA}`;
    const [sent, posted] = [sim.requestsTo(path).length, sim.statuses.length];
    sim.misbehave({ path: `/repos/acme/private-app/statuses/${SHA}` }, { status: 503 }, 2);
    await gitea.setCommitStatus(token, "acme/private-app", SHA, STATUS);
    expect(sim.requestsTo(path).length - sent).toBe(3);
    expect(sim.statuses.length - posted).toBe(1);
  });

  it("honours Retry-After before retrying a status", async () => {
    const token = sim.issueToken(SCOPES);
    const path = `/api/v1/repos/acme/private-app/statuses/${SHA}`;
    const sent = sim.requestsTo(path).length;
    // The backoff is 5 ms, so only Retry-After explains a wait of a second or more.
    sim.misbehave({ path: `/repos/acme/private-app/statuses/${SHA}` }, { status: 429, retryAfterSeconds: 1 });
    await gitea.setCommitStatus(token, "acme/private-app", SHA, STATUS);
    const [first, second] = sim.requestsTo(path).slice(sent);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1000);
  });

  it("gives up on statuses after the bounded attempts, or at once when asked to wait too long", async () => {
    const token = sim.issueToken(SCOPES);
    const path = `/api/v1/repos/acme/private-app/statuses/${SHA}`;
    let sent = sim.requestsTo(path).length;
    sim.misbehave({ path: `/repos/acme/private-app/statuses/${SHA}` }, { status: 500 }, 10);
    expect((await failure(gitea.setCommitStatus(token, "acme/private-app", SHA, STATUS))).kind).toBe("unavailable");
    expect(sim.requestsTo(path).length - sent).toBe(3);
    sim.calm();
    sent = sim.requestsTo(path).length;
    sim.misbehave({ path: `/repos/acme/private-app/statuses/${SHA}` }, { status: 429, retryAfterSeconds: 3600 }, 10);
    const limited = await failure(gitea.setCommitStatus(token, "acme/private-app", SHA, STATUS));
    expect(limited.kind).toBe("rate_limited");
    expect(limited.retryAfterMs).toBe(3_600_000);
    expect(sim.requestsTo(path).length - sent).toBe(1);
  });

  it("does not retry anything else", async () => {
    const token = sim.issueToken(SCOPES);
    const sent = sim.requestsTo("/api/v1/repos/acme/private-app/hooks").length;
    sim.misbehave({ path: "/repos/acme/private-app/hooks" }, { status: 503 });
    expect((await failure(gitea.addWebhook(token, "acme/private-app", "https://127.0.0.1:1/h", "s", ["push"]))).kind).toBe("unavailable");
    expect(sim.requestsTo("/api/v1/repos/acme/private-app/hooks").length - sent).toBe(1);
    expect(sim.hooks.get("acme/private-app") ?? []).toEqual([]);
  });
});

describe("Gitea failures", () => {
  it("P07, P15: a revoked token makes the next call fail as unauthorized with what to do", async () => {
    const { tokens } = await signIn();
    await expect(gitea.currentUser(tokens.accessToken)).resolves.toMatchObject({ login: "alice" });
    // Gitea's API cannot revoke a grant, so the provider offers no revoke for Slipway to call;
    // the user revokes it in Gitea's settings.
    expect((gitea as ScmProvider).revoke).toBeUndefined();
    sim.revokeGrant(tokens.accessToken);
    expect(sim.tokenIsValid(tokens.accessToken)).toBe(false);
    const err = await failure(gitea.currentUser(tokens.accessToken));
    expect(err.kind).toBe("unauthorized");
    expect(err.message).toMatch(/^Gitea rejected the token while reading your profile \(Gitea said: user does not exist.*\): .*reconnect your Gitea account\.$/);
    const refresh = await failure(gitea.refresh(tokens.refreshToken!));
    expect(refresh.kind).toBe("unauthorized");
    expect(refresh.message).toMatch(/grant does not exist.*reconnect your Gitea account/);
  });

  it.each<[string, Parameters<GiteaSim["misbehave"]>[1], ScmErrorKind, RegExp]>([
    ["401", { status: 401 }, "unauthorized", /user does not exist.*reconnect/],
    ["403", { status: 403 }, "forbidden", /admin write of a repository.*ask a repository admin/],
    ["404", { status: 404 }, "not_found", /The target couldn't be found.*check the name/],
    ["422", { status: 422 }, "invalid", /A hook with the same URL already exists.*correct it/],
    ["500", { status: 500 }, "unavailable", /HTTP 500.*try again later/],
    ["502 with an HTML body", { status: 502 }, "unavailable", /HTTP 502.*try again later/],
    ["429 with Retry-After from a proxy", { status: 429, retryAfterSeconds: 30 }, "rate_limited", /rate limit.*try again in 30 s/],
    ["non-JSON", { raw: '{"id": 12' }, "malformed", /not JSON/],
    ["JSON of the wrong shape", { raw: '{"id": "twelve"}', status: 201 }, "malformed", /documented shape \(at id\)/],
    ["an answer beyond the size limit", { oversized: 200_000 }, "malformed", /larger than 65536 bytes/],
  ])("maps %s to a kind with a message that says what to do", async (_name, what, kind, message) => {
    const call = { provider: provider({ maxResponseBytes: 65_536 }), token: sim.issueToken(SCOPES), repo: "acme/private-app", url: "https://127.0.0.1:2/h" };
    const err = await expectHookFailure(call, () => sim.misbehave({ path: "/repos/acme/private-app/hooks" }, what), kind, message);
    if (kind === "rate_limited") expect(err.retryAfterMs).toBe(30_000);
  });

  it("times out a call that gets no answer", async () => {
    await expectProfileTimeout(provider, sim.issueToken(SCOPES), sim);
  });

  it("refuses bad input before sending anything", async () => {
    const token = sim.issueToken(SCOPES);
    await expectRefusedUnsent(sim, () => [
      gitea.canRead(token, "not a repo"),
      gitea.canRead(token, "acme/.."),
      gitea.canRead(token, "../acme/app"),
      gitea.addDeployKey(token, "acme/../../user", "t", "ssh-ed25519 AAAA"),
      gitea.removeDeployKey(token, "acme/private-app", "1/../../hooks/2"),
      gitea.removeWebhook(token, "acme/private-app", "abc"),
      gitea.setCommitStatus(token, "acme/private-app", "zzz", STATUS),
      gitea.setCommitStatus(token, "acme/private-app", SHA, { ...STATUS, state: "warning" as "error" }),
      gitea.setCommitStatus(token, "acme/private-app", SHA, { ...STATUS, targetUrl: "javascript:alert(1)" }),
      gitea.listRepositories(token, 0),
      gitea.currentUser("x\r\nX-Injected: 1"),
    ]);
  });
});

describe("P15: scopes", () => {
  it("P15: signing in to Slipway asks only to read the profile, and that token cannot touch a repository", async () => {
    expect([...gitea.signInScopes]).toEqual(["read:user"]);
    const user = await expectNarrowSignIn(gitea, sim, ["read:user"], "acme/private-app");
    expect(user.id).toBe((await gitea.currentUser((await signIn()).tokens.accessToken)).id);
  });

  it("P15: connecting requests exactly the documented narrow scopes, and each of them is needed", async () => {
    expect([...gitea.scopes]).toEqual(["read:user", "write:repository"]);
    const { tokens } = await signIn();
    expect(sim.requestedScopes.at(-1)).toEqual(["read:user", "write:repository"]);
    // With exactly these, everything Slipway does works.
    const token = tokens.accessToken;
    expect((await gitea.currentUser(token)).email).toBe("alice@example.com");
    expect((await gitea.listRepositories(token, 1)).repos.length).toBe(50);
    const { publicKey } = generateEd25519KeyPair("p15");
    const key = await gitea.addDeployKey(token, "acme/private-app", "p15", publicKey);
    const hook = await gitea.addWebhook(token, "acme/private-app", "https://127.0.0.1:3/h", "s", ["push"]);
    await gitea.setCommitStatus(token, "acme/private-app", SHA, STATUS);
    expect(await gitea.canRead(token, "acme/private-app")).toBe(true);
    await gitea.removeDeployKey(token, "acme/private-app", key.id);
    await gitea.removeWebhook(token, "acme/private-app", hook.id);

    // Without `read:user`: no profile and no repository list.
    const noUser = sim.issueToken(["write:repository"]);
    expect((await failure(gitea.currentUser(noUser))).message).toMatch(/required=\[read:user\]/);
    expect((await failure(gitea.listRepositories(noUser, 1))).kind).toBe("forbidden");
    // With `read:repository` instead of `write:repository`: reading works, but no key, hook or status.
    const readOnly = sim.issueToken(["read:user", "read:repository"]);
    expect(await gitea.canRead(readOnly, "acme/private-app")).toBe(true);
    expect((await failure(gitea.addDeployKey(readOnly, "acme/private-app", "p15", publicKey))).message).toMatch(/required=\[write:repository\]/);
    expect((await failure(gitea.addWebhook(readOnly, "acme/private-app", "https://127.0.0.1:3/h", "s", ["push"]))).kind).toBe("forbidden");
    expect((await failure(gitea.setCommitStatus(readOnly, "acme/private-app", SHA, STATUS))).kind).toBe("forbidden");
    // Without any repository scope: not even the list.
    expect((await failure(gitea.listRepositories(sim.issueToken(["read:user"]), 1))).kind).toBe("forbidden");
    expect(sim.keys.get("acme/private-app")).toEqual([]);
  });
});

describe("the simulator's webhooks", () => {
  it("are signed as Gitea documents and pass Slipway's check, and are read into the right events", async () => {
    // RFC 4231 test case 2: HMAC-SHA256 with key "Jefe", in Gitea's bare hex form.
    expect(giteaSignature("Jefe", "what do ya want for nothing?")).toBe("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    await receiving(async (url, received) => {
      const token = sim.issueToken(SCOPES);
      const hook = await gitea.addWebhook(token, "acme/private-app", url, "whsec_sim", ["push", "pull_request"]);
      const push = await sim.deliver("acme/private-app", "push", sim.pushPayload("acme/private-app", { ref: "refs/heads/trunk", after: SHA }));
      const pr = await sim.deliver("acme/private-app", "pull_request_sync", sim.pullRequestPayload("acme/private-app", { action: "synchronized", number: 7, branch: "feature", sha: SHA, headRepo: "mallory/private-app" }));
      expect([...push, ...pr].map((r) => r.status)).toEqual([202, 202]);
      const [pushed, synced] = received as [(typeof received)[0], (typeof received)[0]];
      expect(readDelivery("gitea", pushed.headers)).toEqual({ id: push[0]!.deliveryId, event: "push" });
      expect(signedWith("gitea", pushed.headers, pushed.body, "whsec_sim")).toBe(true);
      expect(signedWith("gitea", pushed.headers, pushed.body, "another")).toBe(false);
      expect(readEvent("gitea", "push", JSON.parse(pushed.body.toString()))).toEqual({ kind: "build", pushes: [{ ref: "refs/heads/trunk", commit: SHA, message: "Webhooks Yay!", author: { name: "Alice Liddell", email: "alice@example.com" } }] });
      expect(readDelivery("gitea", synced.headers)).toEqual({ id: pr[0]!.deliveryId, event: "pull_request" });
      expect(signedWith("gitea", synced.headers, synced.body, "whsec_sim")).toBe(true);
      expect(readEvent("gitea", "pull_request", JSON.parse(synced.body.toString()))).toEqual({ kind: "build", pushes: [{ ref: "refs/heads/feature", commit: SHA, message: "Add a feature", pullRequest: 7, fromFork: true }] });
      expect(await sim.deliver("acme/private-app", "issues", {})).toEqual([]); // not subscribed
      await gitea.removeWebhook(token, "acme/private-app", hook.id);
    });
    await expect(sim.sendWebhook("http://192.0.2.1/hook", "push", {}, "s")).rejects.toThrow(/loopback/);
  });

  it("from Forgejo carry X-Forgejo-* headers, which Slipway reads first", async () => {
    const forgejo = await GiteaSim.start({ flavour: "forgejo" });
    try {
      await receiving(async (url, received) => {
        const p = providerFor(forgejo);
        const token = forgejo.issueToken(SCOPES);
        await p.addWebhook(token, "alice/hello", url, "whsec_fj", ["push"]);
        const [result] = await forgejo.deliver("alice/hello", "push", forgejo.pushPayload("alice/hello", { ref: "refs/tags/v1.0.0", after: SHA }));
        const { headers, body } = received[0]!;
        expect([headers["x-forgejo-event"], headers["x-forgejo-delivery"], headers["x-forgejo-signature"]]).toEqual(["push", result!.deliveryId, giteaSignature("whsec_fj", body)]);
        expect(signedWith("gitea", headers, body, "whsec_fj")).toBe(true);
        expect(signedWith("gitea", { ...headers, "x-forgejo-signature": "0".repeat(64) }, body, "whsec_fj")).toBe(false);
        expect(readEvent("gitea", "push", JSON.parse(body.toString()))).toMatchObject({ kind: "build", pushes: [{ ref: "refs/tags/v1.0.0", commit: SHA }] });
      });
    } finally {
      await forgejo.close();
    }
  });
});
