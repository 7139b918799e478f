import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { browse } from "./helpers/scm-connect.js";
import { generateEd25519KeyPair } from "../src/crypto/ssh-keys.js";
import { GITHUB_SCOPES, GitHubProvider, type GitHubOptions } from "../src/scm/github.js";
import { codeChallenge, newOAuthSecret, type ScmErrorKind } from "../src/scm/provider.js";
import { readDelivery, signedWith } from "../src/scm/webhook-deliveries.js";
import { expectHookFailure, expectNarrowSignIn, expectProfileTimeout, expectRefusedUnsent, failure, receiving, signInWith, simOptions } from "./helpers/scm-provider-tests.js";
import { GitHubSim, signature256 } from "./helpers/scm-sim/github.js";

// The GitHub client against the GitHub simulator: real HTTPS on 127.0.0.1 with a certificate the
// client trusts only through its `ca` option. The simulator is written from GitHub's docs apart
// from the client, so the two check each other.

const SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const STATUS = { state: "success", targetUrl: "https://slipway.example/builds/1", description: "Build 1 passed", context: "slipway" } as const;

let sim: GitHubSim;
let github: GitHubProvider;
const provider = (over: Partial<GitHubOptions> = {}) => new GitHubProvider({ ...simOptions(sim), ...over });
const signIn = (p = github) => signInWith(p, sim.ca);

beforeAll(async () => {
  // 246 extra repositories + 3 visible fixed ones = 249: three pages of 100.
  sim = await GitHubSim.start({ extraRepos: 246 });
  github = provider();
});
afterEach(() => sim.calm());
afterAll(() => sim.close());

describe("GitHub sign-in (OAuth web flow with PKCE)", () => {
  it("completes the round trip against a GitHub Enterprise Server base URL", async () => {
    const state = newOAuthSecret();
    const verifier = newOAuthSecret();
    const url = github.authorizeUrl(state, verifier, "connect");
    expect(`${url.origin}${url.pathname}`).toBe(`${sim.url}/login/oauth/authorize`);
    expect(url.searchParams.get("code_challenge")).toBe(codeChallenge(verifier));
    expect(url.searchParams.get("code_challenge_method")).toBe("S256");
    expect(url.searchParams.get("redirect_uri")).toBe(sim.callbackUrl);
    expect(url.searchParams.get("client_id")).toBe(sim.clientId);

    const back = await browse(url, sim.ca);
    expect(back.searchParams.get("state")).toBe(state);
    const code = back.searchParams.get("code")!;
    const tokens = await github.exchangeCode(code, verifier);
    expect(sim.tokenIsValid(tokens.accessToken)).toBe(true);
    expect(tokens.scopes).toEqual(["repo", "user:email"]);
    expect(tokens.refreshToken).toBeUndefined(); // OAuth app tokens do not expire
    // The token endpoint was asked for JSON, with the verifier; the API calls carry GitHub's headers.
    expect(sim.requestsTo("/login/oauth/access_token").at(-1)!.headers.accept).toBe("application/json");
    await github.currentUser(tokens.accessToken);
    const apiCall = sim.requestsTo("/api/v3/user").at(-1)!.headers;
    expect([apiCall.accept, apiCall["x-github-api-version"], apiCall["user-agent"]]).toEqual(["application/vnd.github+json", "2022-11-28", "Slipway"]);

    // A code works once.
    const replay = await failure(github.exchangeCode(code, verifier));
    expect(replay.kind).toBe("invalid");
    expect(replay.message).toMatch(/start the sign-in again/);
  });

  it("fails when the code verifier does not belong to the code (PKCE is checked)", async () => {
    const state = newOAuthSecret();
    const back = await browse(github.authorizeUrl(state, newOAuthSecret(), "connect"), sim.ca);
    const err = await failure(github.exchangeCode(back.searchParams.get("code")!, newOAuthSecret()));
    expect(err.kind).toBe("invalid");
  });

  it("uses github.com's own addresses without a base URL", () => {
    const dotcom = new GitHubProvider({ clientId: "id", clientSecret: "secret", redirectUri: "https://slipway.example/cb" });
    expect(dotcom.authorizeUrl("s", newOAuthSecret(), "connect").toString()).toMatch(/^https:\/\/github\.com\/login\/oauth\/authorize\?/);
  });

  it("refuses a configuration it cannot use safely, with the setting named", () => {
    expect(() => provider({ baseUrl: "http://127.0.0.1:1" })).toThrow(/baseUrl/);
    expect(() => provider({ clientSecret: "" })).toThrow(/clientSecret/);
  });

  it("refreshes expiring tokens with rotation: a spent refresh token is refused", async () => {
    const expiring = await GitHubSim.start({ expiringTokens: true });
    try {
      const p = new GitHubProvider({ clientId: expiring.clientId, clientSecret: expiring.clientSecret, redirectUri: expiring.callbackUrl, baseUrl: expiring.url, ca: expiring.ca });
      const verifier = newOAuthSecret();
      const back = await browse(p.authorizeUrl("s", verifier, "connect"), expiring.ca);
      const first = await p.exchangeCode(back.searchParams.get("code")!, verifier);
      expect(first.refreshToken).toBeTruthy();
      expect(first.expiresAt!.getTime()).toBeGreaterThan(Date.now());
      const second = await p.refresh(first.refreshToken!);
      expect(second.accessToken).not.toBe(first.accessToken);
      expect(second.refreshToken).not.toBe(first.refreshToken);
      expect(expiring.tokenIsValid(second.accessToken)).toBe(true);
      const spent = await failure(p.refresh(first.refreshToken!));
      expect(spent.kind).toBe("unauthorized");
      expect(spent.message).toMatch(/reconnect your GitHub account/);
    } finally {
      await expiring.close();
    }
  });

  it("verifies TLS for real: without the server's CA the call fails and says to configure it", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    const err = await failure(provider({ ca: undefined }).currentUser(token));
    expect(err.kind).toBe("unavailable");
    expect(err.message).toMatch(/certificate is not trusted.*configure the CA/);
    await expect(github.currentUser(token)).resolves.toMatchObject({ login: "octocat" }); // control
  });
});

describe("GitHub account and repositories", () => {
  it("reads the profile, and the primary verified email from /user/emails when the profile shows none", async () => {
    const { tokens } = await signIn();
    expect(await github.currentUser(tokens.accessToken)).toEqual({ id: "583231", login: "octocat", name: "The Octocat", email: "octocat@example.com", avatarUrl: `${sim.url}/avatars/u/583231` });
    sim.user.publicEmail = "public@example.com";
    try {
      const before = sim.requestsTo("/api/v3/user/emails").length;
      expect((await github.currentUser(tokens.accessToken)).email).toBe("public@example.com");
      expect(sim.requestsTo("/api/v3/user/emails").length).toBe(before);
    } finally {
      sim.user.publicEmail = null;
    }
  });

  it("lists repositories across three pages by the Link header", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    const pages = [await github.listRepositories(token, 1)];
    while (pages.at(-1)!.nextPage) pages.push(await github.listRepositories(token, pages.at(-1)!.nextPage!));
    expect(pages.map((p) => p.repos.length)).toEqual([100, 100, 49]);
    expect(pages.map((p) => p.nextPage)).toEqual([2, 3, undefined]);
    const all = pages.flatMap((p) => p.repos);
    expect(new Set(all.map((r) => r.fullName)).size).toBe(249);
    expect(all.find((r) => r.fullName === "acme/private-app")).toEqual({ id: "1296270", fullName: "acme/private-app", sshUrl: `git@${new URL(sim.url).host}:acme/private-app.git`, cloneUrl: `${sim.url}/acme/private-app.git`, private: true, defaultBranch: "trunk" });
    expect(all.some((r) => r.fullName === "acme/secret")).toBe(false);
    expect(sim.requestsTo("/api/v3/user/repos").every((r) => r.query.get("per_page") === "100")).toBe(true);
  });

  it("tells who can read what: visible repositories yes, hidden or missing ones no", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    expect(await github.canRead(token, "acme/private-app")).toBe(true);
    expect(await github.canRead(token, "acme/read-only")).toBe(true);
    expect(await github.canRead(token, "torvalds/linux")).toBe(true); // public
    expect(await github.canRead(token, "acme/secret")).toBe(false);
    expect(await github.canRead(token, "acme/no-such-repo")).toBe(false);
    sim.misbehave({ path: "/repos/acme/private-app" }, { status: 403 });
    expect(await github.canRead(token, "acme/private-app")).toBe(false);
    // A dead token is an error to act on, not a "no".
    expect((await failure(github.canRead("gho_not_a_token", "acme/private-app"))).kind).toBe("unauthorized");
  });
});

describe("GitHub deploy keys, webhooks and statuses", () => {
  it("adds a read-only deploy key and removes it", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    const { publicKey } = generateEd25519KeyPair("slipway-project-7");
    const { id } = await github.addDeployKey(token, "acme/private-app", "Slipway (project 7)", publicKey);
    // GitHub's read_only defaults to false, so this shows the client asked for read-only.
    expect(sim.keys.get("acme/private-app")).toEqual([expect.objectContaining({ id: Number(id), title: "Slipway (project 7)", key: publicKey, read_only: true })]);
    await github.removeDeployKey(token, "acme/private-app", id);
    expect(sim.keys.get("acme/private-app")).toEqual([]);
    const again = await failure(github.removeDeployKey(token, "acme/private-app", id));
    expect(again.kind).toBe("not_found");
    expect(again.message).toMatch(new RegExp(`removing deploy key ${id} from acme/private-app`));
  });

  it("adds a webhook (JSON, secret, TLS verified, push + pull_request) and removes it", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    const { id } = await github.addWebhook(token, "acme/private-app", "https://127.0.0.1:8443/api/v1/hooks/github/7", "whsec_7", ["push", "pull_request"]);
    expect(sim.hooks.get("acme/private-app")).toEqual([{ id: Number(id), name: "web", active: true, events: ["push", "pull_request"], config: { url: "https://127.0.0.1:8443/api/v1/hooks/github/7", content_type: "json", secret: "whsec_7", insecure_ssl: "0" } }]);
    await github.removeWebhook(token, "acme/private-app", id);
    expect(sim.hooks.get("acme/private-app")).toEqual([]);
  });

  it("refuses deploy keys and hooks on a repository the account cannot administer", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    const err = await failure(github.addDeployKey(token, "acme/read-only", "t", generateEd25519KeyPair("k").publicKey));
    expect(err.kind).toBe("not_found");
    expect(sim.keys.get("acme/read-only")).toBeUndefined();
  });

  it("posts commit statuses with their link, context and a description cut to GitHub's 140 characters", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    const before = sim.statuses.length;
    await github.setCommitStatus(token, "acme/private-app", SHA, { ...STATUS, state: "pending", description: "x".repeat(300) });
    await github.setCommitStatus(token, "acme/private-app", SHA, STATUS);
    expect(sim.statuses.slice(before)).toEqual([
      { repo: "acme/private-app", sha: SHA, state: "pending", target_url: STATUS.targetUrl, description: "x".repeat(140), context: "slipway" },
      { repo: "acme/private-app", sha: SHA, state: "success", target_url: STATUS.targetUrl, description: STATUS.description, context: "slipway" },
    ]);
  });

  it("retries a status with backoff through 503s, then it is posted once", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    const path = `/api/v3/repos/acme/private-app/statuses/${SHA}`;
    const [sent, posted] = [sim.requestsTo(path).length, sim.statuses.length];
    sim.misbehave({ path: `/repos/acme/private-app/statuses/${SHA}` }, { status: 503 }, 2);
    await github.setCommitStatus(token, "acme/private-app", SHA, STATUS);
    expect(sim.requestsTo(path).length - sent).toBe(3);
    expect(sim.statuses.length - posted).toBe(1);
  });

  it("honours Retry-After before retrying a status", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    const path = `/api/v3/repos/acme/private-app/statuses/${SHA}`;
    const sent = sim.requestsTo(path).length;
    // The backoff is 5 ms, so only Retry-After explains a wait of a second or more.
    sim.misbehave({ path: `/repos/acme/private-app/statuses/${SHA}` }, { rateLimit: "secondary", status: 429, retryAfterSeconds: 1 });
    await github.setCommitStatus(token, "acme/private-app", SHA, STATUS);
    const [first, second] = sim.requestsTo(path).slice(sent);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1000);
  });

  it("gives up on statuses after the bounded attempts, or at once when asked to wait too long", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    const path = `/api/v3/repos/acme/private-app/statuses/${SHA}`;
    let sent = sim.requestsTo(path).length;
    sim.misbehave({ path: `/repos/acme/private-app/statuses/${SHA}` }, { status: 500 }, 10);
    expect((await failure(github.setCommitStatus(token, "acme/private-app", SHA, STATUS))).kind).toBe("unavailable");
    expect(sim.requestsTo(path).length - sent).toBe(3);
    sim.calm();
    sent = sim.requestsTo(path).length;
    sim.misbehave({ path: `/repos/acme/private-app/statuses/${SHA}` }, { rateLimit: "primary" }, 10);
    const limited = await failure(github.setCommitStatus(token, "acme/private-app", SHA, STATUS));
    expect(limited.kind).toBe("rate_limited");
    expect(limited.retryAfterMs).toBeGreaterThan(5_000);
    expect(sim.requestsTo(path).length - sent).toBe(1);
  });

  it("does not retry anything else", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    const sent = sim.requestsTo("/api/v3/repos/acme/private-app/hooks").length;
    sim.misbehave({ path: "/repos/acme/private-app/hooks" }, { status: 503 });
    expect((await failure(github.addWebhook(token, "acme/private-app", "https://127.0.0.1:1/h", "s", ["push"]))).kind).toBe("unavailable");
    expect(sim.requestsTo("/api/v3/repos/acme/private-app/hooks").length - sent).toBe(1);
    expect(sim.hooks.get("acme/private-app") ?? []).toEqual([]);
  });
});

describe("GitHub failures", () => {
  it("P07, P15: a revoked grant makes the next call fail as unauthorized with what to do", async () => {
    const { tokens } = await signIn();
    const token = tokens.accessToken;
    await expect(github.currentUser(token)).resolves.toMatchObject({ login: "octocat" });
    // Wrong app credentials revoke nothing, and say whose settings to fix.
    const wrongApp = await failure(provider({ clientSecret: "wrong" }).revoke(token));
    expect(wrongApp.message).toMatch(/Slipway's OAuth app/);
    expect(sim.tokenIsValid(token)).toBe(true);

    // GitHub deletes deploy keys made with an OAuth app token when it is revoked: disconnecting
    // the account that linked a project takes the project's key with it.
    await github.addDeployKey(token, "octocat/Hello-World", "linked", generateEd25519KeyPair("linked").publicKey);
    await github.revoke(token);
    expect(sim.tokenIsValid(token)).toBe(false);
    expect(sim.keys.get("octocat/hello-world")).toEqual([]);
    const err = await failure(github.currentUser(token));
    expect(err.kind).toBe("unauthorized");
    expect(err.message).toMatch(/GitHub rejected the token while reading your profile \(GitHub said: Bad credentials\): .*reconnect your GitHub account/);
    const twice = await failure(github.revoke(token));
    expect(twice.message).toMatch(/revoked already/);
  });

  it.each<[string, Parameters<GitHubSim["misbehave"]>[1], ScmErrorKind, RegExp]>([
    ["401", { status: 401 }, "unauthorized", /Bad credentials.*reconnect/],
    ["403", { status: 403 }, "forbidden", /admin rights.*ask a repository admin/],
    ["404", { status: 404 }, "not_found", /check the name/],
    ["422", { status: 422 }, "invalid", /Validation Failed; Hook already exists on this repository.*correct it/],
    ["500", { status: 500 }, "unavailable", /HTTP 500.*try again later/],
    ["502 with an HTML body", { status: 502 }, "unavailable", /HTTP 502.*try again later/],
    ["403 with x-ratelimit-remaining: 0", { rateLimit: "primary" }, "rate_limited", /rate limit.*try again in 3[56]\d\d s/],
    ["403 with Retry-After", { rateLimit: "secondary", status: 403, retryAfterSeconds: 30 }, "rate_limited", /try again in 30 s/],
    ["non-JSON", { raw: '{"id": 12' }, "malformed", /not JSON/],
    ["JSON of the wrong shape", { raw: '{"id": "twelve"}', status: 201 }, "malformed", /documented shape \(at id\)/],
    ["an answer beyond the size limit", { oversized: 200_000 }, "malformed", /larger than 65536 bytes/],
  ])("maps %s to a kind with a message that says what to do", async (_name, what, kind, message) => {
    const call = { provider: provider({ maxResponseBytes: 65_536 }), token: sim.issueToken([...GITHUB_SCOPES]), repo: "acme/private-app", url: "https://127.0.0.1:2/h" };
    await expectHookFailure(call, () => sim.misbehave({ path: "/repos/acme/private-app/hooks" }, what), kind, message);
  });

  it("times out a call that gets no answer", async () => {
    await expectProfileTimeout(provider, sim.issueToken([...GITHUB_SCOPES]), sim);
  });

  it("refuses bad input before sending anything", async () => {
    const token = sim.issueToken([...GITHUB_SCOPES]);
    await expectRefusedUnsent(sim, () => [
      github.canRead(token, "not a repo"),
      github.canRead(token, "acme/.."),
      github.addDeployKey(token, "acme/../../user", "t", "ssh-ed25519 AAAA"),
      github.removeDeployKey(token, "acme/private-app", "1/../../hooks/2"),
      github.removeWebhook(token, "acme/private-app", "abc"),
      github.setCommitStatus(token, "acme/private-app", "zzz", STATUS),
      github.setCommitStatus(token, "acme/private-app", SHA, { ...STATUS, targetUrl: "javascript:alert(1)" }),
      github.listRepositories(token, 0),
      github.currentUser("gho_x\r\nX-Injected: 1"),
    ]);
  });
});

describe("P15: scopes", () => {
  it("P15: signing in to Slipway asks only to read the profile, and that token cannot touch a repository", async () => {
    expect([...github.signInScopes]).toEqual(["read:user"]);
    const user = await expectNarrowSignIn(github, sim, ["read:user"], "acme/private-app");
    expect(user.id).toBe((await github.currentUser((await signIn()).tokens.accessToken)).id);
  });

  it("P15: connecting requests exactly the documented narrow scopes, and each of them is needed", async () => {
    expect([...github.scopes]).toEqual(["repo", "user:email"]);
    const { tokens } = await signIn();
    expect(sim.requestedScopes.at(-1)).toEqual(["repo", "user:email"]);
    expect(tokens.scopes).toEqual(["repo", "user:email"]);
    // With exactly these, everything Slipway does works (no read:user, admin:repo_hook or repo:status needed).
    const token = tokens.accessToken;
    expect((await github.currentUser(token)).email).toBe("octocat@example.com");
    const { publicKey } = generateEd25519KeyPair("p15");
    const key = await github.addDeployKey(token, "acme/private-app", "p15", publicKey);
    const hook = await github.addWebhook(token, "acme/private-app", "https://127.0.0.1:3/h", "s", ["push"]);
    await github.setCommitStatus(token, "acme/private-app", SHA, STATUS);
    await github.removeDeployKey(token, "acme/private-app", key.id);
    await github.removeWebhook(token, "acme/private-app", hook.id);
    // Without `repo`, private repositories are out of reach; without `user:email`, a private email is.
    const noRepo = sim.issueToken(["user:email"]);
    expect((await failure(github.addDeployKey(noRepo, "acme/private-app", "p15", publicKey))).kind).toBe("not_found");
    expect(await github.canRead(noRepo, "acme/private-app")).toBe(false);
    const noEmail = sim.issueToken(["repo"]);
    expect((await failure(github.currentUser(noEmail))).kind).toBe("not_found");
  });
});

describe("the simulator's webhooks", () => {
  it("are signed as GitHub documents (its published test vector) and pass Slipway's check", async () => {
    expect(signature256("It's a Secret to Everybody", "Hello, World!")).toBe("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
    await receiving(async (url, received) => {
      const token = sim.issueToken([...GITHUB_SCOPES]);
      const hook = await github.addWebhook(token, "acme/private-app", url, "whsec_sim", ["push"]);
      const results = await sim.deliver("acme/private-app", "push", sim.pushPayload("acme/private-app", { ref: "refs/heads/trunk", after: SHA }));
      expect(results.map((r) => r.status)).toEqual([202]);
      const [delivery] = received;
      expect(readDelivery("github", delivery!.headers)).toEqual({ id: results[0]!.deliveryId, event: "push" });
      expect(signedWith("github", delivery!.headers, delivery!.body, "whsec_sim")).toBe(true);
      expect(signedWith("github", delivery!.headers, delivery!.body, "another")).toBe(false);
      expect(JSON.parse(delivery!.body.toString())).toMatchObject({ ref: "refs/heads/trunk", after: SHA, repository: { full_name: "acme/private-app" } });
      expect(await sim.deliver("acme/private-app", "issues", {})).toEqual([]); // not subscribed
      await github.removeWebhook(token, "acme/private-app", hook.id);
    });
    await expect(sim.sendWebhook("http://192.0.2.1/hook", "ping", {}, "s")).rejects.toThrow(/loopback/);
  });
});
