import type { Kysely } from "kysely";

/**
 * A project's status badge is read with a token derived from a server key and this number;
 * regenerating the badge link bumps it, so every older link stops working. Nothing secret is stored.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("projects").addColumn("badge_generation", "integer", (c) => c.notNull().defaultTo(0)).execute();
}
