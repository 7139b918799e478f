import type { Kysely } from "kysely";

/** Each project's X25519 key pair for encrypted env files; the private half sealed by the secret box. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("env_file_keys")
    .addColumn("project_id", "text", (c) => c.primaryKey().references("projects.id").onDelete("cascade"))
    .addColumn("public_key", "text", (c) => c.notNull())
    .addColumn("private_key", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
}
