import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import { AppError, conflict, notFound } from "../errors.js";
import type { DeployKeys } from "../projects/deploy-keys.js";
import { repositoryUrlSchema } from "../projects/projects.js";
import { newWebhookSecret, type Webhooks } from "../projects/webhooks.js";
import type { Store } from "../store/database.js";
import { now } from "../store/ids.js";
import type { RepositoryLinksTable } from "../store/schema.js";
import { providerCall, providerNameSchema, type ScmConnections, type TokenUse } from "./connections.js";
import { ScmError } from "./provider.js";
import type { ScmRegistry } from "./registry.js";
import type { WebhookProvider } from "./webhook-deliveries.js";

export const repositoryLinkSchema = z.object({
  provider: providerNameSchema,
  repo: z.string(),
  linkedAt: z.string(),
  /** The last provider failure on this link (say, a revoked token), in words with what to do; null when fine. */
  problem: z.string().nullable(),
});
export type RepositoryLink = z.infer<typeof repositoryLinkSchema>;

/** Something Slipway installed at the provider and could not remove: the user removes it by hand. */
export const leftoverSchema = z.object({ what: z.enum(["deploy key", "webhook"]), id: z.string(), repo: z.string(), provider: providerNameSchema, reason: z.string() });
export type Leftover = z.infer<typeof leftoverSchema>;

const toLink = (r: RepositoryLinksTable): RepositoryLink => ({ provider: providerNameSchema.parse(r.provider), repo: r.repo, linkedAt: r.linked_at, problem: r.problem });

/**
 * A project's link to a repository at a provider (P07): linking installs the project's read-only
 * deploy key and a webhook with a fresh secret through the user's connection and keeps their
 * provider ids; unlinking removes both, names whatever could not be removed, and destroys the
 * key pair and secret here so a copy left at the provider opens nothing.
 */
export class RepositoryLinks {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly registry: ScmRegistry,
    private readonly connections: ScmConnections,
    private readonly deployKeys: DeployKeys,
    private readonly webhooks: Webhooks,
    private readonly hookUrl: (projectId: string, provider: WebhookProvider) => string,
  ) {}

  async get(projectId: string): Promise<RepositoryLink | undefined> {
    const row = await this.store.db.selectFrom("repository_links").selectAll().where("project_id", "=", projectId).executeTakeFirst();
    return row && toLink(row);
  }

  async link(ctx: RequestContext, projectId: string, name: WebhookProvider, repo: string): Promise<RepositoryLink> {
    const project = await this.store.db.selectFrom("projects").select(["id", "name", "org_id"]).where("id", "=", projectId).executeTakeFirst();
    if (!project) throw notFound("project");
    if (await this.get(projectId)) throw conflict("the project is linked to a repository already: unlink it first");
    const { publicKey } = await this.deployKeys.get(projectId);
    const secret = newWebhookSecret();
    const label = this.registry.label(name);
    const installed = await providerCall(() => this.connections.use(ctx.principal.userId, name, async (use) => {
      const { provider, token } = use;
      const found = await provider.repository(token, repo);
      // It becomes the project's clone URL: held to what a person may enter there.
      if (!repositoryUrlSchema.safeParse(found.sshUrl).success) throw new ScmError("malformed", `${label} gave ${repo} an SSH URL Slipway cannot clone from (${JSON.stringify(found.sshUrl.slice(0, 200))}): link it as plain git with its URL instead.`);
      const key = await provider.addDeployKey(token, found.fullName, `Slipway: ${project.name}`, publicKey, true);
      try {
        const hook = await provider.addWebhook(token, found.fullName, this.hookUrl(projectId, name), secret, ["push", "pull_request"]);
        return { use, found, keyId: key.id, hookId: hook.id };
      } catch (err) {
        if (!(err instanceof ScmError)) throw err;
        // Half a link is worse than none: the key goes again, or the user learns it is still there.
        const left = await this.remove(use, found.fullName, "deploy key", key.id);
        const tail = left ? ` The deploy key "Slipway: ${project.name}" (id ${key.id}) could not be removed again (${left.reason}): remove it by hand in ${found.fullName}'s settings at ${label}.` : "";
        throw new ScmError(err.kind, `${err.message}${tail}`, err.retryAfterMs);
      }
    }));
    const stored = await this.store.db.transaction().execute(async (tx) => {
      const res = await tx
        .insertInto("repository_links")
        .values({ project_id: projectId, provider: name, repo: installed.found.fullName, provider_repo_id: installed.found.id, connection_id: installed.use.connectionId, deploy_key_id: installed.keyId, webhook_id: installed.hookId, problem: null, linked_at: now() })
        .onConflict((oc) => oc.column("project_id").doNothing())
        .executeTakeFirst();
      if (Number(res.numInsertedOrUpdatedRows ?? 0n) !== 1) return false;
      await this.webhooks.deleteAll(tx, projectId);
      await this.webhooks.create(tx, projectId, secret);
      await tx.updateTable("projects").set({ repository_url: installed.found.sshUrl }).where("id", "=", projectId).execute();
      await this.audit.record({ action: "project.repository_linked", ...actorOf(ctx), orgId: project.org_id, target: projectId, details: { provider: name, repo: installed.found.fullName, deployKeyId: installed.keyId, webhookId: installed.hookId } }, tx);
      return true;
    });
    if (!stored) {
      // Another link won the race meanwhile: this one's key and hook must not stay behind.
      const { use, found } = installed;
      await Promise.all([this.remove(use, found.fullName, "webhook", installed.hookId), this.remove(use, found.fullName, "deploy key", installed.keyId)]);
      throw conflict("the project was linked to a repository meanwhile: unlink it first");
    }
    return (await this.get(projectId))!;
  }

  /**
   * Removes the deploy key and webhook at the provider, then the link, the key pair and the webhook
   * secret here. What could not be removed at the provider is returned, never silently left.
   */
  async unlink(ctx: RequestContext, projectId: string): Promise<Leftover[]> {
    const row = await this.store.db.selectFrom("repository_links").selectAll().where("project_id", "=", projectId).executeTakeFirst();
    if (!row) throw notFound("repository link");
    const leftovers = await this.removeAtProvider(ctx.principal.userId, row);
    const project = await this.store.db.selectFrom("projects").select("org_id").where("id", "=", projectId).executeTakeFirstOrThrow();
    await this.store.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("repository_links").where("project_id", "=", projectId).execute();
      await tx.updateTable("projects").set({ repository_url: null }).where("id", "=", projectId).execute();
      await this.audit.record({ action: "project.repository_unlinked", ...actorOf(ctx), orgId: project.org_id, target: projectId, details: { provider: row.provider, repo: row.repo, leftovers } }, tx);
    });
    // New ones replace them, so the old pair and secret are gone here even where the provider still holds a copy.
    await this.deployKeys.regenerate(ctx, projectId);
    await this.webhooks.regenerate(ctx, projectId);
    return leftovers;
  }

  /**
   * Before a project is deleted: what it installed at the provider goes first; the rest goes with
   * the project. What stays at the provider is recorded, as the project's own record goes too.
   */
  async beforeProjectDelete(ctx: RequestContext, projectId: string): Promise<Leftover[]> {
    const row = await this.store.db.selectFrom("repository_links").selectAll().where("project_id", "=", projectId).executeTakeFirst();
    if (!row) return [];
    const leftovers = await this.removeAtProvider(ctx.principal.userId, row);
    if (leftovers.length) {
      const project = await this.store.db.selectFrom("projects").select("org_id").where("id", "=", projectId).executeTakeFirstOrThrow();
      await this.audit.record({ action: "project.repository_unlinked", ...actorOf(ctx), orgId: project.org_id, target: projectId, details: { provider: row.provider, repo: row.repo, leftovers, projectDeleted: true } });
    }
    return leftovers;
  }

  /** Notes a provider failure on the link (shown on the project page), or clears it after a success. */
  async setProblem(projectId: string, problem: string | null): Promise<void> {
    await this.store.db.updateTable("repository_links").set({ problem }).where("project_id", "=", projectId).where("problem", problem === null ? "is not" : "is", null).execute();
  }

  /** The link's connection, for statuses; undefined when the project has none. */
  async target(projectId: string): Promise<{ connectionId: string | null; repo: string } | undefined> {
    const row = await this.store.db.selectFrom("repository_links").select(["connection_id", "repo"]).where("project_id", "=", projectId).executeTakeFirst();
    return row && { connectionId: row.connection_id, repo: row.repo };
  }

  private async removeAtProvider(userId: string, row: RepositoryLinksTable): Promise<Leftover[]> {
    const name = providerNameSchema.parse(row.provider);
    const installed = [
      ...(row.webhook_id ? [{ what: "webhook" as const, id: row.webhook_id }] : []),
      ...(row.deploy_key_id ? [{ what: "deploy key" as const, id: row.deploy_key_id }] : []),
    ];
    const removeAll = async (use: TokenUse) => (await Promise.all(installed.map((i) => this.remove(use, row.repo, i.what, i.id)))).filter((l): l is Leftover => l !== undefined);
    try {
      // The connection that installed them, else the acting user's own to the same provider.
      const viaLink = row.connection_id ? await this.connections.useConnection(row.connection_id, removeAll) : undefined;
      return viaLink ?? (await this.connections.use(userId, name, removeAll));
    } catch (err) {
      const reason = err instanceof ScmError || err instanceof AppError ? err.message : "the provider could not be asked";
      return installed.map((i) => ({ ...i, repo: row.repo, provider: name, reason }));
    }
  }

  /** Removes one thing; gone already counts as removed. */
  private async remove(use: TokenUse, repo: string, what: Leftover["what"], id: string): Promise<Leftover | undefined> {
    try {
      await (what === "webhook" ? use.provider.removeWebhook(use.token, repo, id) : use.provider.removeDeployKey(use.token, repo, id));
      return undefined;
    } catch (err) {
      if (!(err instanceof ScmError)) throw err;
      if (err.kind === "not_found") return undefined;
      return { what, id, repo, provider: use.provider.name, reason: err.message };
    }
  }
}

