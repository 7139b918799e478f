import { randomBytes } from "node:crypto";
import * as OTPAuth from "otpauth";
import QRCode from "qrcode";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import { tokenHash, type SecretBox } from "../crypto/secret-box.js";
import { AppError, badRequest } from "../errors.js";
import type { Store, Tx } from "../store/database.js";
import { now } from "../store/ids.js";
import type { RequestContext } from "./permissions.js";

const RECOVERY_CODES = 10;
const FIELD = "totp";

function totpFor(secret: string, label: string): OTPAuth.TOTP {
  return new OTPAuth.TOTP({ issuer: "Slipway", label, algorithm: "SHA1", digits: 6, period: 30, secret: OTPAuth.Secret.fromBase32(secret) });
}

function recoveryCode(): string {
  const raw = randomBytes(10).toString("hex");
  return `${raw.slice(0, 5)}-${raw.slice(5, 10)}-${raw.slice(10, 15)}-${raw.slice(15)}`;
}

const normaliseRecovery = (code: string) => code.trim().toLowerCase().replace(/[^0-9a-f]/g, "");

/**
 * TOTP two-factor authentication. The shared secret is sealed under the user's data key; a code
 * is accepted once (its time step is remembered), and recovery codes are kept only as hashes.
 */
export class TwoFactor {
  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly audit: AuditLog,
  ) {}

  async begin(ctx: RequestContext): Promise<{ otpauthUri: string; secret: string; qrSvg: string }> {
    const owner = { kind: "user", id: ctx.principal.userId } as const;
    const user = await this.store.db.selectFrom("users").select(["email", "totp_secret"]).where("id", "=", owner.id).executeTakeFirstOrThrow();
    if (user.totp_secret) throw new AppError(409, "2fa_already_enabled", "two-factor authentication is already on; turn it off first to set up a new device");
    const secret = new OTPAuth.Secret({ size: 20 }).base32;
    await this.store.db.transaction().execute(async (tx) => {
      await this.box.ensureDataKey(tx, owner);
      await tx.updateTable("users").set({ totp_pending: await this.box.seal(tx, owner, FIELD, secret) }).where("id", "=", owner.id).execute();
    });
    const otpauthUri = totpFor(secret, user.email).toString();
    return { otpauthUri, secret, qrSvg: await QRCode.toString(otpauthUri, { type: "svg", margin: 1 }) };
  }

  async confirm(ctx: RequestContext, code: string): Promise<{ recoveryCodes: string[] }> {
    const owner = { kind: "user", id: ctx.principal.userId } as const;
    return this.store.db.transaction().execute(async (tx) => {
      const user = await tx.selectFrom("users").select(["email", "totp_pending"]).where("id", "=", owner.id).executeTakeFirstOrThrow();
      if (!user.totp_pending) throw badRequest("start two-factor set-up first (POST /api/v1/me/2fa)", "2fa_not_started");
      const secret = await this.box.openString(tx, owner, FIELD, user.totp_pending);
      const counter = this.match(secret, user.email, code, null);
      if (counter === undefined) throw new AppError(400, "invalid_code", "the code does not match; check the time on your device and enter the current code");
      const codes = Array.from({ length: RECOVERY_CODES }, recoveryCode);
      await tx.deleteFrom("recovery_codes").where("user_id", "=", owner.id).execute();
      await tx.insertInto("recovery_codes").values(codes.map((c) => ({ user_id: owner.id, code_hash: tokenHash(normaliseRecovery(c)), used_at: null }))).execute();
      await tx.updateTable("users").set({ totp_secret: await this.box.seal(tx, owner, FIELD, secret), totp_pending: null, totp_last_counter: counter }).where("id", "=", owner.id).execute();
      await this.audit.record({ action: "auth.2fa_enabled", ...actorOf(ctx), target: owner.id }, tx);
      return { recoveryCodes: codes };
    });
  }

  async disable(ctx: RequestContext, code: string): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      if (!(await this.check(tx, ctx.principal.userId, code))) throw new AppError(400, "invalid_code", "enter a current code from your authenticator app or an unused recovery code");
      await tx.updateTable("users").set({ totp_secret: null, totp_pending: null, totp_last_counter: null }).where("id", "=", ctx.principal.userId).execute();
      await tx.deleteFrom("recovery_codes").where("user_id", "=", ctx.principal.userId).execute();
      await this.audit.record({ action: "auth.2fa_disabled", ...actorOf(ctx), target: ctx.principal.userId }, tx);
    });
  }

  /**
   * True when `code` is a current TOTP code not used before, or an unused recovery code (which
   * is then spent). Runs in the caller's transaction so a code cannot be used twice concurrently.
   */
  async check(tx: Tx, userId: string, code: string, ip: string | null = null): Promise<boolean> {
    const user = await tx.selectFrom("users").select(["email", "totp_secret", "totp_last_counter"]).where("id", "=", userId).executeTakeFirst();
    if (!user?.totp_secret) return false;
    const owner = { kind: "user", id: userId } as const;
    if (/^\s*\d{6}\s*$/.test(code)) {
      const secret = await this.box.openString(tx, owner, FIELD, user.totp_secret);
      const counter = this.match(secret, user.email, code.trim(), user.totp_last_counter === null ? null : Number(user.totp_last_counter));
      if (counter === undefined) return false;
      await tx.updateTable("users").set({ totp_last_counter: counter }).where("id", "=", userId).execute();
      return true;
    }
    const hash = tokenHash(normaliseRecovery(code));
    const res = await tx.updateTable("recovery_codes").set({ used_at: now() }).where("user_id", "=", userId).where("code_hash", "=", hash).where("used_at", "is", null).executeTakeFirst();
    if (Number(res.numUpdatedRows) === 0) return false;
    await this.audit.record({ action: "auth.recovery_code_used", actorId: userId, actor: user.email, target: userId, ip }, tx);
    return true;
  }

  async recoveryCodesLeft(userId: string): Promise<number> {
    const rows = await this.store.db.selectFrom("recovery_codes").select("code_hash").where("user_id", "=", userId).where("used_at", "is", null).execute();
    return rows.length;
  }

  /** The time step of a valid code one step either side of now, unless that step was already used. */
  private match(secret: string, label: string, code: string, lastCounter: number | null): number | undefined {
    const delta = totpFor(secret, label).validate({ token: code, window: 1 });
    if (delta === null) return undefined;
    const counter = Math.floor(Date.now() / 30_000) + delta;
    if (lastCounter !== null && counter <= lastCounter) return undefined;
    return counter;
  }
}
