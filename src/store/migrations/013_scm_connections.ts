import type { Kysely } from "kysely";

/**
 * Accounts connected at git hosts (tokens sealed for the user), sign-ins in flight (their PKCE
 * verifier sealed, single use), and each project's link to a repository with the provider's ids
 * of what Slipway installed there, so it can be removed again.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("scm_connections")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("user_id", "text", (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn("provider", "text", (c) => c.notNull())
    .addColumn("provider_user_id", "text", (c) => c.notNull())
    .addColumn("login", "text", (c) => c.notNull())
    .addColumn("name", "text")
    .addColumn("email", "text")
    .addColumn("avatar_url", "text")
    .addColumn("scopes", "text", (c) => c.notNull())
    .addColumn("access_token", "text", (c) => c.notNull())
    .addColumn("refresh_token", "text")
    .addColumn("expires_at", "text")
    .addColumn("problem", "text")
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addUniqueConstraint("scm_connections_user_provider", ["user_id", "provider"])
    .addUniqueConstraint("scm_connections_identity", ["provider", "provider_user_id"])
    .execute();
  await db.schema
    .createTable("scm_sign_ins")
    .addColumn("state_hash", "text", (c) => c.primaryKey())
    .addColumn("user_id", "text", (c) => c.references("users.id").onDelete("cascade"))
    .addColumn("provider", "text", (c) => c.notNull())
    .addColumn("code_verifier", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("repository_links")
    .addColumn("project_id", "text", (c) => c.primaryKey().references("projects.id").onDelete("cascade"))
    .addColumn("provider", "text", (c) => c.notNull())
    .addColumn("repo", "text", (c) => c.notNull())
    .addColumn("provider_repo_id", "text", (c) => c.notNull())
    .addColumn("connection_id", "text", (c) => c.references("scm_connections.id").onDelete("set null"))
    .addColumn("deploy_key_id", "text")
    .addColumn("webhook_id", "text")
    .addColumn("problem", "text")
    .addColumn("linked_at", "text", (c) => c.notNull())
    .execute();
}
