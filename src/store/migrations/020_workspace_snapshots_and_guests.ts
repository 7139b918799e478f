import type { Kysely } from "kysely";

/**
 * Snapshots: immutable copies of a workspace's /workspace, sealed with its key, that open as new
 * workspaces. Guests: who asked to join a shared workspace, and what its owner decided. Sharing is
 * a flag of the workspace; an organisation may forbid it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("workspace_snapshots")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("workspace_id", "text", (c) => c.notNull().references("workspaces.id").onDelete("cascade"))
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("object", "text", (c) => c.notNull())
    .addColumn("bytes", "integer", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("workspace_guests")
    .addColumn("workspace_id", "text", (c) => c.notNull().references("workspaces.id").onDelete("cascade"))
    .addColumn("user_id", "text", (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn("state", "text", (c) => c.notNull())
    .addColumn("requested_at", "text", (c) => c.notNull())
    .addColumn("decided_at", "text")
    .addPrimaryKeyConstraint("workspace_guests_pk", ["workspace_id", "user_id"])
    .execute();
  await db.schema.alterTable("workspaces").addColumn("shared", "integer", (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable("organizations").addColumn("workspace_sharing", "integer", (c) => c.notNull().defaultTo(1)).execute();
}
