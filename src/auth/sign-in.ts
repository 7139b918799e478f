import type { AuditLog } from "../audit/audit-log.js";
import { tokenHash } from "../crypto/secret-box.js";
import { randomToken } from "../store/ids.js";
import { AppError } from "../errors.js";
import type { Store } from "../store/database.js";
import { verifyAgainstNothing, verifyPassword } from "./passwords.js";
import type { Sessions } from "./sessions.js";
import type { SignInThrottle } from "./sign-in-throttle.js";
import type { TwoFactor } from "./two-factor.js";
import { toUser, type User, type Users } from "./users.js";

const invalid = () => new AppError(401, "invalid_credentials", "email or password is wrong");
/** A git host sign-in waiting for the account's second factor. */
const TICKET = "signin-2fa";
const TICKET_TTL_MS = 5 * 60_000;

/** Password (argon2id), then the second factor when the user has one, then a fresh session. */
export class SignIn {
  constructor(
    private readonly store: Store,
    private readonly users: Users,
    private readonly sessions: Sessions,
    private readonly twoFactor: TwoFactor,
    private readonly throttle: SignInThrottle,
    private readonly audit: AuditLog,
  ) {}

  async signIn(input: { email: string; password: string; totp?: string }, ip: string | null): Promise<{ user: User; sessionToken: string }> {
    const email = input.email.toLowerCase();
    await this.throttle.reserve(email, ip);
    const row = await this.users.findByEmail(this.store.db, email);
    const passwordOk = row ? await verifyPassword(row.password_hash, input.password) : await verifyAgainstNothing(input.password);
    if (!row || !passwordOk) {
      await this.fail(email, row?.id ?? null, ip, "password");
      throw invalid();
    }
    if (Number(row.email_verified) !== 1) {
      throw new AppError(403, "email_unverified", "confirm your email address first: open the link in the mail we sent you");
    }
    return this.secondFactor(toUser(row), input.totp, ip, { counted: true });
  }

  /**
   * A sign-in whose first factor was an account at a git host (OAuth) rather than the password.
   * Without two-factor it is a session now; with it, a ticket good for one try within five
   * minutes, redeemed with a code by `redeemTicket` (the same code check as with a password).
   */
  async signInVerified(userId: string, ip: string | null, via: string): Promise<{ user: User; sessionToken: string } | { ticket: string }> {
    const row = await this.store.db.selectFrom("users").selectAll().where("id", "=", userId).executeTakeFirstOrThrow();
    if (Number(row.email_verified) !== 1) throw new AppError(403, "email_unverified", "confirm your email address first: open the link in the mail we sent you");
    const user = toUser(row);
    // Nothing was guessed here, so nothing was counted against the throttle to hand back.
    if (!user.twoFactor) return this.secondFactor(user, undefined, ip, { counted: false, via });
    const ticket = randomToken();
    await this.store.db.insertInto("email_tokens").values({ token_hash: tokenHash(ticket), user_id: user.id, purpose: TICKET, expires_at: new Date(Date.now() + TICKET_TTL_MS).toISOString(), used_at: null }).execute();
    return { ticket };
  }

  /** The second step of a git host sign-in of an account with two-factor: the ticket is spent whatever the code. */
  async redeemTicket(ticket: string, totp: string, ip: string | null): Promise<{ user: User; sessionToken: string }> {
    const expired = new AppError(401, "ticket_invalid", "this sign-in has expired or was used: sign in again");
    const spent = await this.store.db.transaction().execute(async (tx) => {
      const row = await tx.selectFrom("email_tokens").selectAll().where("token_hash", "=", tokenHash(ticket)).where("purpose", "=", TICKET).executeTakeFirst();
      if (!row || row.used_at || row.expires_at < new Date().toISOString()) return undefined;
      const res = await tx.updateTable("email_tokens").set({ used_at: new Date().toISOString() }).where("token_hash", "=", row.token_hash).where("used_at", "is", null).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1 ? row.user_id : undefined;
    });
    if (!spent) throw expired;
    const row = await this.store.db.selectFrom("users").selectAll().where("id", "=", spent).executeTakeFirstOrThrow();
    await this.throttle.reserve(row.email, ip);
    return this.secondFactor(toUser(row), totp, ip, { counted: true, via: "git host" });
  }

  /**
   * The code when the account has two-factor, then a fresh session; a wrong code counts as a
   * failed sign-in. `counted`: the attempt was reserved with the throttle, and a success hands it back.
   */
  private async secondFactor(user: User, totp: string | undefined, ip: string | null, { counted, via }: { counted: boolean; via?: string }): Promise<{ user: User; sessionToken: string }> {
    // Nothing inside the transaction may use another connection (SQLite has one): failures are
    // recorded after it ends, so they persist when the transaction rolls back.
    const outcome = await this.store.db.transaction().execute(async (tx) => {
      if (user.twoFactor) {
        if (!totp) return "totp_required" as const;
        if (!(await this.twoFactor.check(tx, user.id, totp, ip))) return "invalid_code" as const;
      }
      const sessionToken = await this.sessions.create(tx, user.id, ip);
      await this.audit.record({ action: "auth.signin", actorId: user.id, actor: user.email, target: user.id, ip, ...(via && { details: { via } }) }, tx);
      return { sessionToken };
    });
    if (outcome === "totp_required") throw new AppError(401, "totp_required", "enter the 6-digit code from your authenticator app (or a recovery code) as totp");
    if (outcome === "invalid_code") {
      await this.fail(user.email, user.id, ip, "totp");
      throw new AppError(401, "invalid_code", "the two-factor code is wrong or was already used; wait for the next code");
    }
    if (counted) await this.throttle.succeeded(user.email, ip);
    return { user, sessionToken: outcome.sessionToken };
  }

  private async fail(email: string, userId: string | null, ip: string | null, factor: string): Promise<void> {
    await this.audit.record({ action: "auth.signin_failed", actorId: userId, actor: email, target: userId, ip, details: { factor } });
  }
}
