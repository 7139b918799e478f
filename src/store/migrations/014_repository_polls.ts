import type { Kysely } from "kysely";

/**
 * Projects whose repository is polled (a git server that cannot call Slipway): how often, the
 * heads and tags the last poll saw, and which runner holds the poll now.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("repository_polls")
    .addColumn("project_id", "text", (c) => c.primaryKey().references("projects.id").onDelete("cascade"))
    .addColumn("interval_s", "integer", (c) => c.notNull())
    .addColumn("refs", "text")
    .addColumn("next_at", "text", (c) => c.notNull())
    .addColumn("runner_id", "text")
    .addColumn("lease_expires_at", "text")
    .addColumn("polled_at", "text")
    .addColumn("problem", "text")
    .execute();
}
