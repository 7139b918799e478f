import type { Kysely } from "kysely";

/**
 * An organisation's own idle timeout and longest run for its workspaces (within the operator's),
 * and whether a workspace's owner already extended its current run.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("organizations").addColumn("workspace_idle_minutes", "integer").execute();
  await db.schema.alterTable("organizations").addColumn("workspace_max_hours", "integer").execute();
  await db.schema.alterTable("workspaces").addColumn("extended", "integer", (c) => c.notNull().defaultTo(0)).execute();
}
