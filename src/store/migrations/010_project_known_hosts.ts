import type { Kysely } from "kysely";

/** A project's pinned git host keys (known_hosts text); null until set or captured by the first clone. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("projects").addColumn("known_hosts", "text").execute();
}
