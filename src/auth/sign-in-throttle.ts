import { tokenHash } from "../crypto/secret-box.js";
import { AppError } from "../errors.js";
import type { Store } from "../store/database.js";
import { now } from "../store/ids.js";

interface Limit {
  attempts: number;
  windowMs: number;
  lockMs: number;
}

const perAccount: Limit = { attempts: 5, windowMs: 15 * 60_000, lockMs: 15 * 60_000 };
const perIp: Limit = { attempts: 30, windowMs: 15 * 60_000, lockMs: 15 * 60_000 };

/**
 * Limits password and code guesses per account and per source address, in the database so that
 * every server process sees the same counts. Each attempt is counted before the check runs, so
 * guesses sent in parallel cannot overtake the limit; a success takes its own attempt back.
 * Accounts are keyed by the email typed, whether or not it exists, so a lock-out does not reveal
 * which addresses have accounts.
 */
export class SignInThrottle {
  constructor(private readonly store: Store) {}

  private keys(email: string, ip: string | null): Array<[string, Limit]> {
    const keys: Array<[string, Limit]> = [[accountKey(email), perAccount]];
    if (ip) keys.push([`ip:${ip}`, perIp]);
    return keys;
  }

  /** Counts an attempt, or refuses it (429) while the account or the address is locked. */
  async reserve(email: string, ip: string | null): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      for (const [key, limit] of this.keys(email, ip)) {
        await this.store.lock(tx, `throttle:${key}`);
        const row = await tx.selectFrom("auth_throttle").selectAll().where("key", "=", key).executeTakeFirst();
        if (row?.locked_until && row.locked_until > now()) {
          const seconds = Math.ceil((Date.parse(row.locked_until) - Date.now()) / 1000);
          throw new AppError(429, "too_many_attempts", `too many failed attempts; try again in ${Math.ceil(seconds / 60)} minutes or reset your password`, { "retry-after": String(seconds) });
        }
        const fresh = !row || Date.parse(row.window_start) < Date.now() - limit.windowMs;
        const failures = fresh ? 1 : Number(row.failures) + 1;
        const values = { failures, window_start: fresh ? now() : row.window_start, locked_until: failures >= limit.attempts ? new Date(Date.now() + limit.lockMs).toISOString() : null };
        if (row) await tx.updateTable("auth_throttle").set(values).where("key", "=", key).execute();
        else await tx.insertInto("auth_throttle").values({ key, ...values }).execute();
      }
    });
  }

  /** After a successful check: the account starts afresh, and the address gets its attempt back. */
  async succeeded(email: string, ip: string | null): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("auth_throttle").where("key", "=", accountKey(email)).execute();
      if (ip) {
        await this.store.lock(tx, `throttle:ip:${ip}`);
        await tx.updateTable("auth_throttle").set((eb) => ({ failures: eb("failures", "-", 1) })).where("key", "=", `ip:${ip}`).where("failures", ">", 0).where("locked_until", "is", null).execute();
      }
    });
  }

  /** Runs a password or code check under the limits: counted first, handed back on success. */
  async guard<T>(email: string, ip: string | null, check: () => Promise<T>): Promise<T> {
    await this.reserve(email, ip);
    const result = await check();
    await this.succeeded(email, ip);
    return result;
  }
}

const accountKey = (email: string) => `acct:${tokenHash(email.toLowerCase())}`;
