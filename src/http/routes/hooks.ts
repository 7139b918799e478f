import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { pushPayloadSchema, type PushPayload } from "../../builds/events.js";
import { hasSignature, readDelivery, signedWith, webhookProviders } from "../../scm/webhook-deliveries.js";
import { PayloadError, readEvent } from "../../scm/webhook-events.js";
import { AppError } from "../../errors.js";
import { parseSignature } from "../../projects/webhooks.js";
import type { Services } from "../../services.js";
import { projectParams } from "../schemas.js";

export const HOOK_BODY_LIMIT = 64 * 1024;
const ID = /^[A-Za-z0-9_-]{1,64}$/;
const DELIVERY_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const HOOK_ACTOR = "webhook";

const acceptedSchema = z.object({ accepted: z.literal(true), buildId: z.string().nullable() });

const reject = (status: number, code: string, message: string, reason = code) => Object.assign(new AppError(status, code, message), { reason });

/**
 * The generic signed webhook, `POST /api/v1/hooks/:projectId`. Public: the signature is the
 * authentication. This plugin keeps the raw body (the MAC covers its exact bytes) with a JSON
 * parser of its own, encapsulated so that no other route changes, and audits every refusal.
 */
export const hookRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { webhooks, audit } = services;
  const rawBodies = new WeakMap<FastifyRequest, Buffer>();
  /** Why a request was refused, when the answer says less than the audit log may (unknown project). */
  const reasons = new WeakMap<FastifyRequest, string>();

  // Same parsing (and prototype-poisoning refusal) as everywhere else, but the bytes are kept.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (request, body, done) => {
    rawBodies.set(request, body as Buffer);
    parseJson(request, (body as Buffer).toString("utf8"), done);
  });

  app.addHook("onError", async (request, _reply, error) => {
    const reason = (error as { reason?: unknown }).reason;
    if (typeof reason === "string") reasons.set(request, reason);
  });

  // Every refusal (bad signature, replay, oversize, malformed JSON…) is audited, rate limiting aside:
  // recording those would hand a flood the very write it is being stopped from causing.
  app.addHook("onSend", async (request, reply, payload) => {
    if (reply.statusCode < 400 || reply.statusCode >= 500 || reply.statusCode === 429) return payload;
    try {
      const { projectId } = (request.params ?? {}) as { projectId?: string };
      const target = projectId && ID.test(projectId) ? projectId : null;
      const org = target ? await services.store.db.selectFrom("projects").select("org_id").where("id", "=", target).executeTakeFirst() : undefined;
      const delivery = request.headers["x-slipway-delivery"];
      await audit.record({
        action: "webhook.rejected",
        actor: HOOK_ACTOR,
        ip: request.ip,
        orgId: org?.org_id ?? null,
        target,
        details: {
          reason: reasons.get(request) ?? codeOf(payload) ?? String(reply.statusCode),
          status: reply.statusCode,
          ...(typeof delivery === "string" && DELIVERY_ID.test(delivery) && { deliveryId: delivery }),
        },
      });
    } catch (err) {
      request.log.error({ err }, "could not audit a refused webhook");
    }
    return payload;
  });

  /**
   * A verified delivery, once: remembered by its id (a replay is refused), its pushes turned into
   * builds, audited. If starting a build fails, the delivery is forgotten so the sender may retry it.
   */
  async function accept(
    from: { projectId: string; orgId: string; ip: string; deliveryId: string },
    replayHint: string,
    pushes: PushPayload[],
    details: (buildIds: Array<string | null>) => Record<string, unknown>,
  ): Promise<Array<string | null>> {
    const { projectId, orgId, ip, deliveryId } = from;
    if (!(await webhooks.recordDelivery(projectId, deliveryId))) throw reject(409, "replayed_delivery", `delivery ${deliveryId} was received before${replayHint}`);
    const buildIds: Array<string | null> = [];
    try {
      // A provider delivery may move several refs (Bitbucket): each after the first gets an id of its own.
      for (const [i, push] of pushes.entries()) buildIds.push((await services.hooks.onPush(projectId, { ...push, deliveryId: i === 0 ? deliveryId : `${deliveryId}.${i}` })).buildId);
    } catch (err) {
      await webhooks.forgetDelivery(projectId, deliveryId);
      throw err;
    }
    await audit.record({ action: "webhook.accepted", actor: HOOK_ACTOR, ip, orgId, target: projectId, details: details(buildIds) });
    return buildIds;
  }

  app.post(
    "/hooks/:projectId",
    {
      bodyLimit: HOOK_BODY_LIMIT,
      config: { access: { kind: "public" }, rateLimit: { max: 300, timeWindow: "1 minute" } },
      schema: {
        summary: "Signed push webhook (generic)",
        description: [
          "Tells Slipway about a push. No session or token: the request is authenticated by its signature.",
          "Headers: `X-Slipway-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the project's webhook secret>` and `X-Slipway-Delivery: <unique id>` (1–128 of `A-Za-z0-9._:-`; a delivery id is accepted once per project).",
          'Body (JSON, at most 64 KiB): `{ "ref": "refs/heads/main" | "refs/tags/v1", "commit": "<40 hex>", "message"?: string, "author"?: { "name", "email" }, "pullRequest"?: number }`.',
          "An unknown project and a wrong signature get the same 401.",
        ].join("\n\n"),
        params: projectParams,
        response: { 202: acceptedSchema },
      },
    },
    async (request, reply) => {
      const { projectId } = request.params;
      const mac = parseSignature(request.headers["x-slipway-signature"]);
      if (!mac) throw reject(401, "signature_required", "sign the raw body: X-Slipway-Signature: sha256=<hex HMAC-SHA256 keyed with the project's webhook secret>");
      const deliveryHeader = request.headers["x-slipway-delivery"];
      const deliveryId = typeof deliveryHeader === "string" && DELIVERY_ID.test(deliveryHeader) ? deliveryHeader : undefined;
      if (!deliveryId) throw reject(400, "delivery_required", "send X-Slipway-Delivery: an id unique to this delivery (1–128 of A-Z a-z 0-9 . _ : -)");
      const raw = rawBodies.get(request);
      if (!raw) throw reject(400, "invalid_request", "send the push event as a JSON body with Content-Type: application/json", "body_required");

      const check = await webhooks.verify(projectId, raw, mac);
      // The same answer whether the project exists or not; the audit log keeps the real reason.
      if (!check.ok) throw reject(401, "invalid_signature", "the signature does not match this body for this URL; check the webhook secret, and sign the exact bytes you send", check.reason);

      const parsed = pushPayloadSchema.safeParse(request.body);
      if (!parsed.success) throw reject(400, "invalid_request", `the push event is malformed: ${z.prettifyError(parsed.error).replace(/\n+/g, "; ")}`, "invalid_payload");
      const [buildId = null] = await accept({ projectId, orgId: check.orgId, ip: request.ip, deliveryId }, "; send each delivery with a new X-Slipway-Delivery id", [parsed.data], ([id = null]) => ({
        deliveryId,
        ref: parsed.data.ref,
        commit: parsed.data.commit,
        buildId: id,
      }));
      return reply.code(202).send({ accepted: true, buildId });
    },
  );

  app.post(
    "/hooks/:projectId/:provider",
    {
      bodyLimit: HOOK_BODY_LIMIT,
      config: { access: { kind: "public" }, rateLimit: { max: 300, timeWindow: "1 minute" } },
      schema: {
        summary: "Webhook of a git host (GitHub, GitLab, Bitbucket, Gitea/Forgejo)",
        description: [
          "Point the repository's webhook at this URL with the project's webhook secret, content type JSON. Each provider's own signature is checked over the raw body: GitHub `X-Hub-Signature-256`, GitLab `X-Gitlab-Token`, Bitbucket `X-Hub-Signature`, Gitea `X-Gitea-Signature` (Forgejo `X-Forgejo-Signature`); its delivery id is accepted once.",
          "Pushes, tags and pull/merge requests (opened, new commits, reopened) start builds; pings and other events are answered 202 with no build. Pull request builds get no secrets.",
        ].join("\n\n"),
        params: projectParams.extend({ provider: z.enum(webhookProviders) }),
        response: { 202: acceptedSchema },
      },
    },
    async (request, reply) => {
      const { projectId, provider } = request.params;
      if (!hasSignature(provider, request.headers)) throw reject(401, "signature_required", `set the project's webhook secret as the secret of the ${provider} webhook: its deliveries are signed with it`);
      const delivery = readDelivery(provider, request.headers);
      if ("missing" in delivery) throw reject(400, "delivery_required", `a ${provider} delivery carries ${delivery.missing}; send the webhook as ${provider} does`);
      const raw = rawBodies.get(request);
      if (!raw) throw reject(400, "invalid_request", "send the event as a JSON body with Content-Type: application/json", "body_required");
      const check = await webhooks.verifyWith(projectId, (secret) => signedWith(provider, request.headers, raw, secret));
      if (!check.ok) throw reject(401, "invalid_signature", "the signature does not match this body for this URL; check the webhook's secret", check.reason);
      let event;
      try {
        event = readEvent(provider, delivery.event, request.body);
      } catch (err) {
        if (err instanceof PayloadError) throw reject(400, "invalid_request", err.message, "invalid_payload");
        throw err;
      }
      const pushes = event.kind === "build" ? event.pushes : [];
      const why = event.kind === "ignored" ? { ignored: event.why } : {};
      const buildIds = await accept({ projectId, orgId: check.orgId, ip: request.ip, deliveryId: delivery.id }, "", pushes, (ids) => ({ provider, deliveryId: delivery.id, event: delivery.event, ...why, buildIds: ids }));
      return reply.code(202).send({ accepted: true, buildId: buildIds.find((id) => id !== null) ?? null });
    },
  );
};

/** The `code` of the API's error shape, from a serialised reply. */
function codeOf(payload: unknown): string | undefined {
  if (typeof payload !== "string") return undefined;
  try {
    const code = (JSON.parse(payload) as { error?: { code?: unknown } }).error?.code;
    return typeof code === "string" ? code : undefined;
  } catch {
    return undefined;
  }
}
