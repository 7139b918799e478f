import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import type { Owner, SecretBox } from "../crypto/secret-box.js";
import { notFound } from "../errors.js";
import type { Executor, Store } from "../store/database.js";
import { now } from "../store/ids.js";

const FIELD = "webhook_secret";
/** Delivery ids are remembered this long; a sender retries within minutes, not weeks. */
export const DELIVERY_RETENTION_MS = 7 * 24 * 3600 * 1000;
const ownerOf = (projectId: string): Owner => ({ kind: "project", id: projectId });

export type SignatureCheck = { ok: true; orgId: string } | { ok: false; reason: "unknown_project" | "no_webhook_secret" | "bad_signature"; orgId: string | null };

export const newWebhookSecret = (): string => `swh_${randomBytes(32).toString("hex")}`;

/** `sha256=<64 hex>` → the 32 MAC bytes; anything else → undefined. */
export function parseSignature(header: string | string[] | undefined): Buffer | undefined {
  const m = typeof header === "string" ? /^sha256=([0-9a-fA-F]{64})$/.exec(header.trim()) : null;
  return m ? Buffer.from(m[1]!, "hex") : undefined;
}

export function signBody(secret: string, body: Buffer | string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/**
 * The generic signed webhook's side of a project: its secret (sealed by the secret box, shown
 * once when made) and the delivery ids already seen, which make a captured request useless to
 * replay.
 */
export class Webhooks {
  /** MACs for unknown projects are computed with this, so every answer costs the same work. */
  private readonly decoy = randomBytes(32);

  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly audit: AuditLog,
  ) {}

  /**
   * Made with the project; nobody sees it until they regenerate it (there is no read-back). Linking
   * a repository passes the fresh secret it gave the provider's webhook.
   */
  async create(ex: Executor, projectId: string, secret = newWebhookSecret()): Promise<string> {
    await ex
      .insertInto("webhook_secrets")
      .values({ project_id: projectId, secret: await this.box.seal(ex, ownerOf(projectId), FIELD, secret), created_at: now() })
      .execute();
    return secret;
  }

  /** A new secret replaces the old one at once; returned to the caller this one time. */
  async regenerate(ctx: RequestContext, projectId: string): Promise<string> {
    return this.store.db.transaction().execute(async (tx) => {
      const project = await tx.selectFrom("projects").select(["id", "org_id"]).where("id", "=", projectId).executeTakeFirst();
      if (!project) throw notFound("project");
      await this.box.ensureDataKey(tx, ownerOf(projectId));
      await tx.deleteFrom("webhook_secrets").where("project_id", "=", projectId).execute();
      const secret = await this.create(tx, projectId);
      await this.audit.record({ action: "project.webhook_secret_regenerated", ...actorOf(ctx), orgId: project.org_id, target: projectId }, tx);
      return secret;
    });
  }

  /** Whether `mac` is HMAC-SHA256(project's secret, raw body), compared in constant time. */
  async verify(projectId: string, raw: Buffer, mac: Buffer): Promise<SignatureCheck> {
    return this.verifyWith(projectId, (secret) => {
      const expected = createHmac("sha256", secret).update(raw).digest();
      return mac.length === expected.length && timingSafeEqual(expected, mac);
    });
  }

  /**
   * Whether `signed(secret)` holds for the project's webhook secret: the check of a provider's own
   * signature scheme. Unknown projects are checked against a decoy, so every answer costs the same.
   */
  async verifyWith(projectId: string, signed: (secret: string | Buffer) => boolean): Promise<SignatureCheck> {
    const row = await this.store.db
      .selectFrom("projects")
      .leftJoin("webhook_secrets", "webhook_secrets.project_id", "projects.id")
      .select(["projects.org_id", "webhook_secrets.secret"])
      .where("projects.id", "=", projectId)
      .executeTakeFirst();
    const secret = row?.secret ? await this.box.open(this.store.db, ownerOf(projectId), FIELD, row.secret) : this.decoy;
    const equal = signed(secret);
    if (!row) return { ok: false, reason: "unknown_project", orgId: null };
    if (!row.secret) return { ok: false, reason: "no_webhook_secret", orgId: row.org_id };
    return equal ? { ok: true, orgId: row.org_id } : { ok: false, reason: "bad_signature", orgId: row.org_id };
  }

  /** Remembers a delivery id; false when the project has seen it already (a replay or a duplicate). */
  async recordDelivery(projectId: string, deliveryId: string): Promise<boolean> {
    const db = this.store.db;
    await db.deleteFrom("webhook_deliveries").where("received_at", "<", new Date(Date.now() - DELIVERY_RETENTION_MS).toISOString()).execute();
    const res = await db
      .insertInto("webhook_deliveries")
      .values({ project_id: projectId, delivery_id: deliveryId, received_at: now() })
      .onConflict((oc) => oc.columns(["project_id", "delivery_id"]).doNothing())
      .executeTakeFirst();
    return Number(res.numInsertedOrUpdatedRows ?? 0n) === 1;
  }

  /** Lets a sender retry a delivery that the server failed to act on. */
  async forgetDelivery(projectId: string, deliveryId: string): Promise<void> {
    await this.store.db.deleteFrom("webhook_deliveries").where("project_id", "=", projectId).where("delivery_id", "=", deliveryId).execute();
  }

  /** The plaintext secret, for tests and tools on the server; never for the API beyond regenerate. */
  async reveal(projectId: string): Promise<string | undefined> {
    const row = await this.store.db.selectFrom("webhook_secrets").select("secret").where("project_id", "=", projectId).executeTakeFirst();
    return row && this.box.openString(this.store.db, ownerOf(projectId), FIELD, row.secret);
  }

  async deleteAll(ex: Executor, projectId: string): Promise<void> {
    await ex.deleteFrom("webhook_deliveries").where("project_id", "=", projectId).execute();
    await ex.deleteFrom("webhook_secrets").where("project_id", "=", projectId).execute();
  }
}
