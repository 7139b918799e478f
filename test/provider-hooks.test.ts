import { createHmac, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebhookProvider } from "../src/scm/webhook-deliveries.js";
import { createUser, signIn, startHarness, type Client, type Harness } from "./helpers/harness.js";

// Provider webhooks end to end through the real app: each delivery signed as its provider signs
// it, with the project's webhook secret, and its payload in the provider's documented shape.

let h: Harness;
let owner: Client;
let projectId: string;
let secret: string;

beforeAll(async () => {
  h = await startHarness();
  await createUser(h, "hooks@example.com");
  owner = await signIn(h, "hooks@example.com");
  projectId = (await owner.post("/api/v1/projects", { name: "hooked" })).json().id as string;
  secret = (await owner.post(`/api/v1/projects/${projectId}/webhook-secret`)).json().secret as string;
});
afterAll(() => h?.close());

const sha = () => randomBytes(20).toString("hex");
const mac = (key: string, body: string) => createHmac("sha256", key).update(body).digest("hex");

/** Headers a provider sends with a delivery of `event`, signed with `key`. */
function headersOf(provider: WebhookProvider, event: string, body: string, key = secret, delivery = randomBytes(8).toString("hex")): Record<string, string> {
  const signed: Record<WebhookProvider, Record<string, string>> = {
    github: { "x-hub-signature-256": `sha256=${mac(key, body)}`, "x-github-delivery": delivery, "x-github-event": event },
    gitlab: { "x-gitlab-token": key, "x-gitlab-event-uuid": delivery, "x-gitlab-event": event },
    bitbucket: { "x-hub-signature": `sha256=${mac(key, body)}`, "x-request-uuid": `{${delivery}}`, "x-event-key": event },
    gitea: { "x-gitea-signature": mac(key, body), "x-gitea-delivery": delivery, "x-gitea-event": event },
  };
  return { "content-type": "application/json", ...signed[provider] };
}

const deliver = (provider: WebhookProvider, body: string, headers: Record<string, string>, project = projectId) => h.app.inject({ method: "POST", url: `/api/v1/hooks/${project}/${provider}`, headers, payload: body });

/** A push of `commit` to main, as each provider writes it. */
function pushOf(provider: WebhookProvider, commit: string): [string, string] {
  const author = { name: "Ada", email: "ada@example.com" };
  switch (provider) {
    case "github":
    case "gitea":
      return ["push", JSON.stringify({ ref: "refs/heads/main", before: "0".repeat(40), after: commit, head_commit: { id: commit, message: `${provider} push`, author } })];
    case "gitlab":
      return ["Push Hook", JSON.stringify({ object_kind: "push", ref: "refs/heads/main", after: commit, checkout_sha: commit, commits: [{ id: commit, message: "gitlab push", author }] })];
    case "bitbucket":
      return ["repo:push", JSON.stringify({ push: { changes: [{ new: { type: "branch", name: "main", target: { hash: commit, message: "bitbucket push", author: { raw: "Ada <ada@example.com>" } } } }] } })];
  }
}

describe("provider webhooks", () => {
  for (const provider of ["github", "gitlab", "bitbucket", "gitea"] as const) {
    it(`${provider}: a signed push starts a build of its commit; a replay, a forgery and an unsigned delivery do not`, async () => {
      const commit = sha();
      const [event, body] = pushOf(provider, commit);
      const headers = headersOf(provider, event, body);
      const res = await deliver(provider, body, headers);
      expect(res.statusCode, res.body).toBe(202);
      const buildId = res.json().buildId as string;
      expect((await owner.get(`/api/v1/builds/${buildId}`)).json()).toMatchObject({ branch: "main", commit, trigger: "webhook", pullRequest: null });

      const count = async () => (await owner.get(`/api/v1/projects/${projectId}/builds`)).json().builds.length as number;
      const before = await count();
      expect((await deliver(provider, body, headers)).json().error.code).toBe("replayed_delivery");
      const forged = await deliver(provider, body, headersOf(provider, event, body, "swh_not-the-secret"));
      expect([forged.statusCode, forged.json().error.code]).toEqual([401, "invalid_signature"]);
      const signature = Object.keys(headers).find((k) => /signature|token/.test(k))!;
      const { [signature]: _, ...unsigned } = headersOf(provider, event, body);
      expect((await deliver(provider, body, unsigned)).json().error.code).toBe("signature_required");
      // GitLab's token does not cover the body; every other provider's signature does.
      if (provider !== "gitlab") expect((await deliver(provider, body.replace(commit, sha()), headersOf(provider, event, body))).json().error.code).toBe("invalid_signature");
      expect(await count()).toBe(before);
    });
  }

  it("a pull request from GitHub builds its head as an untrusted build; a ping and other events start nothing", async () => {
    const commit = sha();
    const body = JSON.stringify({ action: "opened", number: 12, pull_request: { title: "From a fork", head: { sha: commit, ref: "feature", repo: { full_name: "someone/fork" } }, base: { ref: "main" } } });
    const res = await deliver("github", body, headersOf("github", "pull_request", body));
    expect(res.statusCode).toBe(202);
    expect((await owner.get(`/api/v1/builds/${res.json().buildId}`)).json()).toMatchObject({ branch: "feature", commit, pullRequest: 12 });
    for (const [event, payload] of [["ping", { zen: "Design for failure.", hook_id: 9 }], ["issues", { action: "opened" }]] as const) {
      const text = JSON.stringify(payload);
      const answer = await deliver("github", text, headersOf("github", event, text));
      expect([answer.statusCode, answer.json()]).toEqual([202, { accepted: true, buildId: null }]);
    }
  });

  it("a project can make pull requests from forks wait for an owner's or admin's approval before anything runs", async () => {
    const gated = (await owner.post("/api/v1/projects", { name: "gated" })).json().id as string;
    const gatedSecret = (await owner.post(`/api/v1/projects/${gated}/webhook-secret`)).json().secret as string;
    expect((await owner.patch(`/api/v1/projects/${gated}`, { forkBuilds: "sometimes" })).statusCode).toBe(400);
    expect((await owner.patch(`/api/v1/projects/${gated}`, { forkBuilds: "approve" })).json().forkBuilds).toBe("approve");
    const prFrom = (headRepo: string) =>
      JSON.stringify({ action: "opened", number: 3, pull_request: { title: "Change", head: { sha: sha(), ref: "topic", repo: { full_name: headRepo } }, base: { ref: "main", repo: { full_name: "team/app" } } } });
    const send = async (body: string) => (await deliver("github", body, headersOf("github", "pull_request", body, gatedSecret), gated)).json().buildId as string;

    const fromFork = (await owner.get(`/api/v1/builds/${await send(prFrom("stranger/app"))}`)).json();
    expect(fromFork).toMatchObject({ status: "waiting-for-approval", waitingFor: { id: "0", name: "pull request from a fork" }, jobs: [{ status: "waiting-for-approval" }] });
    // Nothing of it is queued for a runner to take.
    expect(await h.services.store.db.selectFrom("jobs").select("id").where("build_id", "=", fromFork.id).where("status", "=", "queued").execute()).toEqual([]);
    // Control: a pull request from the project's own repository is not held.
    expect((await owner.get(`/api/v1/builds/${await send(prFrom("team/app"))}`)).json().status).toBe("queued");
    // GitLab says so by project ids.
    const mr = JSON.stringify({ object_kind: "merge_request", object_attributes: { iid: 4, action: "open", source_branch: "topic", source_project_id: 9, target_project_id: 1, last_commit: { id: sha(), message: "mr" } } });
    const gitlabBuild = (await deliver("gitlab", mr, headersOf("gitlab", "Merge Request Hook", mr, gatedSecret), gated)).json().buildId as string;
    expect((await owner.get(`/api/v1/builds/${gitlabBuild}`)).json().status).toBe("waiting-for-approval");

    const approved = await owner.post(`/api/v1/builds/${fromFork.id}/approvals`, { step: "0" });
    expect(approved.statusCode, approved.body).toBe(200);
    expect(approved.json()).toMatchObject({ status: "queued", waitingFor: null, approvals: [{ step: "0", approvedBy: expect.any(String) }] });
    expect(approved.json().jobs.map((j: { status: string }) => j.status)).toEqual(["success", "queued"]);
  });

  it("malformed deliveries get a 4xx that says what is wrong, and an unknown provider or project is refused", async () => {
    const missingEvent = JSON.stringify({ ref: "refs/heads/main", after: sha() });
    const { "x-github-event": _, ...noEvent } = headersOf("github", "push", missingEvent);
    const res = await deliver("github", missingEvent, noEvent);
    expect([res.statusCode, res.json().error.message]).toEqual([400, expect.stringContaining("x-github-event")]);
    const shapeless = JSON.stringify({ ref: "refs/heads/main" });
    const bad = await deliver("github", shapeless, headersOf("github", "push", shapeless));
    expect([bad.statusCode, bad.json().error.message]).toEqual([400, expect.stringContaining("documented shape")]);
    expect((await deliver("github", "{not json", headersOf("github", "push", "{not json"))).statusCode).toBe(400);
    const huge = JSON.stringify({ ref: "refs/heads/main", after: sha(), padding: "x".repeat(70 * 1024) });
    expect((await deliver("github", huge, headersOf("github", "push", huge))).statusCode).toBe(413);
    const [event, body] = pushOf("github", sha());
    expect((await h.app.inject({ method: "POST", url: `/api/v1/hooks/${projectId}/sourceforge`, headers: headersOf("github", event, body), payload: body })).statusCode).toBe(400);
    expect((await deliver("github", body, headersOf("github", event, body), "prj_doesnotexist")).json().error.code).toBe("invalid_signature");
    // Every refusal is in the audit log.
    const refused = await h.services.store.db.selectFrom("audit_log").select("action").where("action", "=", "webhook.rejected").execute();
    expect(refused.length).toBeGreaterThanOrEqual(5);
  });
});
