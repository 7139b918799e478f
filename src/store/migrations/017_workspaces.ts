import type { Kysely } from "kysely";

/**
 * Workspaces: one row each, with its state, the config it was opened with, and where its
 * encrypted /workspace archive is once stopped; every state it went through, with the time.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("workspaces")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("owner_id", "text", (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn("project_id", "text", (c) => c.notNull().references("projects.id").onDelete("cascade"))
    .addColumn("repository_url", "text", (c) => c.notNull())
    .addColumn("ref", "text")
    .addColumn("commit_sha", "text")
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("reason", "text")
    .addColumn("config", "text")
    .addColumn("problems", "text", (c) => c.notNull())
    .addColumn("initialized", "integer", (c) => c.notNull())
    .addColumn("archive", "text")
    .addColumn("archive_bytes", "integer")
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("started_at", "text")
    .addColumn("stopped_at", "text")
    .addColumn("last_activity_at", "text", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("workspaces_owner").on("workspaces").columns(["owner_id", "created_at"]).execute();
  await db.schema
    .createTable("workspace_transitions")
    .addColumn("workspace_id", "text", (c) => c.notNull().references("workspaces.id").onDelete("cascade"))
    .addColumn("seq", "integer", (c) => c.notNull())
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("reason", "text")
    .addColumn("at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("workspace_transitions_pk", ["workspace_id", "seq"])
    .execute();
}
