import { tokenHash } from "../crypto/secret-box.js";
import { AppError } from "../errors.js";
import type { Store } from "../store/database.js";
import { now } from "../store/ids.js";

interface Limit {
  failures: number;
  windowMs: number;
  lockMs: number;
}

const perAccount: Limit = { failures: 5, windowMs: 15 * 60_000, lockMs: 15 * 60_000 };
const perIp: Limit = { failures: 30, windowMs: 15 * 60_000, lockMs: 15 * 60_000 };

/**
 * Counts failed sign-ins per account and per source address, in the database so that every
 * server process sees the same counts. Accounts are keyed by the email typed, whether or not it
 * exists, so a lock-out does not reveal which addresses have accounts.
 */
export class SignInThrottle {
  constructor(private readonly store: Store) {}

  private keys(email: string, ip: string | null): Array<[string, Limit]> {
    const keys: Array<[string, Limit]> = [[`acct:${tokenHash(email.toLowerCase())}`, perAccount]];
    if (ip) keys.push([`ip:${ip}`, perIp]);
    return keys;
  }

  async assertAllowed(email: string, ip: string | null): Promise<void> {
    for (const [key] of this.keys(email, ip)) {
      const row = await this.store.db.selectFrom("auth_throttle").selectAll().where("key", "=", key).executeTakeFirst();
      if (row?.locked_until && row.locked_until > now()) {
        const seconds = Math.ceil((Date.parse(row.locked_until) - Date.now()) / 1000);
        throw new AppError(429, "too_many_attempts", `too many failed sign-ins; try again in ${Math.ceil(seconds / 60)} minutes or reset your password`, { "retry-after": String(seconds) });
      }
    }
  }

  async recordFailure(email: string, ip: string | null): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      for (const [key, limit] of this.keys(email, ip)) {
        const row = await tx.selectFrom("auth_throttle").selectAll().where("key", "=", key).executeTakeFirst();
        const fresh = !row || Date.parse(row.window_start) < Date.now() - limit.windowMs;
        const failures = fresh ? 1 : Number(row.failures) + 1;
        const lockedUntil = failures >= limit.failures ? new Date(Date.now() + limit.lockMs).toISOString() : null;
        const values = { failures, window_start: fresh ? now() : row.window_start, locked_until: lockedUntil };
        if (row) await tx.updateTable("auth_throttle").set(values).where("key", "=", key).execute();
        else await tx.insertInto("auth_throttle").values({ key, ...values }).execute();
      }
    });
  }

  async recordSuccess(email: string): Promise<void> {
    await this.store.db.deleteFrom("auth_throttle").where("key", "=", `acct:${tokenHash(email.toLowerCase())}`).execute();
  }
}
