import type { Kysely } from "kysely";

/** A workspace port's visibility as its owner set it, over the config's, kept across stops. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("workspace_ports")
    .addColumn("workspace_id", "text", (c) => c.notNull().references("workspaces.id").onDelete("cascade"))
    .addColumn("port", "integer", (c) => c.notNull())
    .addColumn("visibility", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("workspace_ports_pk", ["workspace_id", "port"])
    .execute();
}
