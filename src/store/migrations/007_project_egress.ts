import type { Kysely } from "kysely";

/** A project's egress allowlist (JSON array of host:port / CIDR entries); null lets builds reach anything not denied. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("projects").addColumn("egress_allowlist", "text").execute();
}
