import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateEd25519KeyPair } from "../src/crypto/ssh-keys.js";
import { GITLAB_SCOPES, GitLabProvider, type GitLabOptions } from "../src/scm/gitlab.js";
import { codeChallenge, newOAuthSecret, type ScmErrorKind } from "../src/scm/provider.js";
import { readDelivery, signedWith } from "../src/scm/webhook-deliveries.js";
import { readEvent } from "../src/scm/webhook-events.js";
import { browse } from "./helpers/scm-connect.js";
import { expectHookFailure, expectNarrowSignIn, expectProfileTimeout, expectRefusedUnsent, failure, receiving, signInWith, simOptions } from "./helpers/scm-provider-tests.js";
import { GitLabSim } from "./helpers/scm-sim/gitlab.js";

// The GitLab client against the GitLab simulator: real HTTPS on 127.0.0.1 with a certificate the
// client trusts only through its `ca` option. The simulator is written from GitLab's docs apart
// from the client, so the two check each other.

const SHA = "f15b32277d2c55c6c595845a87109b09c913c556";
const STATUS = { state: "success", targetUrl: "https://slipway.example/builds/1", description: "Build 1 passed", context: "slipway" } as const;
// A project in a subgroup: the client must send its path URL-encoded as one segment.
const REPO = "acme/platform/api";
const API_REPO = "/api/v4/projects/acme%2Fplatform%2Fapi";

let sim: GitLabSim;
let gitlab: GitLabProvider;
const provider = (over: Partial<GitLabOptions> = {}) => new GitLabProvider({ ...simOptions(sim), ...over });
const signIn = (p = gitlab) => signInWith(p, sim.ca);
const bodyOf = (r: { body: string }) => JSON.parse(r.body) as Record<string, unknown>;

beforeAll(async () => {
  // The account sees 4 fixed projects with Reporter or more, plus 245 = 249: three pages of 100.
  sim = await GitLabSim.start({ extraProjects: 245 });
  gitlab = provider();
});
afterEach(() => sim.calm());
afterAll(() => sim.close());

describe("GitLab sign-in (OAuth authorization code with PKCE)", () => {
  it("completes the round trip against a self-managed base URL", async () => {
    const state = newOAuthSecret();
    const verifier = newOAuthSecret();
    const url = gitlab.authorizeUrl(state, verifier, "connect");
    expect(`${url.origin}${url.pathname}`).toBe(`${sim.url}/oauth/authorize`);
    expect(Object.fromEntries(url.searchParams)).toEqual({ client_id: sim.clientId, redirect_uri: sim.callbackUrl, response_type: "code", state, scope: "api", code_challenge: codeChallenge(verifier), code_challenge_method: "S256" });

    const back = await browse(url, sim.ca);
    expect(back.searchParams.get("state")).toBe(state);
    const code = back.searchParams.get("code")!;
    const before = Date.now();
    const tokens = await gitlab.exchangeCode(code, verifier);
    expect(sim.tokenIsValid(tokens.accessToken)).toBe(true);
    expect(tokens.scopes).toEqual(["api"]);
    expect(tokens.refreshToken).toBeTruthy();
    // GitLab's access tokens live two hours.
    expect(tokens.expiresAt!.getTime()).toBeGreaterThanOrEqual(before + 7_200_000);
    expect(tokens.expiresAt!.getTime()).toBeLessThanOrEqual(Date.now() + 7_200_000);
    // The token request is form-encoded with the app's credentials, the verifier and the same redirect URI.
    const sent = new URLSearchParams(sim.requestsTo("/oauth/token").at(-1)!.body);
    expect(Object.fromEntries(sent)).toEqual({ client_id: sim.clientId, client_secret: sim.clientSecret, redirect_uri: sim.callbackUrl, grant_type: "authorization_code", code, code_verifier: verifier });
    await gitlab.currentUser(tokens.accessToken);
    const apiCall = sim.requestsTo("/api/v4/user").at(-1)!.headers;
    expect([apiCall.authorization, apiCall["user-agent"]]).toEqual([`Bearer ${tokens.accessToken}`, "Slipway"]);

    // A code works once.
    const replay = await failure(gitlab.exchangeCode(code, verifier));
    expect(replay.kind).toBe("invalid");
    expect(replay.message).toMatch(/GitLab did not accept the sign-in code .*start the sign-in again/);
  });

  it("fails when the code verifier does not belong to the code (PKCE is checked)", async () => {
    const back = await browse(gitlab.authorizeUrl(newOAuthSecret(), newOAuthSecret(), "connect"), sim.ca);
    const err = await failure(gitlab.exchangeCode(back.searchParams.get("code")!, newOAuthSecret()));
    expect(err.kind).toBe("invalid");
    expect(err.message).toMatch(/invalid_grant|grant is invalid/);
  });

  it("uses gitlab.com without a base URL, and keeps the path of a self-managed one", () => {
    const options = { clientId: "id", clientSecret: "secret", redirectUri: "https://slipway.example/cb" };
    expect(new GitLabProvider(options).authorizeUrl("s", newOAuthSecret(), "connect").toString()).toMatch(/^https:\/\/gitlab\.com\/oauth\/authorize\?/);
    expect(new GitLabProvider({ ...options, baseUrl: "https://example.com/gitlab/" }).authorizeUrl("s", newOAuthSecret(), "connect").toString()).toMatch(/^https:\/\/example\.com\/gitlab\/oauth\/authorize\?/);
  });

  it("refuses a configuration it cannot use safely, with the setting named", () => {
    expect(() => provider({ baseUrl: "http://127.0.0.1:1" })).toThrow(/baseUrl/);
    expect(() => provider({ clientSecret: "" })).toThrow(/clientSecret/);
  });

  it("refreshes with rotation: the old pair dies and a spent refresh token is refused", async () => {
    const { tokens: first } = await signIn();
    const second = await gitlab.refresh(first.refreshToken!);
    expect(second.accessToken).not.toBe(first.accessToken);
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(second.expiresAt!.getTime()).toBeGreaterThan(Date.now());
    expect(sim.tokenIsValid(second.accessToken)).toBe(true);
    expect(sim.tokenIsValid(first.accessToken)).toBe(false);
    expect(new URLSearchParams(sim.requestsTo("/oauth/token").at(-1)!.body).get("grant_type")).toBe("refresh_token");
    const spent = await failure(gitlab.refresh(first.refreshToken!));
    expect(spent.kind).toBe("unauthorized");
    expect(spent.message).toMatch(/refresh token .*reconnect your GitLab account/);
    await expect(gitlab.refresh(second.refreshToken!)).resolves.toMatchObject({ scopes: ["api"] }); // control
  });

  it("says an expired token is to be refreshed or reconnected, and a refresh brings it back", async () => {
    const { tokens } = await signIn();
    sim.expire(tokens.accessToken);
    const err = await failure(gitlab.currentUser(tokens.accessToken));
    expect(err.kind).toBe("unauthorized");
    expect(err.message).toMatch(/Token is expired.*reconnect your GitLab account/);
    const fresh = await gitlab.refresh(tokens.refreshToken!);
    await expect(gitlab.currentUser(fresh.accessToken)).resolves.toMatchObject({ login: "root" });
  });

  it("names wrong OAuth application settings as the operator's to fix", async () => {
    const back = await browse(gitlab.authorizeUrl("s", "v".repeat(43), "connect"), sim.ca);
    const err = await failure(provider({ clientSecret: "wrong" }).exchangeCode(back.searchParams.get("code")!, "v".repeat(43)));
    expect(err.kind).toBe("invalid");
    expect(err.message).toMatch(/Slipway's OAuth application settings.*operator must correct the client id, secret or callback URL/);
  });

  it("verifies TLS for real: without the server's CA the call fails and says to configure it", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    const err = await failure(provider({ ca: undefined }).currentUser(token));
    expect(err.kind).toBe("unavailable");
    expect(err.message).toMatch(/certificate is not trusted.*configure the CA/);
    await expect(gitlab.currentUser(token)).resolves.toMatchObject({ login: "root" }); // control
  });
});

describe("GitLab account and projects", () => {
  it("reads the profile with the primary email, though the public one is empty", async () => {
    const { tokens } = await signIn();
    expect(await gitlab.currentUser(tokens.accessToken)).toEqual({ id: "1", login: "root", name: "Administrator", email: "admin@example.com", avatarUrl: `${sim.url}/uploads/-/system/user/avatar/1/avatar.png` });
  });

  it("lists member projects (Reporter or more) across three pages by the Link header", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    const pages = [await gitlab.listRepositories(token, 1)];
    while (pages.at(-1)!.nextPage) pages.push(await gitlab.listRepositories(token, pages.at(-1)!.nextPage!));
    // acme/empty, on page 1, has no commits and so no default branch: it is left out.
    expect(pages.map((p) => p.repos.length)).toEqual([99, 100, 49]);
    expect(pages.map((p) => p.nextPage)).toEqual([2, 3, undefined]);
    const all = pages.flatMap((p) => p.repos);
    expect(new Set(all.map((r) => r.fullName)).size).toBe(248);
    expect(all.find((r) => r.fullName === REPO)).toEqual({ id: "4", fullName: REPO, sshUrl: `git@127.0.0.1:${REPO}.git`, cloneUrl: `${sim.url}/${REPO}.git`, private: true, defaultBranch: "main" });
    expect(all.some((r) => r.fullName === "acme/reporting")).toBe(true);
    for (const hidden of ["acme/guest-only", "acme/secret", "gitlab-org/gitlab", "acme/empty"]) expect(all.some((r) => r.fullName === hidden), hidden).toBe(false);
    for (const r of sim.requestsTo("/api/v4/projects")) expect(Object.fromEntries(r.query)).toMatchObject({ membership: "true", min_access_level: "20", order_by: "id", sort: "asc", per_page: "100" });
  });

  it("tells who can read the code: Reporter or more, or a public project; not a Guest, a stranger or a hidden repository", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    expect(await gitlab.canRead(token, REPO)).toBe(true);
    expect(await gitlab.canRead(token, "acme/reporting")).toBe(true);
    expect(await gitlab.canRead(token, "gitlab-org/gitlab")).toBe(true); // public, not a member
    expect(await gitlab.canRead(token, "acme/guest-only")).toBe(false); // sees the project, not its code
    expect(await gitlab.canRead(token, "acme/members-code")).toBe(false); // internal, repository for members only
    expect(await gitlab.canRead(token, "acme/secret")).toBe(false); // 404
    expect(await gitlab.canRead(token, "acme/no-such-project")).toBe(false);
    sim.misbehave({ path: "/projects/acme%2Fplatform%2Fapi" }, { status: 403 });
    expect(await gitlab.canRead(token, REPO)).toBe(false);
    // A dead token is an error to act on, not a "no".
    expect((await failure(gitlab.canRead("not-a-token", REPO))).kind).toBe("unauthorized");
  });
});

describe("GitLab deploy keys, webhooks and statuses", () => {
  it("adds a read-only deploy key to a project in a subgroup and removes it", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    const { publicKey } = generateEd25519KeyPair("slipway-project-7");
    const { id } = await gitlab.addDeployKey(token, REPO, "Slipway (project 7)", publicKey);
    const sent = sim.requestsTo(`${API_REPO}/deploy_keys`).at(-1)!;
    expect(bodyOf(sent)).toEqual({ title: "Slipway (project 7)", key: publicKey, can_push: false });
    expect(sim.keys.get(REPO)).toEqual([{ id: Number(id), title: "Slipway (project 7)", key: publicKey, can_push: false }]);
    await gitlab.removeDeployKey(token, REPO, id);
    expect(sim.keys.get(REPO)).toEqual([]);
    const again = await failure(gitlab.removeDeployKey(token, REPO, id));
    expect(again.kind).toBe("not_found");
    expect(again.message).toMatch(new RegExp(`removing deploy key ${id} from ${REPO}`));
    // Control: the flag is wired, a key asked to push can.
    const pushing = await gitlab.addDeployKey(token, REPO, "push", generateEd25519KeyPair("push").publicKey, false);
    expect(sim.keys.get(REPO)).toEqual([expect.objectContaining({ id: Number(pushing.id), can_push: true })]);
    await gitlab.removeDeployKey(token, REPO, pushing.id);
  });

  it("adds a webhook with the secret, TLS verification and exactly the asked events, and removes it", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    const url = "https://127.0.0.1:8443/api/v1/hooks/gitlab/7";
    const { id } = await gitlab.addWebhook(token, REPO, url, "whsec_7", ["push", "pull_request"]);
    expect(sim.hooks.get(REPO)).toEqual([{ id: Number(id), url, token: "whsec_7", push_events: true, tag_push_events: true, merge_requests_events: true, enable_ssl_verification: true }]);
    await gitlab.removeWebhook(token, REPO, id);
    expect(sim.hooks.get(REPO)).toEqual([]);
    // GitLab turns push events on unless told otherwise: a merge-request-only hook says so.
    const mrOnly = await gitlab.addWebhook(token, REPO, url, "s", ["pull_request"]);
    expect(sim.hooks.get(REPO)).toEqual([expect.objectContaining({ push_events: false, tag_push_events: false, merge_requests_events: true })]);
    await gitlab.removeWebhook(token, REPO, mrOnly.id);
    expect((await failure(gitlab.removeWebhook(token, REPO, mrOnly.id))).kind).toBe("not_found");
  });

  it("refuses deploy keys and hooks on a project where the account is below Maintainer", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    const err = await failure(gitlab.addDeployKey(token, "acme/reporting", "t", generateEd25519KeyPair("k").publicKey));
    expect(err.kind).toBe("forbidden");
    expect(err.message).toMatch(/GitLab refused adding the deploy key to acme\/reporting \(GitLab said: 403 Forbidden\).*ask a repository admin/);
    expect(sim.keys.get("acme/reporting")).toBeUndefined();
    expect((await failure(gitlab.addWebhook(token, "acme/reporting", "https://127.0.0.1:1/h", "s", ["push"]))).kind).toBe("forbidden");
  });

  it("posts statuses with GitLab's state names, the link, the context as name and a description cut to 255 characters", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    const path = `${API_REPO}/statuses/${SHA}`;
    const sent = sim.requestsTo(path).length;
    await gitlab.setCommitStatus(token, REPO, SHA, { ...STATUS, state: "pending", description: "x".repeat(300) });
    await gitlab.setCommitStatus(token, REPO, SHA, STATUS);
    await gitlab.setCommitStatus(token, REPO, SHA, { ...STATUS, state: "failure" });
    await gitlab.setCommitStatus(token, REPO, SHA, { ...STATUS, state: "error" });
    expect(sim.requestsTo(path).slice(sent).map(bodyOf)).toEqual([
      { state: "pending", target_url: STATUS.targetUrl, description: "x".repeat(255), name: "slipway" },
      { state: "success", target_url: STATUS.targetUrl, description: STATUS.description, name: "slipway" },
      { state: "failed", target_url: STATUS.targetUrl, description: STATUS.description, name: "slipway" },
      { state: "failed", target_url: STATUS.targetUrl, description: STATUS.description, name: "slipway" },
    ]);
    expect(sim.statuses.filter((s) => s.sha === SHA && s.project === REPO).map((s) => s.status)).toEqual(["success", "failed", "failed"]);
  });

  it("takes GitLab's refusal to set a status to the state it is already in as done", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    const sha = "a".repeat(40);
    const path = `${API_REPO}/statuses/${sha}`;
    await gitlab.setCommitStatus(token, REPO, sha, { ...STATUS, state: "pending" });
    await gitlab.setCommitStatus(token, REPO, sha, { ...STATUS, state: "pending" });
    expect(sim.requestsTo(path).length).toBe(2);
    expect(sim.statuses.filter((s) => s.sha === sha).map((s) => s.status)).toEqual(["pending"]);
    // Control: other 400s from the same endpoint are still errors.
    sim.misbehave({ path: `/projects/acme%2Fplatform%2Fapi/statuses/${sha}` }, { status: 400 });
    expect((await failure(gitlab.setCommitStatus(token, REPO, sha, STATUS))).kind).toBe("invalid");
  });

  it("retries a status with backoff through 503s, then it is posted once", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    const sha = "b".repeat(40);
    const path = `${API_REPO}/statuses/${sha}`;
    sim.misbehave({ path: `/projects/acme%2Fplatform%2Fapi/statuses/${sha}` }, { status: 503 }, 2);
    await gitlab.setCommitStatus(token, REPO, sha, STATUS);
    expect(sim.requestsTo(path).length).toBe(3);
    expect(sim.statuses.filter((s) => s.sha === sha).length).toBe(1);
  });

  it("honours Retry-After before retrying a status", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    const sha = "c".repeat(40);
    // The backoff is 5 ms, so only Retry-After explains a wait of a second or more.
    sim.misbehave({ path: `/projects/acme%2Fplatform%2Fapi/statuses/${sha}` }, { rateLimit: "retry-after", seconds: 1 });
    await gitlab.setCommitStatus(token, REPO, sha, STATUS);
    const [first, second] = sim.requestsTo(`${API_REPO}/statuses/${sha}`);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1000);
  });

  it("gives up on statuses after the bounded attempts, or at once when asked to wait too long", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    const sha = "d".repeat(40);
    const path = `${API_REPO}/statuses/${sha}`;
    sim.misbehave({ path: `/projects/acme%2Fplatform%2Fapi/statuses/${sha}` }, { status: 500 }, 10);
    expect((await failure(gitlab.setCommitStatus(token, REPO, sha, STATUS))).kind).toBe("unavailable");
    expect(sim.requestsTo(path).length).toBe(3);
    sim.calm();
    sim.misbehave({ path: `/projects/acme%2Fplatform%2Fapi/statuses/${sha}` }, { rateLimit: "reset", seconds: 3600 }, 10);
    const limited = await failure(gitlab.setCommitStatus(token, REPO, sha, STATUS));
    expect(limited.kind).toBe("rate_limited");
    expect(limited.retryAfterMs).toBeGreaterThan(5_000);
    expect(sim.requestsTo(path).length).toBe(4);
  });

  it("does not retry anything else", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    const sent = sim.requestsTo(`${API_REPO}/hooks`).length;
    sim.misbehave({ path: "/projects/acme%2Fplatform%2Fapi/hooks" }, { status: 503 });
    expect((await failure(gitlab.addWebhook(token, REPO, "https://127.0.0.1:1/h", "s", ["push"]))).kind).toBe("unavailable");
    expect(sim.requestsTo(`${API_REPO}/hooks`).length - sent).toBe(1);
    expect(sim.hooks.get(REPO) ?? []).toEqual([]);
  });
});

describe("GitLab failures", () => {
  it("P07, P15: a revoked token makes the next call fail as unauthorized with what to do", async () => {
    const { tokens } = await signIn();
    const token = tokens.accessToken;
    await expect(gitlab.currentUser(token)).resolves.toMatchObject({ login: "root" });
    // Wrong app credentials revoke nothing, and say whose settings to fix.
    const wrongApp = await failure(provider({ clientSecret: "wrong" }).revoke(token));
    expect(wrongApp.message).toMatch(/Slipway's OAuth application.*operator must correct/);
    expect(sim.tokenIsValid(token)).toBe(true);

    await gitlab.revoke(token);
    expect(new URLSearchParams(sim.requestsTo("/oauth/revoke").at(-1)!.body).get("token")).toBe(token);
    expect(sim.tokenIsValid(token)).toBe(false);
    const err = await failure(gitlab.currentUser(token));
    expect(err.kind).toBe("unauthorized");
    expect(err.message).toMatch(/GitLab rejected the token while reading your profile \(GitLab said: Token was revoked\. You have to re-authorize from the user\.\): .*reconnect your GitLab account/);
    // The refresh token went with it, and revoking again is no error (RFC 7009).
    expect((await failure(gitlab.refresh(tokens.refreshToken!))).kind).toBe("unauthorized");
    await expect(gitlab.revoke(token)).resolves.toBeUndefined();
  });

  it.each<[string, Parameters<GitLabSim["misbehave"]>[1], ScmErrorKind, RegExp]>([
    ["400 with validation messages", { status: 400 }, "invalid", /as invalid \(GitLab said: url is blocked: Requests to the local network are not allowed\): correct it/],
    ["401", { status: 401 }, "unauthorized", /401 Unauthorized.*reconnect your GitLab account/],
    ["403", { status: 403 }, "forbidden", /403 Forbidden.*ask a repository admin/],
    ["404", { status: 404 }, "not_found", /404 Project Not Found.*check the name/],
    ["409", { status: 409 }, "invalid", /409 Conflict.*correct it/],
    ["422", { status: 422 }, "invalid", /422 Unprocessable Entity.*correct it/],
    ["500", { status: 500 }, "unavailable", /HTTP 500.*try again later/],
    ["502 with an HTML body", { status: 502 }, "unavailable", /HTTP 502.*try again later/],
    ["429 with Retry-After", { rateLimit: "retry-after", seconds: 30 }, "rate_limited", /rate limit.*try again in 30 s/],
    ["429 with only RateLimit-Reset", { rateLimit: "reset", seconds: 3600 }, "rate_limited", /try again in 3[56]\d\d s/],
    ["non-JSON", { raw: '{"id": 12', status: 201 }, "malformed", /not JSON/],
    ["JSON of the wrong shape", { raw: '{"id": "twelve"}', status: 201 }, "malformed", /documented shape \(at id\)/],
    ["an answer beyond the size limit", { oversized: 200_000 }, "malformed", /larger than 65536 bytes/],
  ])("maps %s to a kind with a message that says what to do", async (_name, what, kind, message) => {
    const call = { provider: provider({ maxResponseBytes: 65_536 }), token: sim.issueToken([...GITLAB_SCOPES]), repo: REPO, url: "https://127.0.0.1:2/h" };
    await expectHookFailure(call, () => sim.misbehave({ path: "/projects/acme%2Fplatform%2Fapi/hooks" }, what), kind, message);
  });

  it("times out a call that gets no answer", async () => {
    await expectProfileTimeout(provider, sim.issueToken([...GITLAB_SCOPES]), sim);
  });

  it("refuses bad input before sending anything", async () => {
    const token = sim.issueToken([...GITLAB_SCOPES]);
    await expectRefusedUnsent(sim, () => [
      gitlab.canRead(token, "not a project"),
      gitlab.canRead(token, "single"),
      gitlab.canRead(token, "acme/.."),
      gitlab.canRead(token, "acme/app.git"),
      gitlab.canRead(token, "-acme/app"),
      gitlab.canRead(token, "acme//app"),
      gitlab.addDeployKey(token, "acme/../../user", "t", "ssh-ed25519 AAAA"),
      gitlab.removeDeployKey(token, REPO, "1/../../hooks/2"),
      gitlab.removeWebhook(token, REPO, "abc"),
      gitlab.setCommitStatus(token, REPO, "zzz", STATUS),
      gitlab.setCommitStatus(token, REPO, SHA, { ...STATUS, targetUrl: "javascript:alert(1)" }),
      gitlab.setCommitStatus(token, REPO, SHA, { ...STATUS, targetUrl: `https://slipway.example/${"b".repeat(250)}` }),
      gitlab.listRepositories(token, 0),
      gitlab.currentUser("x\r\nX-Injected: 1"),
    ]);
  });
});

describe("P15: scopes", () => {
  it("P15: signing in to Slipway asks only to read the profile, and that token cannot touch a repository", async () => {
    expect([...gitlab.signInScopes]).toEqual(["read_user"]);
    const user = await expectNarrowSignIn(gitlab, sim, ["read_user"], REPO);
    expect(user.id).toBe((await gitlab.currentUser((await signIn()).tokens.accessToken)).id);
  });

  it("P15: connecting requests exactly the documented narrow scopes, and each of them is needed", async () => {
    expect([...gitlab.scopes]).toEqual(["api"]);
    const { tokens } = await signIn();
    expect(sim.requestedScopes.at(-1)).toEqual(["api"]);
    expect(tokens.scopes).toEqual(["api"]);
    // With `api` alone everything Slipway does works, the profile and its email included (no `read_user`).
    const token = tokens.accessToken;
    expect((await gitlab.currentUser(token)).email).toBe("admin@example.com");
    expect((await gitlab.listRepositories(token, 1)).repos.length).toBeGreaterThan(0);
    expect(await gitlab.canRead(token, REPO)).toBe(true);
    const { publicKey } = generateEd25519KeyPair("p15");
    const key = await gitlab.addDeployKey(token, REPO, "p15", publicKey);
    const hook = await gitlab.addWebhook(token, REPO, "https://127.0.0.1:3/h", "s", ["push"]);
    await gitlab.setCommitStatus(token, REPO, "e".repeat(40), STATUS);
    await gitlab.removeDeployKey(token, REPO, key.id);
    await gitlab.removeWebhook(token, REPO, hook.id);
    // The read-only scopes reach the profile and the projects but cannot install or post anything.
    const readOnly = sim.issueToken(["read_api", "read_user"]);
    await expect(gitlab.currentUser(readOnly)).resolves.toMatchObject({ login: "root" });
    expect(await gitlab.canRead(readOnly, REPO)).toBe(true);
    for (const write of [gitlab.addDeployKey(readOnly, REPO, "p15", publicKey), gitlab.addWebhook(readOnly, REPO, "https://127.0.0.1:3/h", "s", ["push"]), gitlab.setCommitStatus(readOnly, REPO, "e".repeat(40), STATUS)]) {
      const err = await failure(write);
      expect(err.kind).toBe("forbidden");
      expect(err.message).toMatch(/lacks the api scope; reconnect your GitLab account/);
    }
    expect(sim.keys.get(REPO)).toEqual([]);
  });
});

describe("the simulator's webhooks", () => {
  it("carry the secret as GitLab does and pass Slipway's check, and are read into the right events", async () => {
    await receiving(async (url, received) => {
      const token = sim.issueToken([...GITLAB_SCOPES]);
      const hook = await gitlab.addWebhook(token, REPO, url, "whsec_sim", ["push", "pull_request"]);
      const read = (i: number) => {
        const { headers, body } = received[i]!;
        const delivery = readDelivery("gitlab", headers);
        if ("missing" in delivery) throw new Error(`delivery lacks ${delivery.missing}`);
        return { delivery, event: readEvent("gitlab", delivery.event, JSON.parse(body.toString())), headers, body };
      };

      const [push] = await sim.deliver(REPO, "Push Hook", sim.pushPayload(REPO, { ref: "refs/heads/main", after: SHA, message: "Fix the build" }));
      expect(push!.status).toBe(202);
      const first = read(0);
      expect(first.delivery).toEqual({ id: push!.eventUuid, event: "Push Hook" });
      expect(signedWith("gitlab", first.headers, first.body, "whsec_sim")).toBe(true);
      expect(signedWith("gitlab", first.headers, first.body, "another")).toBe(false);
      expect(first.event).toEqual({ kind: "build", pushes: [{ ref: "refs/heads/main", commit: SHA, message: "Fix the build", author: { name: "Administrator", email: "admin@example.com" } }] });

      await sim.deliver(REPO, "Tag Push Hook", sim.pushPayload(REPO, { ref: "refs/tags/v1.0.0", after: SHA }));
      expect(read(1).event).toMatchObject({ kind: "build", pushes: [{ ref: "refs/tags/v1.0.0", commit: SHA }] });

      await sim.deliver(REPO, "Merge Request Hook", sim.mergeRequestPayload(REPO, { iid: 5, action: "open", sourceBranch: "feature", sha: SHA }));
      expect(read(2).event).toMatchObject({ kind: "build", pushes: [{ ref: "refs/heads/feature", commit: SHA, pullRequest: 5, fromFork: false }] });
      await sim.deliver(REPO, "Merge Request Hook", sim.mergeRequestPayload(REPO, { iid: 6, action: "open", sourceBranch: "feature", sha: SHA, sourceProjectId: 4242 }));
      expect(read(3).event).toMatchObject({ kind: "build", pushes: [{ pullRequest: 6, fromFork: true }] });
      await sim.deliver(REPO, "Merge Request Hook", sim.mergeRequestPayload(REPO, { iid: 5, action: "close", sourceBranch: "feature", sha: SHA }));
      expect(read(4).event.kind).toBe("ignored");
      expect(new Set(received.map((r) => r.headers["x-gitlab-event-uuid"])).size).toBe(5);

      // A push-only hook gets no merge request events.
      await gitlab.removeWebhook(token, REPO, hook.id);
      const pushOnly = await gitlab.addWebhook(token, REPO, url, "s", ["push"]);
      expect(await sim.deliver(REPO, "Merge Request Hook", sim.mergeRequestPayload(REPO, { iid: 7, action: "open", sourceBranch: "f", sha: SHA }))).toEqual([]);
      await gitlab.removeWebhook(token, REPO, pushOnly.id);
    });
    await expect(sim.sendWebhook("http://192.0.2.1/hook", "Push Hook", {}, "s")).rejects.toThrow(/loopback/);
  });
});
