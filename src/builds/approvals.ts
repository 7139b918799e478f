import { z } from "zod";
import { AppError } from "../errors.js";
import type { Executor, Tx } from "../store/database.js";
import { now } from "../store/ids.js";

/**
 * A manual step (or group) of a build, by its id in the pipeline tree and its name; id "0" is the
 * whole build (a pull request from a fork that waits before anything runs, see FORK_GATE).
 */
export const waitingStepSchema = z.object({
  id: z
    .string()
    .max(100)
    .regex(/^(0|[1-9][0-9]*(\.[1-9][0-9]*)*)$/, "a step id is its position in the pipeline, e.g. 2 or 3.1 (0: the whole build)"),
  name: z.string().min(1).max(500),
});
export type WaitingStep = z.infer<typeof waitingStepSchema>;

export const approvalSchema = z.object({
  step: z.string(),
  name: z.string(),
  requestedAt: z.string(),
  /** Display name of the owner or admin who approved; null while the step waits. */
  approvedBy: z.string().nullable(),
  approvedAt: z.string().nullable(),
});
export type Approval = z.infer<typeof approvalSchema>;

/** What a pull request from a fork waits at when its project wants to approve such builds. */
export const FORK_GATE: WaitingStep = { id: "0", name: "pull request from a fork" };

/** A job stopped at a manual step: the build now waits for an approval of it. */
export async function recordWait(tx: Tx, buildId: string, jobId: string, step: WaitingStep): Promise<void> {
  await tx.insertInto("build_approvals").values({ build_id: buildId, step_id: step.id, step_name: step.name, waiting_job_id: jobId, requested_at: now(), approved_by: null, approved_at: null, resume_job_id: null }).execute();
}

/** The manual steps a build stopped at, in order, with who approved them. */
export async function approvalsOf(ex: Executor, buildId: string): Promise<Approval[]> {
  const rows = await ex
    .selectFrom("build_approvals")
    .leftJoin("users", "users.id", "build_approvals.approved_by")
    .select(["build_approvals.step_id", "build_approvals.step_name", "build_approvals.requested_at", "build_approvals.approved_at", "users.name as approver"])
    .where("build_approvals.build_id", "=", buildId)
    .orderBy("build_approvals.requested_at")
    .execute();
  return rows.map((r) => ({ step: r.step_id, name: r.step_name, requestedAt: r.requested_at, approvedBy: r.approved_at ? (r.approver ?? "a removed user") : null, approvedAt: r.approved_at }));
}

/** Where a job starts (null: at the beginning) and which manual steps of its build may run. */
export async function resumePointOf(ex: Executor, buildId: string, jobId: string): Promise<{ resumeFrom: string | null; approvedSteps: string[] }> {
  const rows = await ex.selectFrom("build_approvals").select(["step_id", "resume_job_id"]).where("build_id", "=", buildId).where("approved_at", "is not", null).execute();
  return { resumeFrom: rows.find((r) => r.resume_job_id === jobId)?.step_id ?? null, approvedSteps: rows.map((r) => r.step_id) };
}

/** The step's waiting row; refused, with what the build waits for instead, when the step is not waiting or was approved already. */
export async function waitingApproval(tx: Tx, buildId: string, stepId: string): Promise<{ stepName: string; waitingJobId: string }> {
  const rows = await tx.selectFrom("build_approvals").selectAll().where("build_id", "=", buildId).execute();
  const row = rows.find((r) => r.step_id === stepId);
  if (row?.approved_at) throw alreadyApproved(row.step_name, stepId);
  if (!row) {
    const waiting = rows.find((r) => r.approved_at === null);
    const instead = waiting ? `; the build waits for step "${waiting.step_name}" (${waiting.step_id})` : "";
    throw new AppError(409, "not_waiting", `step ${stepId} is not waiting for an approval${instead}`);
  }
  return { stepName: row.step_name, waitingJobId: row.waiting_job_id };
}

/** Records the approval and the job that resumes from the step; only one approval of a step ever counts. */
export async function markApproved(tx: Tx, buildId: string, stepId: string, stepName: string, userId: string, resumeJobId: string): Promise<void> {
  const res = await tx.updateTable("build_approvals").set({ approved_by: userId, approved_at: now(), resume_job_id: resumeJobId }).where("build_id", "=", buildId).where("step_id", "=", stepId).where("approved_at", "is", null).executeTakeFirst();
  if (Number(res.numUpdatedRows) !== 1) throw alreadyApproved(stepName, stepId);
}

const alreadyApproved = (name: string, id: string) => new AppError(409, "already_approved", `step "${name}" (${id}) was approved already`);
