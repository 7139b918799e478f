import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import type { SecretBox } from "../crypto/secret-box.js";
import { notFound } from "../errors.js";
import { secretNameSchema } from "../secrets/secret-variables.js";
import type { Store } from "../store/database.js";
import { now } from "../store/ids.js";
import { repositoryName } from "./repository-names.js";

/** `owner/repo`, `owner/*` or `*\/*`. */
export const variableScopeSchema = z
  .string()
  .max(200)
  .regex(/^(\*\/\*|(?!\.\.?\/)[A-Za-z0-9_.-]+\/(\*|(?!\.\.?$)[A-Za-z0-9_.-]+))$/, "a scope is owner/repo, owner/* or */*");

export const workspaceVariableSchema = z.object({ name: secretNameSchema, scope: variableScopeSchema, updatedAt: z.string() });
export type WorkspaceVariable = z.infer<typeof workspaceVariableSchema>;

/** How closely a scope names the repository: higher wins; undefined when it does not apply. */
function specificity(scope: string, repository: string): number | undefined {
  const [owner, repo] = repository.split("/");
  if (scope === "*/*") return 0;
  if (scope === `${owner}/*`) return 1;
  if (scope === `${owner}/${repo}`) return 2;
  return undefined;
}

const field = (scope: string, name: string) => `workspace-variable:${scope}:${name}`;

/**
 * A user's variables for their workspaces (P17: values sealed by the secret box, write-only
 * through the API). Each applies to the repositories its scope names; for one name, the most
 * specific scope wins.
 */
export class WorkspaceVariables {
  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly audit: AuditLog,
  ) {}

  async list(userId: string): Promise<WorkspaceVariable[]> {
    const rows = await this.store.db.selectFrom("workspace_variables").select(["name", "scope", "updated_at"]).where("user_id", "=", userId).orderBy("name").orderBy("scope").execute();
    return rows.map((r) => ({ name: r.name, scope: r.scope, updatedAt: r.updated_at }));
  }

  async set(ctx: RequestContext, name: string, scope: string, value: string): Promise<void> {
    const owner = { kind: "user", id: ctx.principal.userId } as const;
    await this.store.db.transaction().execute(async (tx) => {
      await this.box.ensureDataKey(tx, owner);
      const sealed = await this.box.seal(tx, owner, field(scope, name), value);
      await tx
        .insertInto("workspace_variables")
        .values({ user_id: owner.id, name, scope, value: sealed, updated_at: now() })
        .onConflict((oc) => oc.columns(["user_id", "name", "scope"]).doUpdateSet({ value: sealed, updated_at: now() }))
        .execute();
      await this.audit.record({ action: "secret.set", ...actorOf(ctx), target: `user:${owner.id}/workspace/${scope}/${name}` }, tx);
    });
  }

  async delete(ctx: RequestContext, name: string, scope: string): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      const res = await tx.deleteFrom("workspace_variables").where("user_id", "=", ctx.principal.userId).where("name", "=", name).where("scope", "=", scope).executeTakeFirst();
      if (Number(res.numDeletedRows) === 0) throw notFound(`variable ${name} for ${scope}`);
      await this.audit.record({ action: "secret.deleted", ...actorOf(ctx), target: `user:${ctx.principal.userId}/workspace/${scope}/${name}` }, tx);
    });
  }

  /** The values a workspace of this repository gets: for each name, that of the most specific scope. */
  async forRepository(userId: string, repositoryUrl: string): Promise<Record<string, string>> {
    const repository = repositoryName(repositoryUrl);
    const rows = await this.store.db.selectFrom("workspace_variables").selectAll().where("user_id", "=", userId).execute();
    const best = new Map<string, { rank: number; row: (typeof rows)[number] }>();
    for (const row of rows) {
      const rank = specificity(row.scope, repository);
      if (rank !== undefined && rank >= (best.get(row.name)?.rank ?? -1)) best.set(row.name, { rank, row });
    }
    const owner = { kind: "user", id: userId } as const;
    const out: Record<string, string> = {};
    for (const [name, { row }] of best) out[name] = await this.box.openString(this.store.db, owner, field(row.scope, name), row.value);
    return out;
  }
}
