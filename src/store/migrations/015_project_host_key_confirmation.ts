import type { Kysely } from "kysely";

/** Whether a person vouched for the pinned host keys (set them, or confirmed the ones first seen), as against trust on first use alone. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("projects").addColumn("known_hosts_confirmed", "integer", (c) => c.notNull().defaultTo(0)).execute();
}
