import type { AuditLog } from "../audit/audit-log.js";
import { AppError } from "../errors.js";
import type { Store } from "../store/database.js";
import { verifyAgainstNothing, verifyPassword } from "./passwords.js";
import type { Sessions } from "./sessions.js";
import type { SignInThrottle } from "./sign-in-throttle.js";
import type { TwoFactor } from "./two-factor.js";
import { toUser, type User, type Users } from "./users.js";

const invalid = () => new AppError(401, "invalid_credentials", "email or password is wrong");

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
    const user = toUser(row);
    // Nothing inside the transaction may use another connection (SQLite has one): failures are
    // recorded after it ends, so they persist when the transaction rolls back.
    const outcome = await this.store.db.transaction().execute(async (tx) => {
      if (user.twoFactor) {
        if (!input.totp) return "totp_required" as const;
        if (!(await this.twoFactor.check(tx, user.id, input.totp, ip))) return "invalid_code" as const;
      }
      const sessionToken = await this.sessions.create(tx, user.id, ip);
      await this.audit.record({ action: "auth.signin", actorId: user.id, actor: user.email, target: user.id, ip }, tx);
      return { sessionToken };
    });
    if (outcome === "totp_required") throw new AppError(401, "totp_required", "enter the 6-digit code from your authenticator app (or a recovery code) as totp");
    if (outcome === "invalid_code") {
      await this.fail(email, user.id, ip, "totp");
      throw new AppError(401, "invalid_code", "the two-factor code is wrong or was already used; wait for the next code");
    }
    await this.throttle.succeeded(email, ip);
    return { user, sessionToken: outcome.sessionToken };
  }

  private async fail(email: string, userId: string | null, ip: string | null, factor: string): Promise<void> {
    await this.audit.record({ action: "auth.signin_failed", actorId: userId, actor: email, target: userId, ip, details: { factor } });
  }
}
