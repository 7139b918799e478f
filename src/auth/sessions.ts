import { tokenHash } from "../crypto/secret-box.js";
import type { Executor, Store } from "../store/database.js";
import { inFuture, now, randomToken } from "../store/ids.js";

export interface SessionPolicy {
  idleMinutes: number;
  maxDays: number;
}

const TOUCH_EVERY_MS = 60_000;

/**
 * Browser sessions. The cookie holds a random token; the database holds only its hash, so a
 * copy of the database opens no session.
 */
export class Sessions {
  constructor(
    private readonly store: Store,
    private readonly policy: SessionPolicy,
  ) {}

  async create(ex: Executor, userId: string, ip: string | null): Promise<string> {
    const token = randomToken();
    await ex
      .insertInto("sessions")
      .values({ id_hash: tokenHash(token), user_id: userId, created_at: now(), last_seen_at: now(), expires_at: inFuture(this.policy.maxDays * 86_400_000), ip })
      .execute();
    return token;
  }

  /** The user of a live session, or undefined; ends sessions that are idle or past their lifetime. */
  async resolve(token: string): Promise<{ userId: string; hash: string } | undefined> {
    const hash = tokenHash(token);
    const row = await this.store.db.selectFrom("sessions").selectAll().where("id_hash", "=", hash).executeTakeFirst();
    if (!row) return undefined;
    const idleLimit = new Date(Date.now() - this.policy.idleMinutes * 60_000).toISOString();
    if (row.expires_at < now() || row.last_seen_at < idleLimit) {
      await this.destroy(hash);
      return undefined;
    }
    if (Date.now() - Date.parse(row.last_seen_at) > TOUCH_EVERY_MS) {
      await this.store.db.updateTable("sessions").set({ last_seen_at: now() }).where("id_hash", "=", hash).execute();
    }
    return { userId: row.user_id, hash };
  }

  async destroy(hash: string): Promise<void> {
    await this.store.db.deleteFrom("sessions").where("id_hash", "=", hash).execute();
  }

  async destroyAllOf(ex: Executor, userId: string, except?: string): Promise<void> {
    let q = ex.deleteFrom("sessions").where("user_id", "=", userId);
    if (except) q = q.where("id_hash", "!=", except);
    await q.execute();
  }
}
