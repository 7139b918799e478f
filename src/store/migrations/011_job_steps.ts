import type { Kysely } from "kysely";

/** Each step of a job, as its runner reports it: status, times, exit code and where its output starts in the job's log. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("job_steps")
    .addColumn("job_id", "text", (c) => c.notNull().references("jobs.id").onDelete("cascade"))
    .addColumn("step_id", "text", (c) => c.notNull())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull())
    .addColumn("sandbox", "integer", (c) => c.notNull())
    .addColumn("log_offset", "bigint", (c) => c.notNull())
    .addColumn("exit_code", "integer")
    .addColumn("reason", "text")
    .addColumn("started_at", "text")
    .addColumn("finished_at", "text")
    .addPrimaryKeyConstraint("job_steps_pk", ["job_id", "step_id"])
    .execute();
}
