import { createRequire, syncBuiltinESMExports } from "node:module";
import { randomBytes } from "node:crypto";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { PushEvent } from "../src/builds/events.js";
import { HOOK_BODY_LIMIT } from "../src/http/routes/hooks.js";
import { signBody } from "../src/projects/webhooks.js";
import { describeEachEngine } from "./helpers/engines.js";
import { createUser, signIn, startHarness, type Client, type Harness } from "./helpers/harness.js";
import { expectError } from "./helpers/web.js";

/**
 * The generic signed webhook, through the real app: HMAC-SHA256 over the raw body with the
 * project's secret, a delivery id accepted once, a 64 KiB limit. Every refusal leaves the push
 * handler uncalled and an audit entry behind; the accepted case shows the same request shape
 * goes through, so each refusal is down to the one thing changed. On SQLite and PostgreSQL, whose
 * answers to "was this delivery id new?" differ in form.
 */

let h: Harness;
let owner: Client;
let projectId: string;
let secret: string;
const pushes: Array<{ projectId: string; event: PushEvent }> = [];
let ipCounter = 1;

const rand = () => randomBytes(6).toString("hex");
const commit = () => randomBytes(20).toString("hex");
const newDelivery = () => `d-${rand()}`;
const body = (extra: Record<string, unknown> = {}) => JSON.stringify({ ref: "refs/heads/main", commit: commit(), message: "Fix the build", author: { name: "Ada", email: "ada@example.com" }, ...extra });

interface Delivery {
  project?: string;
  payload?: string | Buffer;
  /** The bytes signed; the payload unless a test signs something else. */
  signed?: string | Buffer;
  key?: string;
  /** Replaces the computed signature header; null leaves it out. */
  signature?: string | null;
  delivery?: string | null;
  contentType?: string;
}

/** One webhook request, from its own loopback address so the route's rate limit stays out of the way. */
function deliver(d: Delivery = {}): Promise<LightMyRequestResponse> {
  const payload = d.payload ?? body();
  const signature = d.signature === undefined ? signBody(d.key ?? secret, d.signed ?? payload) : d.signature;
  const delivery = d.delivery === undefined ? newDelivery() : d.delivery;
  const n = ipCounter++;
  return h.app.inject({
    method: "POST",
    url: `/api/v1/hooks/${d.project ?? projectId}`,
    remoteAddress: `127.9.${n >> 8}.${n & 255}`,
    headers: {
      "content-type": d.contentType ?? "application/json",
      ...(signature !== null && { "x-slipway-signature": signature }),
      ...(delivery !== null && { "x-slipway-delivery": delivery }),
    },
    payload,
  });
}

async function lastAudit() {
  const row = await h.services.store.db.selectFrom("audit_log").selectAll().orderBy("seq", "desc").limit(1).executeTakeFirstOrThrow();
  return { ...row, details: JSON.parse(row.details) as Record<string, unknown> };
}

/** The request is refused as said, the push handler is not called, and the refusal is audited with its reason. */
async function expectRefused(res: Promise<LightMyRequestResponse>, status: number, code: string, reason: string, target: string | null = projectId): Promise<LightMyRequestResponse> {
  const calls = pushes.length;
  const r = await res;
  expectError(r, status, code);
  expect(pushes.length, "the push handler was called").toBe(calls);
  const audit = await lastAudit();
  expect(audit).toMatchObject({ action: "webhook.rejected", actor: "webhook", target, details: { reason, status } });
  return r;
}

async function expectAccepted(res: Promise<LightMyRequestResponse>): Promise<PushEvent> {
  const calls = pushes.length;
  const r = await res;
  expect(r.statusCode, r.body).toBe(202);
  expect(r.json()).toEqual({ accepted: true, buildId: expect.stringMatching(/^bld_test_/) });
  expect(pushes.length).toBe(calls + 1);
  return pushes.at(-1)!.event;
}

describeEachEngine("signed webhook", (engine) => {
  beforeAll(async () => {
    pushes.length = 0;
    h = await startHarness({ databaseUrl: await engine.databaseUrl() });
    await createUser(h, "hook-owner@example.com");
    owner = await signIn(h, "hook-owner@example.com");
    projectId = (await owner.post("/api/v1/projects", { name: "web" })).json().id;
    const res = await owner.post(`/api/v1/projects/${projectId}/webhook-secret`);
    expect(res.statusCode, res.body).toBe(200);
    secret = res.json().secret;
    expect(res.json().url).toMatch(new RegExp(`/api/v1/hooks/${projectId}$`));
    // What builds will plug in: here it only records what it was given.
    h.services.hooks.onPush = async (pid, event) => {
      pushes.push({ projectId: pid, event });
      return { buildId: `bld_test_${pushes.length}` };
    };
  });
  afterAll(() => h?.close());

  it("accepts a correctly signed push: 202, the handler gets the parsed event, audited as webhook.accepted", async () => {
    const c = commit();
    const delivery = newDelivery();
    const event = await expectAccepted(deliver({ payload: JSON.stringify({ ref: "refs/tags/v1.2", commit: c, message: "Release", author: { name: "Ada", email: "ada@example.com" }, pullRequest: 7 }), delivery }));
    expect(pushes.at(-1)!.projectId).toBe(projectId);
    expect(event).toEqual({ ref: "refs/tags/v1.2", commit: c, message: "Release", author: { name: "Ada", email: "ada@example.com" }, pullRequest: 7, deliveryId: delivery });
    expect(await lastAudit()).toMatchObject({ action: "webhook.accepted", actor: "webhook", target: projectId, details: { deliveryId: delivery, ref: "refs/tags/v1.2", commit: c } });
  });

  it("refuses a body signed with another secret (401 invalid_signature)", async () => {
    await expectRefused(deliver({ key: `swh_${randomBytes(32).toString("hex")}` }), 401, "invalid_signature", "bad_signature");
  });

  it("refuses a body with one byte changed after signing, and accepts the original", async () => {
    const original = Buffer.from(body());
    const tampered = Buffer.from(original);
    const at = original.indexOf('"Fix') + 1;
    tampered[at] = tampered[at]! ^ 0x20; // "Fix" → "fix": still valid JSON
    expect(JSON.parse(tampered.toString())).toBeTruthy();
    await expectRefused(deliver({ payload: tampered, signed: original }), 401, "invalid_signature", "bad_signature");
    await expectAccepted(deliver({ payload: original }));
  });

  it("refuses a missing or malformed signature header (401 signature_required)", async () => {
    const payload = body();
    const good = signBody(secret, payload);
    for (const signature of [null, "", good.slice("sha256=".length), good.replace("sha256=", "sha1="), good.slice(0, -2), `${good}00`, `sha256=${"zz".repeat(32)}`]) {
      await expectRefused(deliver({ payload, signature }), 401, "signature_required", "signature_required");
    }
    await expectAccepted(deliver({ payload, signature: good.toUpperCase().replace("SHA256=", "sha256=") }));
  });

  it("refuses a missing or malformed delivery id (400 delivery_required)", async () => {
    for (const delivery of [null, "", "has space", "x".repeat(129), "ünï"]) {
      await expectRefused(deliver({ delivery }), 400, "delivery_required", "delivery_required");
    }
    await expectAccepted(deliver({ delivery: `${"x".repeat(120)}.:_-AZ09` }));
  });

  it("refuses a replayed delivery id (409 replayed_delivery), per project; a new id for the same body is accepted", async () => {
    const payload = body();
    const delivery = newDelivery();
    await expectAccepted(deliver({ payload, delivery }));
    await expectRefused(deliver({ payload, delivery }), 409, "replayed_delivery", "replayed_delivery");
    // A signed capture with its id swapped is no longer the same delivery, so it goes through:
    // replay protection is about ids, and the sender picks a new one per delivery.
    await expectAccepted(deliver({ payload, delivery: newDelivery() }));

    const other = (await owner.post("/api/v1/projects", { name: `other-${rand()}` })).json().id as string;
    const otherSecret = (await owner.post(`/api/v1/projects/${other}/webhook-secret`)).json().secret as string;
    await expectAccepted(deliver({ project: other, key: otherSecret, payload, delivery }));
  });

  it(`refuses a body over ${HOOK_BODY_LIMIT / 1024} KiB (413 body_too_large), though correctly signed; one just under passes`, async () => {
    const sized = (total: number) => {
      const base = body({ message: "" });
      return base.replace('"message":""', `"message":"${"m".repeat(total - base.length)}"`);
    };
    const over = sized(HOOK_BODY_LIMIT + 1);
    expect(over.length).toBe(HOOK_BODY_LIMIT + 1);
    await expectRefused(deliver({ payload: over }), 413, "body_too_large", "body_too_large");
    await expectAccepted(deliver({ payload: sized(HOOK_BODY_LIMIT) }));
  });

  it("refuses malformed JSON (400 invalid_json) and a payload of the wrong shape (400 invalid_request), though signed", async () => {
    for (const payload of ["{bad", '{"ref":', "", '{"__proto__":{"x":1},"ref":"refs/heads/main"}']) {
      await expectRefused(deliver({ payload }), 400, "invalid_json", "invalid_json");
    }
    for (const wrong of [{ ref: "main" }, { ref: "refs/heads/a..b" }, { ref: "refs/remotes/origin/main" }, { commit: "abc123" }, { commit: "A".repeat(40) }, { commit: "0".repeat(40) }, { pullRequest: -1 }, { author: { name: "x" } }]) {
      await expectRefused(deliver({ payload: body(wrong) }), 400, "invalid_request", "invalid_payload");
    }
    await expectRefused(deliver({ payload: "x=1", contentType: "text/plain" }), 415, "unsupported_media_type", "unsupported_media_type");
  });

  it("answers an unknown project exactly as a wrong signature: the URL does not reveal which projects exist", async () => {
    const payload = body();
    const unknown = `prj_${rand()}`;
    const a = await expectRefused(deliver({ project: unknown, payload }), 401, "invalid_signature", "unknown_project", unknown);
    expect((await lastAudit()).org_id).toBeNull();
    const b = await expectRefused(deliver({ payload, key: "not the secret" }), 401, "invalid_signature", "bad_signature");
    expect(a.body).toBe(b.body);
    // The org of a real project sees its refusals in its own audit log.
    expect((await lastAudit()).org_id).toBe((await owner.get(`/api/v1/projects/${projectId}`)).json().organization);
  });

  it("regenerating the secret: the old one stops working at once, the new one works, the change is audited", async () => {
    const old = secret;
    const res = await owner.post(`/api/v1/projects/${projectId}/webhook-secret`);
    expect(res.statusCode).toBe(200);
    expect(res.headers["cache-control"]).toBe("no-store");
    secret = res.json().secret;
    expect(secret).toMatch(/^swh_[0-9a-f]{64}$/);
    expect(secret).not.toBe(old);
    expect(await lastAudit()).toMatchObject({ action: "project.webhook_secret_regenerated", target: projectId });
    await expectRefused(deliver({ key: old }), 401, "invalid_signature", "bad_signature");
    await expectAccepted(deliver());
  });

  it("a push the handler fails on is not remembered: the sender may retry the same delivery", async () => {
    const handler = h.services.hooks.onPush;
    const delivery = newDelivery();
    const payload = body();
    h.services.hooks.onPush = async () => {
      throw new Error("builds are down");
    };
    try {
      expect((await deliver({ payload, delivery })).statusCode).toBe(500);
    } finally {
      h.services.hooks.onPush = handler;
    }
    await expectAccepted(deliver({ payload, delivery }));
  });

  it("compares signatures in constant time (crypto.timingSafeEqual), for good and bad ones alike", async () => {
    // Counts calls through node:crypto's own export, which the webhook code imports; behaviour is unchanged.
    const crypto = createRequire(import.meta.url)("node:crypto") as typeof import("node:crypto");
    const original = crypto.timingSafeEqual;
    const compared: number[] = [];
    crypto.timingSafeEqual = (a, b) => {
      compared.push(a.byteLength);
      return original(a, b);
    };
    syncBuiltinESMExports();
    try {
      await expectAccepted(deliver());
      await expectRefused(deliver({ key: "wrong" }), 401, "invalid_signature", "bad_signature");
      const unknown = `prj_${rand()}`;
      await expectRefused(deliver({ project: unknown }), 401, "invalid_signature", "unknown_project", unknown);
    } finally {
      crypto.timingSafeEqual = original;
      syncBuiltinESMExports();
    }
    expect(compared).toEqual([32, 32, 32]);
  });

  it("the audit chain of all these deliveries verifies", async () => {
    const { problems, rows } = await h.services.audit.verify();
    expect(problems).toEqual([]);
    const rejected = await h.services.store.db.selectFrom("audit_log").select("seq").where("action", "=", "webhook.rejected").execute();
    expect(rows).toBeGreaterThan(rejected.length);
    expect(rejected.length).toBeGreaterThan(20);
  });
});
