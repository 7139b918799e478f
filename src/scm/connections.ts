import { createHash } from "node:crypto";
import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import type { Owner, SecretBox } from "../crypto/secret-box.js";
import { AppError, badRequest } from "../errors.js";
import type { Mailer } from "../mail/mailer.js";
import type { Executor, Store } from "../store/database.js";
import { newId, now } from "../store/ids.js";
import type { ScmConnectionsTable } from "../store/schema.js";
import { newOAuthSecret, ScmError, scmUserSchema, type RepositoryPage, type ScmProvider, type ScmTokens, type ScmUser } from "./provider.js";
import type { ScmRegistry } from "./registry.js";
import { webhookProviders, type WebhookProvider } from "./webhook-deliveries.js";

/** A sign-in left at the provider's page is abandoned after this long. */
const SIGN_IN_TTL_MS = 10 * 60_000;
/** A token this close to its expiry is refreshed first, so a call never starts with one about to lapse. */
const REFRESH_MARGIN_MS = 60_000;
/** How long a read check's answer stands: long enough to spare the provider, short enough that a revoked collaborator is out soon. */
const READ_CACHE_MS = 60_000;
const READ_CACHE_MAX = 10_000;

const ACCESS = "scm_access_token";
const REFRESH = "scm_refresh_token";
const VERIFIER = "scm_code_verifier";
const userOwner = (userId: string): Owner => ({ kind: "user", id: userId });
const SIGN_IN_OWNER: Owner = { kind: "system", id: "scm-sign-in" };

export const providerNameSchema = z.enum(webhookProviders);

/** A git host this server is set up to connect to, with the scopes it asks for. */
export const providerInfoSchema = z.object({ name: providerNameSchema, label: z.string(), scopes: z.array(z.string()) });

/** What the account page shows of a connection: the profile and grant, never a token. */
export const connectionSchema = scmUserSchema.omit({ id: true }).extend({
  provider: providerNameSchema,
  scopes: z.array(z.string()),
  connectedAt: z.string(),
  /** Set when the provider refused the token for good: reconnect to fix it. */
  problem: z.string().nullable(),
});
export type Connection = z.infer<typeof connectionSchema>;

const toConnection = (r: ScmConnectionsTable): Connection => ({
  provider: providerNameSchema.parse(r.provider),
  login: r.login,
  name: r.name,
  email: r.email,
  avatarUrl: r.avatar_url,
  scopes: JSON.parse(r.scopes) as string[],
  connectedAt: r.created_at,
  problem: r.problem,
});

const stateHash = (state: string) => createHash("sha256").update(state).digest("hex");

/** A provider call made with a connection's token, and which connection it was. */
export interface TokenUse {
  connectionId: string;
  provider: ScmProvider;
  token: string;
}

/**
 * Accounts connected at git hosts. Tokens are sealed for their user (P17) and leave this module
 * only into a provider call; expiring ones are refreshed (rotating the refresh token) just before
 * use; a token the provider refuses for good is marked, so the account and project pages say why.
 */
export class ScmConnections {
  private readonly readCache = new Map<string, { readable: boolean; until: number }>();
  /** One refresh per connection at a time: a second would present the refresh token the first just spent. */
  private readonly refreshing = new Map<string, Promise<string>>();

  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly audit: AuditLog,
    private readonly registry: ScmRegistry,
    private readonly mailer: Mailer,
    private readonly publicUrl: () => string,
  ) {}

  /**
   * Starts connecting the user's account, or with no user a sign-in with the provider: the URL to
   * send the browser to. The state and PKCE verifier stay here.
   */
  async begin(userId: string | null, name: WebhookProvider): Promise<URL> {
    const provider = this.registry.get(name);
    const state = newOAuthSecret();
    const verifier = newOAuthSecret();
    await this.store.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("scm_sign_ins").where("created_at", "<", new Date(Date.now() - SIGN_IN_TTL_MS).toISOString()).execute();
      await this.box.ensureDataKey(tx, SIGN_IN_OWNER);
      await tx.insertInto("scm_sign_ins").values({ state_hash: stateHash(state), user_id: userId, provider: name, code_verifier: await this.box.seal(tx, SIGN_IN_OWNER, VERIFIER, verifier), created_at: now() }).execute();
    });
    return provider.authorizeUrl(state, verifier, userId === null ? "sign-in" : "connect");
  }

  /**
   * The provider's redirect back. The state must be one started here for this provider, unused and
   * fresh, and come back to who started it: a connection to the session that began it (so a link
   * planted by someone else cannot attach their account), a sign-in to the browser that began it
   * (so nobody can sign a victim into the attacker's account). A sign-in names the Slipway account
   * already connected to that provider account, never one matched by email.
   */
  async complete(name: WebhookProvider, state: string, code: string, caller: { ctx: RequestContext | undefined; browserState: string | undefined }): Promise<{ connected: Connection } | { signedIn: string }> {
    const { ctx } = caller;
    const provider = this.registry.get(name);
    const label = this.registry.label(name);
    const pending = await this.store.db.transaction().execute(async (tx) => {
      const row = await tx.selectFrom("scm_sign_ins").selectAll().where("state_hash", "=", stateHash(state)).executeTakeFirst();
      // Spent on first sight, whatever happens next: a state is good for one try.
      if (row) await tx.deleteFrom("scm_sign_ins").where("state_hash", "=", row.state_hash).execute();
      return row;
    });
    const startedBy = pending?.user_id ?? null;
    // A connection comes back to the session that started it; a sign-in to the browser that started it.
    const sameStarter = startedBy === null ? caller.browserState === state : startedBy === ctx?.principal.userId;
    if (!pending || pending.provider !== name || Date.parse(pending.created_at) < Date.now() - SIGN_IN_TTL_MS || !sameStarter)
      throw badRequest(`this ${label} sign-in is unknown, expired or was started by another account: start again`, "oauth_state");
    const verifier = await this.box.openString(this.store.db, SIGN_IN_OWNER, VERIFIER, pending.code_verifier);
    const tokens = await providerCall(() => provider.exchangeCode(code, verifier));
    if (startedBy !== null) return { connected: await this.connect(ctx!, name, tokens, await providerCall(() => provider.currentUser(tokens.accessToken))) };
    // A sign-in's token can only read who the account is; it is dropped here, and the connection's own tokens stay as they are.
    const user = await providerCall(() => provider.currentUser(tokens.accessToken, { email: false }));
    const known = await this.store.db.selectFrom("scm_connections").innerJoin("users", "users.id", "scm_connections.user_id").select("users.id").where("scm_connections.provider", "=", name).where("scm_connections.provider_user_id", "=", user.id).executeTakeFirst();
    if (!known) throw new AppError(404, "no_account", `no Slipway account is connected to the ${label} account ${user.login}: sign in with your email and password, then connect ${label} from your account page`);
    return { signedIn: known.id };
  }

  /**
   * Stores the account's tokens (sealed) and basic profile for the user; one account per provider
   * and user, one user per account. A newly connected account can sign in as the user from then
   * on, so the user is told by mail: someone who borrowed a session cannot add a way in unseen.
   */
  async connect(ctx: RequestContext, name: WebhookProvider, tokens: ScmTokens, user: ScmUser): Promise<Connection> {
    const userId = ctx.principal.userId;
    const label = this.registry.label(name);
    const added = await this.store.db.transaction().execute(async (tx) => {
      const taken = await tx.selectFrom("scm_connections").select("user_id").where("provider", "=", name).where("provider_user_id", "=", user.id).executeTakeFirst();
      if (taken && taken.user_id !== userId) throw new AppError(409, "identity_taken", `the ${label} account ${user.login} is already connected to another Slipway account: disconnect it there first`);
      await this.box.ensureDataKey(tx, userOwner(userId));
      const sealed = await this.sealTokens(tx, userId, tokens);
      const profile = { provider_user_id: user.id, login: user.login, name: user.name, email: user.email, avatar_url: user.avatarUrl, scopes: JSON.stringify(tokens.scopes), problem: null, updated_at: now() };
      await tx
        .insertInto("scm_connections")
        .values({ id: newId("scm"), user_id: userId, provider: name, created_at: now(), ...profile, ...sealed })
        .onConflict((oc) => oc.columns(["user_id", "provider"]).doUpdateSet({ ...profile, ...sealed }))
        .execute();
      await this.audit.record({ action: "scm.connected", ...actorOf(ctx), target: `${name}:${user.login}`, details: { scopes: tokens.scopes } }, tx);
      return !taken;
    });
    if (added)
      this.mailer.sendLater({
        to: ctx.principal.email,
        subject: `Slipway: ${label} account ${user.login} connected`,
        text: `The ${label} account ${user.login} was connected to your Slipway account. It can now sign you in to Slipway, and Slipway acts for it on the repositories you link.

If this was not you, disconnect it at ${this.publicUrl()}/account, change your password and sign out everywhere.
`,
      });
    return this.get(userId, name);
  }

  async list(userId: string): Promise<Connection[]> {
    const rows = await this.store.db.selectFrom("scm_connections").selectAll().where("user_id", "=", userId).orderBy("provider").execute();
    return rows.map(toConnection);
  }

  async get(userId: string, name: WebhookProvider): Promise<Connection> {
    return toConnection(await this.row(userId, name));
  }

  /**
   * Revokes the grant at the provider where its API allows, and deletes the tokens here either way.
   * Says whether the provider confirmed; if not, `manual` tells the user where to finish it.
   */
  async disconnect(ctx: RequestContext, name: WebhookProvider): Promise<{ revoked: boolean; manual: string | null }> {
    const userId = ctx.principal.userId;
    const row = await this.row(userId, name);
    const provider = this.registry.get(name);
    const label = this.registry.label(name);
    let manual: string | null = null;
    if (!provider.revoke) manual = `${label} offers no way to revoke a grant through its API: remove Slipway from the authorized applications in your ${label} settings.`;
    else {
      try {
        await provider.revoke(await this.box.openString(this.store.db, userOwner(userId), ACCESS, row.access_token));
      } catch (err) {
        if (!(err instanceof ScmError)) throw err;
        manual = `${err.message} Remove Slipway from the authorized applications in your ${label} settings to be sure.`;
      }
    }
    await this.store.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("scm_connections").where("id", "=", row.id).execute();
      await this.audit.record({ action: "scm.disconnected", ...actorOf(ctx), target: `${name}:${row.login}`, details: { revoked: manual === null } }, tx);
    });
    this.forgetReads(row.id);
    return { revoked: manual === null, manual };
  }

  async repositories(userId: string, name: WebhookProvider, page: number): Promise<RepositoryPage> {
    return this.withToken(await this.row(userId, name), (use) => use.provider.listRepositories(use.token, page));
  }

  /** The user's connection to a provider, for calls made on their behalf (linking a repository). */
  async use<T>(userId: string, name: WebhookProvider, fn: (use: TokenUse) => Promise<T>): Promise<T> {
    return this.withToken(await this.row(userId, name), fn);
  }

  /** A call with a stored connection's token (statuses, unlinking); undefined when the connection is gone. */
  async useConnection<T>(connectionId: string, fn: (use: TokenUse) => Promise<T>): Promise<T | undefined> {
    const row = await this.store.db.selectFrom("scm_connections").selectAll().where("id", "=", connectionId).executeTakeFirst();
    return row && this.withToken(row, fn);
  }

  /** Whether the user can read the repository, asked of the provider with their token and remembered briefly. */
  async canRead(userId: string, name: WebhookProvider, repo: string): Promise<boolean> {
    const row = await this.store.db.selectFrom("scm_connections").selectAll().where("user_id", "=", userId).where("provider", "=", name).executeTakeFirst();
    if (!row) return false;
    const key = `${row.id}\n${repo}`;
    const cached = this.readCache.get(key);
    if (cached && cached.until > Date.now()) return cached.readable;
    const readable = await this.withToken(row, (use) => use.provider.canRead(use.token, repo));
    if (this.readCache.size >= READ_CACHE_MAX) this.readCache.clear();
    this.readCache.set(key, { readable, until: Date.now() + READ_CACHE_MS });
    return readable;
  }

  /** Runs `fn` with a fresh token; records a refusal for good on the connection, clears it on success. */
  private async withToken<T>(row: ScmConnectionsTable, fn: (use: TokenUse) => Promise<T>): Promise<T> {
    const provider = this.registry.get(providerNameSchema.parse(row.provider));
    try {
      const token = await this.freshToken(row, provider);
      const result = await fn({ connectionId: row.id, provider, token });
      if (row.problem !== null) await this.store.db.updateTable("scm_connections").set({ problem: null }).where("id", "=", row.id).execute();
      return result;
    } catch (err) {
      if (err instanceof ScmError && err.kind === "unauthorized") {
        await this.store.db.updateTable("scm_connections").set({ problem: err.message, updated_at: now() }).where("id", "=", row.id).execute();
        this.forgetReads(row.id);
      }
      throw err;
    }
  }

  private async freshToken(row: ScmConnectionsTable, provider: ScmProvider): Promise<string> {
    if (row.expires_at === null || Date.parse(row.expires_at) - REFRESH_MARGIN_MS > Date.now()) return this.box.openString(this.store.db, userOwner(row.user_id), ACCESS, row.access_token);
    const running = this.refreshing.get(row.id);
    if (running) return running;
    const refreshed = this.refresh(row.id, provider).finally(() => this.refreshing.delete(row.id));
    this.refreshing.set(row.id, refreshed);
    return refreshed;
  }

  private async refresh(connectionId: string, provider: ScmProvider): Promise<string> {
    // Read again: another refresh may have finished since the caller read the row.
    const row = await this.store.db.selectFrom("scm_connections").selectAll().where("id", "=", connectionId).executeTakeFirstOrThrow();
    const owner = userOwner(row.user_id);
    if (row.expires_at === null || Date.parse(row.expires_at) - REFRESH_MARGIN_MS > Date.now()) return this.box.openString(this.store.db, owner, ACCESS, row.access_token);
    const label = this.registry.label(provider.name);
    if (row.refresh_token === null) throw new ScmError("unauthorized", `Your ${label} token has expired and cannot be renewed: reconnect your ${label} account.`);
    const tokens = await provider.refresh(await this.box.openString(this.store.db, owner, REFRESH, row.refresh_token));
    // The old refresh token is spent now; losing the new pair would lose the connection, so it is stored before use.
    const sealed = await this.sealTokens(this.store.db, row.user_id, tokens);
    // A provider that answers without a new refresh token (no rotation) leaves the old one good.
    const kept = tokens.refreshToken === undefined ? { refresh_token: row.refresh_token } : {};
    await this.store.db.updateTable("scm_connections").set({ ...sealed, ...kept, updated_at: now() }).where("id", "=", row.id).execute();
    return tokens.accessToken;
  }

  private async sealTokens(ex: Executor, userId: string, tokens: ScmTokens) {
    const owner = userOwner(userId);
    return {
      access_token: await this.box.seal(ex, owner, ACCESS, tokens.accessToken),
      refresh_token: tokens.refreshToken === undefined ? null : await this.box.seal(ex, owner, REFRESH, tokens.refreshToken),
      expires_at: tokens.expiresAt?.toISOString() ?? null,
    };
  }

  private async row(userId: string, name: WebhookProvider): Promise<ScmConnectionsTable> {
    const row = await this.store.db.selectFrom("scm_connections").selectAll().where("user_id", "=", userId).where("provider", "=", name).executeTakeFirst();
    if (!row) throw new AppError(404, "not_connected", `your ${this.registry.label(name)} account is not connected: connect it from your account page first`);
    return row;
  }

  private forgetReads(connectionId: string): void {
    for (const key of this.readCache.keys()) if (key.startsWith(`${connectionId}\n`)) this.readCache.delete(key);
  }
}

/** A provider failure as the API shows it: what failed and what to do, with a status that fits. */
export async function providerCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof ScmError)) throw err;
    throw asAppError(err);
  }
}

export function asAppError(err: ScmError): AppError {
  const status = { unauthorized: 409, forbidden: 403, not_found: 404, invalid: 422, rate_limited: 429, unavailable: 502, timeout: 504, malformed: 502 }[err.kind];
  const headers: Record<string, string> = err.retryAfterMs === undefined ? {} : { "retry-after": String(Math.ceil(err.retryAfterMs / 1000)) };
  return new AppError(status, `provider_${err.kind}`, err.message, headers);
}
