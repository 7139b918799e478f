import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import { tokenHash } from "../crypto/secret-box.js";
import { badRequest, notFound } from "../errors.js";
import type { Executor, Store } from "../store/database.js";
import { newId, now, randomToken } from "../store/ids.js";
import { scopeSchema, type RequestContext, type Scope } from "./permissions.js";

export const tokenSchema = z.object({
  id: z.string(),
  name: z.string(),
  scopes: z.array(scopeSchema),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
});
export type ApiToken = z.infer<typeof tokenSchema>;

const PREFIX = "slw_";

/** Personal API tokens: shown once at creation, kept only as a hash, limited by scopes and expiry. */
export class ApiTokens {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
  ) {}

  async create(ctx: RequestContext, name: string, scopes: Scope[], expiresAt: string | null): Promise<{ id: string; token: string }> {
    if (expiresAt && expiresAt <= now()) throw badRequest("expiresAt is in the past; pick a future time or leave it out");
    const id = newId("tok");
    const token = PREFIX + randomToken();
    await this.store.db.transaction().execute(async (tx) => {
      await tx
        .insertInto("api_tokens")
        .values({ id, user_id: ctx.principal.userId, name, token_hash: tokenHash(token), scopes: JSON.stringify([...new Set(scopes)]), created_at: now(), expires_at: expiresAt, revoked_at: null, last_used_at: null })
        .execute();
      await this.audit.record({ action: "token.created", ...actorOf(ctx), target: id, details: { name, scopes } }, tx);
    });
    return { id, token };
  }

  async list(userId: string): Promise<ApiToken[]> {
    const rows = await this.store.db.selectFrom("api_tokens").selectAll().where("user_id", "=", userId).orderBy("created_at", "desc").execute();
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      scopes: JSON.parse(r.scopes) as Scope[],
      createdAt: r.created_at,
      expiresAt: r.expires_at,
      revokedAt: r.revoked_at,
      lastUsedAt: r.last_used_at,
    }));
  }

  async revoke(ctx: RequestContext, id: string): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      const res = await tx.updateTable("api_tokens").set({ revoked_at: now() }).where("id", "=", id).where("user_id", "=", ctx.principal.userId).where("revoked_at", "is", null).executeTakeFirst();
      if (Number(res.numUpdatedRows) === 0) throw notFound("token");
      await this.audit.record({ action: "token.revoked", ...actorOf(ctx), target: id }, tx);
    });
  }

  /** Ends every token of a user, e.g. when a password reset shows the account may have been taken over. */
  async revokeAll(ex: Executor, userId: string): Promise<void> {
    await ex.updateTable("api_tokens").set({ revoked_at: now() }).where("user_id", "=", userId).where("revoked_at", "is", null).execute();
  }

  /** The owner and scopes of a live token, or undefined for unknown, revoked, expired or malformed ones. */
  async resolve(token: string): Promise<{ userId: string; tokenId: string; scopes: Scope[] } | undefined> {
    if (!token.startsWith(PREFIX) || token.length > 200) return undefined;
    const row = await this.store.db.selectFrom("api_tokens").selectAll().where("token_hash", "=", tokenHash(token)).executeTakeFirst();
    if (!row || row.revoked_at || (row.expires_at && row.expires_at <= now())) return undefined;
    // Recorded at most once a minute: a durable write on every request would cap throughput.
    if (!row.last_used_at || Date.now() - Date.parse(row.last_used_at) > 60_000) {
      await this.store.db.updateTable("api_tokens").set({ last_used_at: now() }).where("id", "=", row.id).execute();
    }
    return { userId: row.user_id, tokenId: row.id, scopes: JSON.parse(row.scopes) as Scope[] };
  }
}
