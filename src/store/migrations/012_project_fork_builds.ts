import type { Kysely } from "kysely";

/** What a pull request from a fork does: `run` (without secrets) or `approve` (waits for an owner or admin first). */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("projects").addColumn("fork_builds", "text", (c) => c.notNull().defaultTo("run")).execute();
}
