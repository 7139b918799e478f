import type { Kysely } from "kysely";

/** A user's variables for their workspaces, each for the repositories its scope names; values sealed with the user's key. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("workspace_variables")
    .addColumn("user_id", "text", (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("scope", "text", (c) => c.notNull())
    .addColumn("value", "text", (c) => c.notNull())
    .addColumn("updated_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("workspace_variables_pk", ["user_id", "name", "scope"])
    .execute();
}
