import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateEd25519KeyPair } from "../src/crypto/ssh-keys.js";
import { BITBUCKET_SCOPES, BitbucketProvider, type BitbucketOptions } from "../src/scm/bitbucket.js";
import { newOAuthSecret, type ScmErrorKind, type ScmProvider } from "../src/scm/provider.js";
import { readDelivery, signedWith } from "../src/scm/webhook-deliveries.js";
import { readEvent } from "../src/scm/webhook-events.js";
import { authorizeCode, expectHookFailure, expectProfileTimeout, expectRefusedUnsent, failure, receiving, signInWith, simOptions } from "./helpers/scm-provider-tests.js";
import { BitbucketSim, hubSignature } from "./helpers/scm-sim/bitbucket.js";

// The Bitbucket Cloud client against the Bitbucket simulator: real HTTPS on 127.0.0.1 with a
// certificate the client trusts only through its `ca` option. The simulator is written from
// Bitbucket's docs apart from the client, so the two check each other.

const SHA = "e10dae226959c2194f2b07b077c07762d93821cf";
const STATUS = { state: "success", targetUrl: "https://slipway.example/builds/1", description: "Build 1 passed", context: "slipway" } as const;
const ALL = [...BITBUCKET_SCOPES, "repository"];
const HOOK_URL = "https://127.0.0.1:8443/api/v1/hooks/bitbucket/7";

let sim: BitbucketSim;
let bitbucket: BitbucketProvider;
const provider = (over: Partial<BitbucketOptions> = {}, s = sim) => new BitbucketProvider({ ...simOptions(s), apiUrl: s.apiUrl, ...over });
// Bitbucket has no PKCE: the verifier the provider is handed goes nowhere.
const authorize = async (p: BitbucketProvider) => (await authorizeCode(p, sim.ca)).code;
const signIn = (p = bitbucket, s = sim) => signInWith(p, s.ca);
const statusPath = `/repositories/acme/private-app/commit/${SHA}/statuses/build`;

beforeAll(async () => {
  // 246 extra repositories + 4 fixed ones the user is a member of = 250: three pages of 100.
  sim = await BitbucketSim.start({ extraRepos: 246 });
  bitbucket = provider();
});
afterEach(() => sim.calm());
afterAll(() => sim.close());

describe("Bitbucket sign-in (OAuth 2.0 authorization code grant)", () => {
  it("completes the round trip: state comes back, the code is swapped once with the consumer's credentials", async () => {
    const url = bitbucket.authorizeUrl("state-1", newOAuthSecret(), "connect");
    expect(`${url.origin}${url.pathname}`).toBe(`${sim.url}/site/oauth2/authorize`);
    expect(Object.fromEntries(url.searchParams)).toEqual({ client_id: sim.clientId, response_type: "code", redirect_uri: sim.callbackUrl, state: "state-1" });

    const { code, tokens } = await signIn();
    expect(sim.tokenIsValid(tokens.accessToken)).toBe(true);
    expect(tokens.refreshToken).toBeTruthy();
    // Bitbucket's access tokens last two hours.
    expect(tokens.expiresAt!.getTime() - Date.now()).toBeGreaterThan(7_100_000);
    expect(tokens.expiresAt!.getTime() - Date.now()).toBeLessThanOrEqual(7_200_000);
    expect(tokens.scopes).toEqual(sim.consumerScopes);
    // The consumer authenticates with HTTP Basic; its secret is never in the body.
    const tokenCall = sim.requestsTo("/site/oauth2/access_token").at(-1)!;
    expect(tokenCall.headers.authorization).toBe(`Basic ${Buffer.from(`${sim.clientId}:${sim.clientSecret}`).toString("base64")}`);
    await bitbucket.currentUser(tokens.accessToken);
    const apiCall = sim.requestsTo("/2.0/user").at(-1)!.headers;
    expect([apiCall.authorization, apiCall["user-agent"]]).toEqual([`Bearer ${tokens.accessToken}`, "Slipway"]);

    // A code works once.
    const replay = await failure(bitbucket.exchangeCode(code, newOAuthSecret()));
    expect(replay.kind).toBe("invalid");
    expect(replay.message).toMatch(/start the sign-in again/);
  });

  it("has no PKCE, so the code is bound to the consumer's secret instead", async () => {
    const url = bitbucket.authorizeUrl("s", newOAuthSecret(), "connect");
    expect(url.searchParams.has("code_challenge")).toBe(false);
    const code = await authorize(bitbucket);
    const stranger = await failure(provider({ clientSecret: "not-the-secret" }).exchangeCode(code, newOAuthSecret()));
    expect(stranger.kind).toBe("invalid");
    expect(stranger.message).toMatch(/Slipway's OAuth consumer.*operator must correct/);
    await expect(bitbucket.exchangeCode(code, newOAuthSecret())).resolves.toMatchObject({ scopes: sim.consumerScopes }); // control
  });

  it("uses Bitbucket's own addresses without a base URL", () => {
    const cloud = new BitbucketProvider({ clientId: "id", clientSecret: "secret", redirectUri: "https://slipway.example/cb" });
    expect(cloud.authorizeUrl("s", newOAuthSecret(), "connect").toString()).toMatch(/^https:\/\/bitbucket\.org\/site\/oauth2\/authorize\?/);
  });

  it("refuses a configuration it cannot use safely, with the setting named", () => {
    expect(() => provider({ baseUrl: "http://127.0.0.1:1" })).toThrow(/baseUrl/);
    expect(() => provider({ apiUrl: "http://127.0.0.1:1/2.0" })).toThrow(/apiUrl/);
    expect(() => provider({ clientSecret: "" })).toThrow(/clientSecret/);
  });

  it("refreshes with rotation: a new pair each time, and a spent refresh token is refused", async () => {
    const { tokens: first } = await signIn();
    const second = await bitbucket.refresh(first.refreshToken!);
    expect(second.accessToken).not.toBe(first.accessToken);
    expect(second.refreshToken).not.toBe(first.refreshToken);
    expect(sim.tokenIsValid(second.accessToken)).toBe(true);
    await expect(bitbucket.currentUser(second.accessToken)).resolves.toMatchObject({ login: "evzijst" });
    const spent = await failure(bitbucket.refresh(first.refreshToken!));
    expect(spent.kind).toBe("unauthorized");
    expect(spent.message).toMatch(/reconnect your Bitbucket account/);
    await expect(bitbucket.refresh(second.refreshToken!)).resolves.toMatchObject({ scopes: sim.consumerScopes }); // control
  });

  it("reads the granted scopes under Bitbucket's older field name too", async () => {
    const legacy = await BitbucketSim.start({ legacyScopesField: true });
    try {
      const { tokens } = await signIn(provider({}, legacy), legacy);
      expect(tokens.scopes).toEqual(legacy.consumerScopes);
    } finally {
      await legacy.close();
    }
  });

  it("verifies TLS for real: without the server's CA the call fails and says to configure it", async () => {
    const token = sim.issueToken(ALL);
    const err = await failure(provider({ ca: undefined }).currentUser(token));
    expect(err.kind).toBe("unavailable");
    expect(err.message).toMatch(/certificate is not trusted.*configure the CA/);
    await expect(bitbucket.currentUser(token)).resolves.toMatchObject({ login: "evzijst" }); // control
  });
});

describe("Bitbucket account and repositories", () => {
  it("reads the profile, and the primary confirmed email from /user/emails", async () => {
    const { tokens } = await signIn();
    expect(await bitbucket.currentUser(tokens.accessToken)).toEqual({ id: sim.user.uuid, login: "evzijst", name: "Erik van Zijst", email: "erik@example.com", avatarUrl: `${sim.url}/account/evzijst/avatar/32/` });
  });

  it("lists the member's repositories across three pages by the `next` link", async () => {
    const token = sim.issueToken(ALL);
    const pages = [await bitbucket.listRepositories(token, 1)];
    while (pages.at(-1)!.nextPage) pages.push(await bitbucket.listRepositories(token, pages.at(-1)!.nextPage!));
    expect(pages.map((p) => p.repos.length)).toEqual([100, 100, 50]);
    expect(pages.map((p) => p.nextPage)).toEqual([2, 3, undefined]);
    const all = pages.flatMap((p) => p.repos);
    expect(new Set(all.map((r) => r.fullName)).size).toBe(250);
    const host = new URL(sim.url).host;
    expect(all.find((r) => r.fullName === "acme/private-app")).toEqual({ id: sim.repo("acme/private-app")!.uuid, fullName: "acme/private-app", sshUrl: `git@${host}:acme/private-app.git`, cloneUrl: `https://evzijst@${host}/acme/private-app.git`, private: true, defaultBranch: "trunk" });
    expect(all.find((r) => r.fullName === "acme/empty")?.defaultBranch).toBe("main");
    // Neither hidden nor merely public repositories are listed.
    expect(all.some((r) => r.fullName === "acme/secret" || r.fullName === "atlassian/public-lib")).toBe(false);
    expect(sim.requestsTo("/2.0/repositories").every((r) => r.query.get("role") === "member" && r.query.get("pagelen") === "100")).toBe(true);
  });

  it("tells who can read what: visible repositories yes, hidden or missing ones no", async () => {
    const token = sim.issueToken(ALL);
    expect(await bitbucket.canRead(token, "acme/private-app")).toBe(true);
    expect(await bitbucket.canRead(token, "acme/read-only")).toBe(true);
    expect(await bitbucket.canRead(token, "atlassian/public-lib")).toBe(true); // public
    expect(await bitbucket.canRead(token, "acme/secret")).toBe(false); // 403: private, no access
    expect(await bitbucket.canRead(token, "acme/no-such-repo")).toBe(false); // 404
    sim.misbehave({ path: "/repositories/acme/private-app" }, { status: 403 });
    expect(await bitbucket.canRead(token, "acme/private-app")).toBe(false);
    // A dead token, or one lacking scopes, is an error to act on, not a "no".
    expect((await failure(bitbucket.canRead("not-a-token", "acme/private-app"))).kind).toBe("unauthorized");
    const unscoped = await failure(bitbucket.canRead(sim.issueToken(["account", "email"]), "acme/private-app"));
    expect(unscoped.kind).toBe("forbidden");
    expect(unscoped.message).toMatch(/lacks the scope repository/);
  });
});

describe("Bitbucket deploy keys, webhooks and statuses", () => {
  it("adds a deploy key (read-only by nature) and removes it", async () => {
    const token = sim.issueToken(ALL);
    const { publicKey } = generateEd25519KeyPair("slipway-project-7");
    const { id } = await bitbucket.addDeployKey(token, "acme/private-app", "Slipway (project 7)", publicKey);
    expect(sim.keys.get("acme/private-app")).toEqual([{ id: Number(id), label: "Slipway (project 7)", key: publicKey }]);
    await bitbucket.removeDeployKey(token, "acme/private-app", id);
    expect(sim.keys.get("acme/private-app")).toEqual([]);
    const again = await failure(bitbucket.removeDeployKey(token, "acme/private-app", id));
    expect(again.kind).toBe("not_found");
    expect(again.message).toMatch(new RegExp(`removing deploy key ${id} from acme/private-app`));
    // A key that could push cannot exist on Bitbucket: refused before anything is sent.
    const sent = sim.requests.length;
    expect((await failure(bitbucket.addDeployKey(token, "acme/private-app", "rw", publicKey, false))).message).toMatch(/always read-only/);
    expect(sim.requests.length).toBe(sent);
  });

  it("adds a webhook (secret, push + pull request events) by its {uuid} and removes it", async () => {
    const token = sim.issueToken(ALL);
    const { id } = await bitbucket.addWebhook(token, "acme/private-app", HOOK_URL, "whsec_7", ["push", "pull_request"]);
    expect(id).toMatch(/^\{[0-9a-f-]{36}\}$/);
    expect(sim.hooks.get("acme/private-app")).toEqual([{ uuid: id, url: HOOK_URL, description: "Slipway", active: true, events: ["repo:push", "pullrequest:created", "pullrequest:updated"], secret: "whsec_7" }]);
    await bitbucket.removeWebhook(token, "acme/private-app", id);
    expect(sim.hooks.get("acme/private-app")).toEqual([]);
    expect(sim.requestsTo(/\/hooks\//).at(-1)!.path).toBe(`/2.0/repositories/acme/private-app/hooks/${encodeURIComponent(id)}`);
  });

  it("refuses deploy keys and hooks on a repository the account cannot administer", async () => {
    const token = sim.issueToken(ALL);
    const key = await failure(bitbucket.addDeployKey(token, "acme/read-only", "t", generateEd25519KeyPair("k").publicKey));
    expect(key.kind).toBe("forbidden");
    expect(key.message).toMatch(/admin access/);
    expect((await failure(bitbucket.addWebhook(token, "acme/read-only", HOOK_URL, "s", ["push"]))).kind).toBe("forbidden");
    expect([sim.keys.get("acme/read-only"), sim.hooks.get("acme/read-only")]).toEqual([undefined, undefined]);
  });

  it("posts build statuses in Bitbucket's states, keyed by the context, with the build link", async () => {
    const token = sim.issueToken(ALL);
    const before = sim.statuses.length;
    for (const state of ["pending", "success", "failure", "error"] as const) await bitbucket.setCommitStatus(token, "acme/private-app", SHA, { ...STATUS, state });
    expect(sim.statuses.slice(before)).toEqual(
      ["INPROGRESS", "SUCCESSFUL", "FAILED", "FAILED"].map((state) => ({ repo: "acme/private-app", commit: SHA, key: "slipway", state, url: STATUS.targetUrl, name: "slipway", description: STATUS.description })),
    );
  });

  it("retries a status with backoff through 503s, then it is posted once", async () => {
    const token = sim.issueToken(ALL);
    const [sent, posted] = [sim.requestsTo(`/2.0${statusPath}`).length, sim.statuses.length];
    sim.misbehave({ path: statusPath }, { status: 503 }, 2);
    await bitbucket.setCommitStatus(token, "acme/private-app", SHA, STATUS);
    expect(sim.requestsTo(`/2.0${statusPath}`).length - sent).toBe(3);
    expect(sim.statuses.length - posted).toBe(1);
  });

  it("honours Retry-After on a 429 before retrying a status", async () => {
    const token = sim.issueToken(ALL);
    const sent = sim.requestsTo(`/2.0${statusPath}`).length;
    // The backoff is 5 ms, so only Retry-After explains a wait of a second or more.
    sim.misbehave({ path: statusPath }, { rateLimit: true, retryAfterSeconds: 1 });
    await bitbucket.setCommitStatus(token, "acme/private-app", SHA, STATUS);
    const [first, second] = sim.requestsTo(`/2.0${statusPath}`).slice(sent);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1000);
  });

  it("gives up on statuses after the bounded attempts, or at once when asked to wait too long", async () => {
    const token = sim.issueToken(ALL);
    let sent = sim.requestsTo(`/2.0${statusPath}`).length;
    sim.misbehave({ path: statusPath }, { status: 500 }, 10);
    expect((await failure(bitbucket.setCommitStatus(token, "acme/private-app", SHA, STATUS))).kind).toBe("unavailable");
    expect(sim.requestsTo(`/2.0${statusPath}`).length - sent).toBe(3);
    sim.calm();
    sent = sim.requestsTo(`/2.0${statusPath}`).length;
    sim.misbehave({ path: statusPath }, { rateLimit: true, retryAfterSeconds: 3600 }, 10);
    const limited = await failure(bitbucket.setCommitStatus(token, "acme/private-app", SHA, STATUS));
    expect(limited.kind).toBe("rate_limited");
    expect(limited.retryAfterMs).toBe(3_600_000);
    expect(sim.requestsTo(`/2.0${statusPath}`).length - sent).toBe(1);
  });

  it("does not retry anything else", async () => {
    const token = sim.issueToken(ALL);
    const sent = sim.requestsTo("/2.0/repositories/acme/private-app/hooks").length;
    sim.misbehave({ path: "/repositories/acme/private-app/hooks" }, { status: 503 });
    expect((await failure(bitbucket.addWebhook(token, "acme/private-app", HOOK_URL, "s", ["push"]))).kind).toBe("unavailable");
    expect(sim.requestsTo("/2.0/repositories/acme/private-app/hooks").length - sent).toBe(1);
    expect(sim.hooks.get("acme/private-app") ?? []).toEqual([]);
  });
});

describe("Bitbucket failures", () => {
  it("P07, P15: a revoked token makes the next call fail as unauthorized with what to do", async () => {
    // Bitbucket has no revocation endpoint; the user revokes Slipway in Bitbucket's settings.
    expect((bitbucket as ScmProvider).revoke).toBeUndefined();
    const { tokens } = await signIn();
    await expect(bitbucket.currentUser(tokens.accessToken)).resolves.toMatchObject({ login: "evzijst" });
    sim.revokeAccess();
    const err = await failure(bitbucket.currentUser(tokens.accessToken));
    expect(err.kind).toBe("unauthorized");
    expect(err.message).toMatch(/Bitbucket rejected the token while reading your profile \(Bitbucket said: .*\): .*reconnect your Bitbucket account/);
    const refresh = await failure(bitbucket.refresh(tokens.refreshToken!));
    expect(refresh.kind).toBe("unauthorized");
    expect(refresh.message).toMatch(/reconnect your Bitbucket account/);
  });

  it.each<[string, Parameters<BitbucketSim["misbehave"]>[1], ScmErrorKind, RegExp]>([
    ["401", { status: 401 }, "unauthorized", /Access token expired.*reconnect/],
    ["403", { status: 403 }, "forbidden", /admin access.*ask a repository admin/],
    ["404", { status: 404 }, "not_found", /Repository not found.*check the name/],
    ["400 with field errors", { status: 400 }, "invalid", /Bad request; url: Enter a valid URL\..*correct it/],
    ["500", { status: 500 }, "unavailable", /HTTP 500.*Something went wrong.*try again later/],
    ["502 with an HTML body", { status: 502 }, "unavailable", /HTTP 502.*try again later/],
    ["429 with Retry-After", { rateLimit: true, retryAfterSeconds: 30 }, "rate_limited", /rate limit.*try again in 30 s/],
    ["429 without Retry-After", { rateLimit: true }, "rate_limited", /rate limit.*try again later/],
    ["non-JSON", { raw: '{"uuid": "{12' }, "malformed", /not JSON/],
    ["JSON of the wrong shape", { raw: '{"uuid": 12}', status: 201 }, "malformed", /documented shape \(at uuid\)/],
    ["an answer beyond the size limit", { oversized: 200_000 }, "malformed", /larger than 65536 bytes/],
  ])("maps %s to a kind with a message that says what to do", async (_name, what, kind, message) => {
    const call = { provider: provider({ maxResponseBytes: 65_536 }), token: sim.issueToken(ALL), repo: "acme/private-app", url: HOOK_URL };
    await expectHookFailure(call, () => sim.misbehave({ path: "/repositories/acme/private-app/hooks" }, what), kind, message);
  });

  it("times out a call that gets no answer", async () => {
    await expectProfileTimeout(provider, sim.issueToken(ALL), sim);
  });

  it("refuses bad input before sending anything", async () => {
    const token = sim.issueToken(ALL);
    await expectRefusedUnsent(sim, () => [
      bitbucket.canRead(token, "not a repo"),
      bitbucket.canRead(token, "acme/.."),
      bitbucket.addDeployKey(token, "acme/../../user", "t", "ssh-ed25519 AAAA"),
      bitbucket.removeDeployKey(token, "acme/private-app", "1/../../hooks/2"),
      bitbucket.removeWebhook(token, "acme/private-app", "{not-a-uuid}/../x"),
      bitbucket.setCommitStatus(token, "acme/private-app", "e10dae22", STATUS),
      bitbucket.setCommitStatus(token, "acme/private-app", SHA, { ...STATUS, targetUrl: "javascript:alert(1)" }),
      bitbucket.listRepositories(token, 0),
      bitbucket.currentUser("tok\r\nX-Injected: 1"),
    ]);
  });
});

describe("P15: scopes", () => {
  it("P15: connecting requests exactly the documented narrow scopes, and each of them is needed", async () => {
    expect([...bitbucket.scopes]).toEqual(["account", "email", "pullrequest", "repository:admin", "webhook"]);
    const consumer = sim.consumerScopes;
    try {
      // Bitbucket takes the scopes from the consumer's checkboxes; with exactly the documented
      // ones (`repository` comes with `pullrequest`), everything Slipway does works.
      sim.consumerScopes = [...BITBUCKET_SCOPES];
      const { tokens } = await signIn();
      expect(tokens.scopes).toEqual([...BITBUCKET_SCOPES]);
      const token = tokens.accessToken;
      const { publicKey } = generateEd25519KeyPair("p15");
      const everything = async (t: string) => {
        expect((await bitbucket.currentUser(t)).email).toBe("erik@example.com");
        expect((await bitbucket.listRepositories(t, 1)).repos.length).toBe(100);
        expect(await bitbucket.canRead(t, "acme/private-app")).toBe(true);
        const key = await bitbucket.addDeployKey(t, "acme/private-app", "p15", publicKey);
        const hook = await bitbucket.addWebhook(t, "acme/private-app", HOOK_URL, "s", ["push", "pull_request"]);
        await bitbucket.setCommitStatus(t, "acme/private-app", SHA, STATUS);
        await bitbucket.removeDeployKey(t, "acme/private-app", key.id);
        await bitbucket.removeWebhook(t, "acme/private-app", hook.id);
      };
      await everything(token);

      // Without any one of them a feature breaks, with a message naming the scope.
      const without = (scope: string) => sim.issueToken(BITBUCKET_SCOPES.filter((s) => s !== scope));
      const lacks = async (attempt: Promise<unknown>, scope: string) => {
        const err = await failure(attempt);
        expect(err.kind).toBe("forbidden");
        expect(err.message).toMatch(new RegExp(`lacks the scope [^;]*${scope}`));
      };
      await lacks(bitbucket.currentUser(without("account")), "account");
      await lacks(bitbucket.currentUser(without("email")), "email");
      await lacks(bitbucket.addWebhook(without("pullrequest"), "acme/private-app", HOOK_URL, "s", ["pull_request"]), "pullrequest");
      await lacks(bitbucket.listRepositories(without("pullrequest"), 1), "repository");
      await lacks(bitbucket.addDeployKey(without("repository:admin"), "acme/private-app", "p15", publicKey), "repository:admin");
      await lacks(bitbucket.addWebhook(without("webhook"), "acme/private-app", HOOK_URL, "s", ["push"]), "webhook");

      // A consumer set up without one is caught at sign-in, naming what to tick.
      sim.consumerScopes = ["account", "email", "repository", "webhook"];
      const short = await failure(bitbucket.exchangeCode(await authorize(bitbucket), newOAuthSecret()));
      expect(short.kind).toBe("forbidden");
      expect(short.message).toMatch(/without pullrequest, repository:admin: the operator must tick exactly account, email, pullrequest, repository:admin, webhook/);
    } finally {
      sim.consumerScopes = consumer;
    }
  });
});

describe("the simulator's webhooks", () => {
  it("are signed as Bitbucket documents, pass Slipway's check and are read into the right events", async () => {
    await receiving(async (url, received) => {
      const token = sim.issueToken(ALL);
      const hook = await bitbucket.addWebhook(token, "acme/private-app", url, "whsec_sim", ["push", "pull_request"]);
      const results = [
        ...(await sim.deliver("acme/private-app", "repo:push", sim.pushPayload("acme/private-app", { branch: "trunk", hash: SHA, message: "Fix the build" }))),
        ...(await sim.deliver("acme/private-app", "pullrequest:created", sim.pullRequestPayload("acme/private-app", { id: 7, title: "Add a feature", branch: "feature", hash: SHA }))),
        ...(await sim.deliver("acme/private-app", "pullrequest:updated", sim.pullRequestPayload("acme/private-app", { id: 7, title: "Add a feature", branch: "feature", hash: SHA.slice(0, 12) }))),
      ];
      expect(results.map((r) => r.status)).toEqual([202, 202, 202]);
      const events = received.map((delivery, i) => {
        expect(delivery.body.toString()).not.toBe("");
        expect(delivery.headers["x-hub-signature"]).toBe(hubSignature("whsec_sim", delivery.body));
        expect(readDelivery("bitbucket", delivery.headers)).toEqual({ id: results[i]!.requestUuid, event: delivery.headers["x-event-key"] });
        expect(signedWith("bitbucket", delivery.headers, delivery.body, "whsec_sim")).toBe(true);
        expect(signedWith("bitbucket", delivery.headers, delivery.body, "another")).toBe(false);
        return readEvent("bitbucket", String(delivery.headers["x-event-key"]), JSON.parse(delivery.body.toString()));
      });
      expect(events[0]).toEqual({ kind: "build", pushes: [expect.objectContaining({ ref: "refs/heads/trunk", commit: SHA, message: "Fix the build", author: { name: "Erik van Zijst", email: "erik@example.com" } })] });
      expect(events[1]).toEqual({ kind: "build", pushes: [expect.objectContaining({ ref: "refs/heads/feature", commit: SHA, pullRequest: 7 })] });
      // Bitbucket's usual 12-character pull request hash cannot pin a build.
      expect(events[2]).toMatchObject({ kind: "ignored" });
      expect(await sim.deliver("acme/private-app", "issue:created", {})).toEqual([]); // not subscribed
      await bitbucket.removeWebhook(token, "acme/private-app", hook.id);
    });
    await expect(sim.sendWebhook("http://192.0.2.1/hook", "repo:push", {}, "s")).rejects.toThrow(/loopback/);
  });
});
