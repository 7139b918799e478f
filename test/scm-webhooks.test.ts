import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { hasSignature, readDelivery, signedWith, type Headers, type WebhookProvider } from "../src/scm/webhook-deliveries.js";
import { PayloadError, readEvent } from "../src/scm/webhook-events.js";
import { seededInts } from "./helpers/prng.js";

// Payloads below follow the shapes in each provider's webhook documentation (trimmed to what a
// delivery carries around the fields Slipway reads, plus some it must ignore).

const SHA = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
const OTHER = "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327";
const hmac = (secret: string, body: string) => createHmac("sha256", secret).update(body).digest("hex");

describe("signatures, as each provider signs", () => {
  it("GitHub: X-Hub-Signature-256, checked against GitHub's published test vector", () => {
    // From GitHub's "Validating webhook deliveries": this secret and payload give this signature.
    const headers: Headers = { "x-hub-signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17" };
    expect(signedWith("github", headers, Buffer.from("Hello, World!"), "It's a Secret to Everybody")).toBe(true);
    expect(signedWith("github", headers, Buffer.from("Hello, World?"), "It's a Secret to Everybody")).toBe(false);
    expect(signedWith("github", headers, Buffer.from("Hello, World!"), "another secret")).toBe(false);
    expect(signedWith("github", { "x-hub-signature": headers["x-hub-signature-256"] }, Buffer.from("Hello, World!"), "It's a Secret to Everybody")).toBe(false);
  });

  it("each provider's header, and nothing else, authenticates its deliveries", () => {
    const secret = "swh_secret";
    const body = Buffer.from('{"ref":"refs/heads/main"}');
    const mac = hmac(secret, body.toString());
    const good: Record<WebhookProvider, Headers[]> = {
      github: [{ "x-hub-signature-256": `sha256=${mac}` }],
      gitlab: [{ "x-gitlab-token": secret }],
      bitbucket: [{ "x-hub-signature": `sha256=${mac}` }],
      gitea: [{ "x-gitea-signature": mac }, { "x-forgejo-signature": mac }],
    };
    for (const [provider, variants] of Object.entries(good) as Array<[WebhookProvider, Headers[]]>) {
      for (const headers of variants) {
        expect(signedWith(provider, headers, body, secret), provider).toBe(true);
        expect(hasSignature(provider, headers), provider).toBe(true);
        expect(signedWith(provider, headers, Buffer.concat([body, Buffer.from(" ")]), secret), `${provider}: another body`).toBe(provider === "gitlab");
        expect(signedWith(provider, headers, body, "swh_other"), `${provider}: another secret`).toBe(false);
      }
      expect(hasSignature(provider, {}), provider).toBe(false);
      expect(signedWith(provider, {}, body, secret), `${provider}: unsigned`).toBe(false);
    }
    // Malformed signatures are refused, not thrown on.
    for (const bad of ["", "sha256=", `sha1=${mac.slice(0, 40)}`, `sha256=${mac.slice(1)}`, `sha256=${"z".repeat(64)}`]) expect(signedWith("github", { "x-hub-signature-256": bad }, body, secret), bad).toBe(false);
    expect(signedWith("gitlab", { "x-gitlab-token": `${secret}x` }, body, secret)).toBe(false);
  });

  it("reads the delivery id and event name, and says which header is missing", () => {
    expect(readDelivery("github", { "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "x-github-event": "push" })).toEqual({ id: "72d3162e-cc78-11e3-81ab-4c9367dc0958", event: "push" });
    expect(readDelivery("bitbucket", { "x-request-uuid": "{3b1c2d8e-1f2a-4b5c-9d8e-7f6a5b4c3d2e}", "x-event-key": "repo:push" })).toEqual({ id: "3b1c2d8e-1f2a-4b5c-9d8e-7f6a5b4c3d2e", event: "repo:push" });
    expect(readDelivery("gitea", { "x-forgejo-delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473", "x-forgejo-event": "push" })).toMatchObject({ event: "push" });
    expect(readDelivery("gitlab", { "x-gitlab-event": "Push Hook" })).toEqual({ missing: "x-gitlab-event-uuid" });
    expect(readDelivery("github", { "x-github-delivery": "a b", "x-github-event": "push" })).toEqual({ missing: "x-github-delivery" });
    expect(readDelivery("github", { "x-github-delivery": "abc" })).toEqual({ missing: "x-github-event" });
  });
});

describe("events, as each provider describes them", () => {
  it("GitHub: push, tag, pull request opened/synchronize/reopened, ping; a deleted branch and other events are ignored", () => {
    const push = { ref: "refs/heads/main", before: OTHER, after: SHA, created: false, deleted: false, forced: false, repository: { full_name: "octo/app" }, head_commit: { id: SHA, message: "Fix the build", author: { name: "Mona", email: "mona@example.com", username: "mona" } } };
    expect(readEvent("github", "push", push)).toEqual({ kind: "build", pushes: [{ ref: "refs/heads/main", commit: SHA, message: "Fix the build", author: { name: "Mona", email: "mona@example.com" } }] });
    expect(readEvent("github", "push", { ...push, ref: "refs/tags/v1.0.0" })).toMatchObject({ kind: "build", pushes: [{ ref: "refs/tags/v1.0.0" }] });
    expect(readEvent("github", "push", { ...push, deleted: true, after: "0".repeat(40), head_commit: null })).toMatchObject({ kind: "ignored" });
    const pr = { action: "synchronize", number: 42, pull_request: { number: 42, title: "Add a feature", head: { sha: SHA, ref: "feature", repo: { full_name: "fork/app" } }, base: { ref: "main", repo: { full_name: "octo/app" } } } };
    expect(readEvent("github", "pull_request", pr)).toEqual({ kind: "build", pushes: [{ ref: "refs/heads/feature", commit: SHA, message: "Add a feature", pullRequest: 42, fromFork: true }] });
    const sameRepo = { ...pr, pull_request: { ...pr.pull_request, head: { ...pr.pull_request.head, repo: { full_name: "octo/app" } } } };
    expect(readEvent("github", "pull_request", sameRepo)).toMatchObject({ pushes: [{ fromFork: false }] });
    expect(readEvent("github", "pull_request", { ...pr, action: "closed" })).toMatchObject({ kind: "ignored" });
    expect(readEvent("github", "ping", { zen: "Keep it logically awesome.", hook_id: 1 })).toEqual({ kind: "ping" });
    expect(readEvent("github", "issues", { action: "opened" })).toMatchObject({ kind: "ignored", why: expect.stringContaining("issues") });
  });

  it("GitLab: push and tag push by checkout_sha, merge requests only when they bring commits", () => {
    const push = { object_kind: "push", before: OTHER, after: SHA, ref: "refs/heads/main", checkout_sha: SHA, user_name: "Jane", project: { path_with_namespace: "team/app" }, commits: [{ id: SHA, message: "Update README\n", author: { name: "Jane Doe", email: "jane@example.com" } }], total_commits_count: 1 };
    expect(readEvent("gitlab", "Push Hook", push)).toEqual({ kind: "build", pushes: [{ ref: "refs/heads/main", commit: SHA, message: "Update README\n", author: { name: "Jane Doe", email: "jane@example.com" } }] });
    expect(readEvent("gitlab", "Tag Push Hook", { object_kind: "tag_push", ref: "refs/tags/v2", after: SHA, checkout_sha: SHA, commits: [] })).toEqual({ kind: "build", pushes: [{ ref: "refs/tags/v2", commit: SHA }] });
    expect(readEvent("gitlab", "Push Hook", { ...push, after: "0".repeat(40), checkout_sha: null })).toMatchObject({ kind: "ignored" });
    const mr = { object_kind: "merge_request", object_attributes: { iid: 7, action: "update", oldrev: OTHER, source_branch: "feature", target_branch: "main", last_commit: { id: SHA, message: "Work", author: { name: "Jane Doe", email: "jane@example.com" } } } };
    expect(readEvent("gitlab", "Merge Request Hook", mr)).toMatchObject({ kind: "build", pushes: [{ ref: "refs/heads/feature", commit: SHA, pullRequest: 7 }] });
    const { oldrev: _, ...titleOnly } = mr.object_attributes;
    expect(readEvent("gitlab", "Merge Request Hook", { ...mr, object_attributes: titleOnly })).toMatchObject({ kind: "ignored" });
    expect(readEvent("gitlab", "Merge Request Hook", { ...mr, object_attributes: { ...titleOnly, action: "open" } })).toMatchObject({ kind: "build" });
  });

  it("Bitbucket: every branch or tag a push moved; deleted ones and short-id pull requests are not built", () => {
    const target = (hash: string) => ({ type: "commit", hash, message: "Ship it\n", author: { raw: "Ada Lovelace <ada@example.com>" } });
    const push = { push: { changes: [{ old: null, new: { type: "branch", name: "main", target: target(SHA) } }, { old: { type: "tag", name: "old" }, new: null }, { new: { type: "tag", name: "v3", target: target(OTHER) } }] }, repository: { full_name: "team/app" } };
    expect(readEvent("bitbucket", "repo:push", push)).toEqual({
      kind: "build",
      pushes: [
        { ref: "refs/heads/main", commit: SHA, message: "Ship it\n", author: { name: "Ada Lovelace", email: "ada@example.com" } },
        { ref: "refs/tags/v3", commit: OTHER, message: "Ship it\n", author: { name: "Ada Lovelace", email: "ada@example.com" } },
      ],
    });
    expect(readEvent("bitbucket", "repo:push", { push: { changes: [{ new: null }] } })).toMatchObject({ kind: "ignored" });
    const pr = { pullrequest: { id: 3, title: "Feature", source: { branch: { name: "feature" }, commit: { hash: SHA.slice(0, 12) } } } };
    expect(readEvent("bitbucket", "pullrequest:updated", pr)).toMatchObject({ kind: "ignored", why: expect.stringContaining("shortened") });
  });

  it("Gitea and Forgejo: push and pull request opened/synchronized/reopened", () => {
    const push = { ref: "refs/heads/dev", before: OTHER, after: SHA, commits: [{ id: SHA, message: "wip", author: { name: "Gitea", email: "gitea@example.com" } }], head_commit: { id: SHA, message: "wip", author: { name: "Gitea", email: "gitea@example.com" } } };
    expect(readEvent("gitea", "push", push)).toMatchObject({ kind: "build", pushes: [{ ref: "refs/heads/dev", commit: SHA, message: "wip" }] });
    const pr = { action: "synchronized", number: 5, pull_request: { title: "PR", head: { sha: SHA, ref: "topic" }, base: { ref: "main" } } };
    expect(readEvent("gitea", "pull_request", pr)).toMatchObject({ kind: "build", pushes: [{ pullRequest: 5, ref: "refs/heads/topic" }] });
    expect(readEvent("gitea", "pull_request", { ...pr, action: "synchronize" })).toMatchObject({ kind: "ignored" });
  });

  it("a payload without the documented shape, or with refs and commits no build could use, is a PayloadError", () => {
    for (const [provider, event, body] of [
      ["github", "push", { ref: "refs/heads/main" }],
      ["github", "push", { ref: "refs/heads/../x", after: SHA }],
      ["github", "push", { ref: "refs/heads/main", after: "nothex" }],
      ["github", "pull_request", { action: "opened", number: 1, pull_request: { head: { sha: SHA, ref: "a b" } } }],
      ["gitlab", "Push Hook", "not an object"],
      ["bitbucket", "repo:push", { push: { changes: "x" } }],
      ["gitea", "push", null],
    ] as Array<[WebhookProvider, string, unknown]>) {
      expect(() => readEvent(provider, event, body), `${provider} ${event} ${JSON.stringify(body)}`).toThrow(PayloadError);
    }
  });
});

describe("fuzzing the event reader", () => {
  it("3000 mutated deliveries of every provider: each is an event or a PayloadError, never anything else", () => {
    const random = seededInts(20261123);
    const author = { name: "A", email: "a@example.com" };
    const seeds: Array<[WebhookProvider, string, unknown]> = [
      ["github", "push", { ref: "refs/heads/main", after: SHA, head_commit: { id: SHA, message: "m", author } }],
      ["github", "pull_request", { action: "opened", number: 1, pull_request: { head: { sha: SHA, ref: "x", repo: { full_name: "a/b" } }, base: { repo: { full_name: "a/b" } } } }],
      ["gitlab", "Merge Request Hook", { object_attributes: { iid: 1, action: "update", oldrev: OTHER, source_branch: "x", source_project_id: 1, target_project_id: 2, last_commit: { id: SHA } } }],
      ["bitbucket", "repo:push", { push: { changes: [{ new: { type: "branch", name: "main", target: { hash: SHA, author: { raw: "A <a@example.com>" } } } }] } }],
      ["gitea", "pull_request", { action: "synchronized", number: 2, pull_request: { head: { sha: SHA, ref: "y" } } }],
    ];
    const oddValues: unknown[] = [null, 0, -1, 2 ** 53, "", "refs/heads/", "0".repeat(40), "x".repeat(5000), [], {}, true, "\u0000", { __proto__: { polluted: true } }];
    const mutate = (value: unknown): unknown => {
      if (value === null || typeof value !== "object" || random(4) === 0) return oddValues[random(oddValues.length)];
      const copy: Record<string, unknown> = Array.isArray(value) ? ({ ...value } as Record<string, unknown>) : { ...(value as Record<string, unknown>) };
      const keys = Object.keys(copy);
      if (keys.length === 0) return copy;
      const key = keys[random(keys.length)]!;
      if (random(5) === 0) delete copy[key];
      else copy[key] = mutate(copy[key]);
      return Array.isArray(value) ? Object.values(copy) : copy;
    };
    let built = 0;
    for (let i = 0; i < 3000; i++) {
      const [provider, event, body] = seeds[random(seeds.length)]!;
      const input = mutate(body);
      try {
        const result = readEvent(provider, event, input);
        if (result.kind === "build") for (const p of result.pushes) expect(p.commit).toMatch(/^[0-9a-f]{40}$/), built++;
      } catch (err) {
        if (!(err instanceof PayloadError)) throw new Error(`${provider} ${event} ${JSON.stringify(input)?.slice(0, 300)}: ${String(err)}`);
      }
    }
    // The mutations leave many deliveries intact enough to build: the fuzzer reached the builders.
    expect(built).toBeGreaterThan(100);
  });
});
