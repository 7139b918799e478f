import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import { tokenHash } from "../crypto/secret-box.js";
import { AppError, conflict, notFound } from "../errors.js";
import { tokenLink, type Mailer } from "../mail/mailer.js";
import type { Executor, Store, Tx } from "../store/database.js";
import { inFuture, newId, now, randomToken } from "../store/ids.js";
import type { UsersTable } from "../store/schema.js";
import { hashPassword, verifyPassword } from "./passwords.js";
import type { RequestContext } from "./permissions.js";

export const emailSchema = z
  .string()
  .max(254)
  .email("not an email address")
  .transform((e) => e.toLowerCase());
export const displayNameSchema = z.string().trim().min(1).max(100);

/** A user as the API shows them (to themselves); the internal record adds emailVerified. */
export const userSchema = z.object({
  id: z.string(),
  email: z.string(),
  name: z.string(),
  isAdmin: z.boolean(),
  twoFactor: z.boolean(),
  createdAt: z.string(),
});
export type User = z.infer<typeof userSchema> & { emailVerified: boolean };

export const toUser = (r: UsersTable): User => ({
  id: r.id,
  email: r.email,
  name: r.name,
  isAdmin: Number(r.is_admin) === 1,
  emailVerified: Number(r.email_verified) === 1,
  twoFactor: r.totp_secret !== null,
  createdAt: r.created_at,
});

const VERIFY_TTL_MS = 24 * 3600 * 1000;

function newUserRow(id: string, input: { email: string; name?: string; isAdmin: boolean; verified: boolean }, passwordHash: string): UsersTable {
  return {
    id,
    email: input.email.toLowerCase(),
    name: input.name ?? input.email.split("@")[0]!,
    password_hash: passwordHash,
    is_admin: input.isAdmin ? 1 : 0,
    email_verified: input.verified ? 1 : 0,
    totp_secret: null,
    totp_pending: null,
    totp_last_counter: null,
    created_at: now(),
  };
}
const RESET_TTL_MS = 3600 * 1000;

/** User accounts: creation by an operator, self sign-up with email verification, passwords. */
export class Users {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly mailer: Mailer,
    private readonly publicUrl: () => string,
  ) {}

  async create(input: { email: string; name?: string; password: string; isAdmin: boolean; verified: boolean }, by: { actor: string; actorId?: string; ip?: string | null }): Promise<User> {
    const row = newUserRow(newId("usr"), input, await hashPassword(input.password));
    await this.store.db.transaction().execute(async (tx) => {
      if (await this.findByEmail(tx, row.email)) throw conflict(`a user with email ${row.email} already exists`);
      await tx.insertInto("users").values(row).execute();
      await this.audit.record({ action: input.verified ? "user.created" : "auth.signup", actorId: by.actorId ?? row.id, actor: by.actor, target: row.id, ip: by.ip ?? null, details: { admin: input.isAdmin } }, tx);
    });
    return toUser(row);
  }

  /**
   * Self sign-up. The answer is the same whether or not the address is taken; the owner of a
   * verified address gets a mail saying someone tried, instead of a verification link. An
   * address never verified is claimed afresh, so nobody can squat on someone else's address.
   */
  async signUp(input: { email: string; name?: string; password: string }, ip: string | null): Promise<void> {
    const email = input.email.toLowerCase();
    const hashed = await hashPassword(input.password);
    const token = randomToken();
    const taken = await this.store.db.transaction().execute(async (tx) => {
      const existing = await this.findByEmail(tx, email);
      if (existing && Number(existing.email_verified) === 1) return true;
      const userId = existing?.id ?? newId("usr");
      if (existing) {
        await tx.updateTable("users").set({ password_hash: hashed, name: input.name ?? existing.name }).where("id", "=", userId).execute();
        await tx.deleteFrom("email_tokens").where("user_id", "=", userId).execute();
      } else {
        await tx.insertInto("users").values(newUserRow(userId, { ...input, email, isAdmin: false, verified: false }, hashed)).execute();
      }
      await tx.insertInto("email_tokens").values({ token_hash: tokenHash(token), user_id: userId, purpose: "verify", expires_at: inFuture(VERIFY_TTL_MS), used_at: null }).execute();
      await this.audit.record({ action: "auth.signup", actorId: userId, actor: email, target: userId, ip, details: { reclaimed: existing !== undefined } }, tx);
      return false;
    });
    await this.mailer.send(
      taken
        ? {
            to: email,
            subject: "Slipway: someone tried to sign up with your address",
            text: `Someone tried to create a Slipway account with ${email}, which already has one.\nIf this was you, sign in at ${this.publicUrl()}/ instead, or reset your password there. If not, you can ignore this mail.\n`,
          }
        : {
            to: email,
            subject: "Slipway: confirm your email address",
            text: `Confirm your address to finish signing up:\n\n${tokenLink(this.publicUrl(), "verify-email", token)}\n\nThe link works once, for 24 hours.\n`,
          },
    );
  }

  async verifyEmail(token: string, ip: string | null): Promise<User> {
    return this.store.db.transaction().execute(async (tx) => {
      const userId = await this.spendEmailToken(tx, token, "verify", "this verification link is unknown, used or expired; sign up again to get a new one");
      await tx.updateTable("users").set({ email_verified: 1 }).where("id", "=", userId).execute();
      const user = await this.byId(tx, userId);
      await this.audit.record({ action: "auth.email_verified", actorId: user.id, actor: user.email, target: user.id, ip }, tx);
      return user;
    });
  }

  /** Mails a single-use reset link when the address has an account; callers answer the same either way. */
  async requestPasswordReset(email: string): Promise<void> {
    const user = await this.findByEmail(this.store.db, email);
    if (!user) return;
    const token = randomToken();
    await this.store.db
      .insertInto("email_tokens")
      .values({ token_hash: tokenHash(token), user_id: user.id, purpose: "reset", expires_at: inFuture(RESET_TTL_MS), used_at: null })
      .execute();
    this.mailer.sendLater({
      to: user.email,
      subject: "Slipway: reset your password",
      text: `Someone asked to reset the password of your Slipway account.\nTo choose a new one, open:\n\n${tokenLink(this.publicUrl(), "reset-password", token)}\n\nThe link works once, for an hour. If it was not you, ignore this mail: your password stays as it is.\n`,
    });
  }

  /** Sets a new password from a reset link; returns the user, whose sessions the caller ends. */
  async resetPassword(token: string, password: string, ip: string | null): Promise<User> {
    const hashed = await hashPassword(password);
    return this.store.db.transaction().execute(async (tx) => {
      const userId = await this.spendEmailToken(tx, token, "reset", "this reset link is unknown, used or expired; ask for a new one");
      // The link arrived at the address, which proves it as well as a verification link would.
      await tx.updateTable("users").set({ password_hash: hashed, email_verified: 1 }).where("id", "=", userId).execute();
      const user = await this.byId(tx, userId);
      await this.audit.record({ action: "auth.password_changed", actorId: user.id, actor: user.email, target: user.id, ip, details: { via: "reset" } }, tx);
      return user;
    });
  }

  private async spendEmailToken(tx: Tx, token: string, purpose: "verify" | "reset", invalid: string): Promise<string> {
    const row = await tx.selectFrom("email_tokens").selectAll().where("token_hash", "=", tokenHash(token)).where("purpose", "=", purpose).executeTakeFirst();
    if (!row || row.used_at || row.expires_at < now()) throw new AppError(400, "token_invalid", invalid);
    const spent = await tx.updateTable("email_tokens").set({ used_at: now() }).where("token_hash", "=", row.token_hash).where("used_at", "is", null).executeTakeFirst();
    if (Number(spent.numUpdatedRows) !== 1) throw new AppError(400, "token_invalid", invalid);
    return row.user_id;
  }

  /** For actions that must be confirmed with the password even within a signed-in session. */
  async confirmPassword(userId: string, password: string): Promise<void> {
    const row = await this.store.db.selectFrom("users").select("password_hash").where("id", "=", userId).executeTakeFirstOrThrow();
    if (!(await verifyPassword(row.password_hash, password))) throw new AppError(403, "invalid_credentials", "the current password is wrong");
  }

  /** The name other members see (on builds, in member lists); the email stays as it is. */
  async rename(ctx: RequestContext, name: string): Promise<User> {
    await this.store.db.transaction().execute(async (tx) => {
      await tx.updateTable("users").set({ name }).where("id", "=", ctx.principal.userId).execute();
      await this.audit.record({ action: "auth.profile_changed", ...actorOf(ctx), target: ctx.principal.userId, details: { name } }, tx);
    });
    return this.byId(this.store.db, ctx.principal.userId);
  }

  async changePassword(ctx: RequestContext, current: string, next: string): Promise<void> {
    await this.confirmPassword(ctx.principal.userId, current);
    const hashed = await hashPassword(next);
    await this.store.db.transaction().execute(async (tx) => {
      await tx.updateTable("users").set({ password_hash: hashed }).where("id", "=", ctx.principal.userId).execute();
      await this.audit.record({ action: "auth.password_changed", ...actorOf(ctx), target: ctx.principal.userId }, tx);
    });
  }

  async any(): Promise<boolean> {
    return (await this.store.db.selectFrom("users").select("id").limit(1).execute()).length > 0;
  }

  async findByEmail(ex: Executor, email: string): Promise<UsersTable | undefined> {
    return ex.selectFrom("users").selectAll().where("email", "=", email.toLowerCase()).executeTakeFirst();
  }

  async byId(ex: Executor, id: string): Promise<User> {
    const row = await ex.selectFrom("users").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row) throw notFound("user");
    return toUser(row);
  }

  async describe(ids: string[]): Promise<Map<string, { name: string; email: string }>> {
    if (ids.length === 0) return new Map();
    const rows = await this.store.db.selectFrom("users").select(["id", "name", "email"]).where("id", "in", ids).execute();
    return new Map(rows.map((r) => [r.id, { name: r.name, email: r.email }]));
  }
}
