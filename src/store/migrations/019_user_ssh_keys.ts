import type { Kysely } from "kysely";

/** Public keys users register to reach their workspaces over SSH. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("user_ssh_keys")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("user_id", "text", (c) => c.notNull().references("users.id").onDelete("cascade"))
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("public_key", "text", (c) => c.notNull())
    .addColumn("fingerprint", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("last_used_at", "text")
    .addUniqueConstraint("user_ssh_keys_user_fingerprint", ["user_id", "fingerprint"])
    .execute();
}
