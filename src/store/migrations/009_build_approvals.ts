import type { Kysely } from "kysely";

/**
 * Manual steps of a build: one row when a job stops at one (waiting), completed by the approval,
 * which names who approved and the job that resumes from the step.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("build_approvals")
    .addColumn("build_id", "text", (c) => c.notNull().references("builds.id").onDelete("cascade"))
    .addColumn("step_id", "text", (c) => c.notNull())
    .addColumn("step_name", "text", (c) => c.notNull())
    .addColumn("waiting_job_id", "text", (c) => c.notNull().references("jobs.id").onDelete("cascade"))
    .addColumn("requested_at", "text", (c) => c.notNull())
    .addColumn("approved_by", "text", (c) => c.references("users.id").onDelete("set null"))
    .addColumn("approved_at", "text")
    .addColumn("resume_job_id", "text", (c) => c.references("jobs.id").onDelete("cascade"))
    .addPrimaryKeyConstraint("build_approvals_pk", ["build_id", "step_id"])
    .execute();
}
