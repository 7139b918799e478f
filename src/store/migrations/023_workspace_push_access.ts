import type { Kysely } from "kysely";

/** Whether its owner opted into pushing from the workspace with the project's deploy key. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("workspaces").addColumn("push_access", "integer", (c) => c.notNull().defaultTo(0)).execute();
}
