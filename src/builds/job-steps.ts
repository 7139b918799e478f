import { z } from "zod";
import { AppError } from "../errors.js";
import type { Executor } from "../store/database.js";
import { now } from "../store/ids.js";

export const stepStatuses = ["running", "success", "failed", "skipped", "error"] as const;

/** A step of a job as the API shows it. `sandbox` numbers the sandboxes of the job: steps with the same number shared files. */
export const jobStepSchema = z.object({
  id: z.string(),
  name: z.string(),
  status: z.enum(stepStatuses),
  sandbox: z.number(),
  /** Where the step's output starts in the job's log (its header line). */
  logOffset: z.number(),
  exitCode: z.number().nullable(),
  reason: z.string().nullable(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
});
export type JobStep = z.infer<typeof jobStepSchema>;

/** What a runner says of a step when it starts (status running) and when it ends. */
export const stepReportSchema = z
  .object({
    step: z
      .string()
      .max(100)
      .regex(/^[1-9][0-9]*(\.[1-9][0-9]*)*$/, "a step id is its position in the pipeline, e.g. 2 or 3.1"),
    name: z.string().min(1).max(500),
    status: z.enum(stepStatuses),
    sandbox: z.number().int().min(0).max(100_000),
    logOffset: z.number().int().min(0),
    exitCode: z.number().int().min(-1).max(255).nullable().default(null),
    reason: z.string().max(4000).nullable().default(null),
  })
  .strict();
export type StepReport = z.infer<typeof stepReportSchema>;

/** More than any pipeline the loaders accept has: a runner cannot grow a job's steps without end. */
const MAX_STEPS_PER_JOB = 5_000;

/** Records a step's start or end; an end without a start (a skipped step) gets no start time. */
export async function recordStep(ex: Executor, jobId: string, r: StepReport): Promise<void> {
  const { count } = await ex.selectFrom("job_steps").select((eb) => eb.fn.countAll<number>().as("count")).where("job_id", "=", jobId).executeTakeFirstOrThrow();
  if (Number(count) >= MAX_STEPS_PER_JOB) {
    const known = await ex.selectFrom("job_steps").select("step_id").where("job_id", "=", jobId).where("step_id", "=", r.step).executeTakeFirst();
    if (!known) throw new AppError(409, "too_many_steps", `a job reports at most ${MAX_STEPS_PER_JOB} steps`);
  }
  const at = now();
  const final = r.status !== "running";
  const row = { status: r.status, name: r.name, sandbox: r.sandbox, exit_code: r.exitCode, reason: r.reason, finished_at: final ? at : null };
  await ex
    .insertInto("job_steps")
    .values({ job_id: jobId, step_id: r.step, log_offset: r.logOffset, started_at: final ? null : at, ...row })
    .onConflict((oc) => oc.columns(["job_id", "step_id"]).doUpdateSet(row))
    .execute();
}

/** The steps of these jobs, in the order they started, by job. */
export async function stepsOf(ex: Executor, jobIds: string[]): Promise<Map<string, JobStep[]>> {
  const byJob = new Map<string, JobStep[]>(jobIds.map((id) => [id, []]));
  if (jobIds.length === 0) return byJob;
  const rows = await ex.selectFrom("job_steps").selectAll().where("job_id", "in", jobIds).orderBy("log_offset").orderBy("started_at").execute();
  for (const r of rows) {
    byJob.get(r.job_id)?.push({
      id: r.step_id,
      name: r.name,
      status: r.status as JobStep["status"],
      sandbox: Number(r.sandbox),
      logOffset: Number(r.log_offset),
      exitCode: r.exit_code === null ? null : Number(r.exit_code),
      reason: r.reason,
      startedAt: r.started_at,
      finishedAt: r.finished_at,
    });
  }
  return byJob;
}

/** A job leased again starts its steps afresh, as it does its log. */
export async function clearSteps(ex: Executor, jobId: string): Promise<void> {
  await ex.deleteFrom("job_steps").where("job_id", "=", jobId).execute();
}
