import { EventEmitter } from "node:events";
import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import { AppError, notFound } from "../errors.js";
import type { Store, Tx } from "../store/database.js";
import { inFuture, newId, now } from "../store/ids.js";
import type { BuildsTable, JobsTable } from "../store/schema.js";
import { approvalSchema, approvalsOf, FORK_GATE, markApproved, recordWait, resumePointOf, waitingApproval, waitingStepSchema, type Approval, type WaitingStep } from "./approvals.js";
import type { JobLogs } from "./job-logs.js";
import { clearSteps, jobStepSchema, recordStep, stepsOf, type JobStep, type StepReport } from "./job-steps.js";

export const buildStatuses = ["queued", "running", "waiting-for-approval", "success", "failed", "error", "canceled", "skipped"] as const;
export type BuildStatus = (typeof buildStatuses)[number];
const FINAL: readonly string[] = ["success", "failed", "error", "canceled", "skipped"];
const WAITING = "waiting-for-approval";

/** How a runner ends a job: done, or stopped at a manual step that needs an approval. */
export type JobOutcome =
  | { status: "success" | "failed" | "error"; reason: string | null }
  | { status: typeof WAITING; step: WaitingStep; commit?: string };

export const buildSchema = z.object({
  id: z.string(),
  project: z.string(),
  number: z.number(),
  branch: z.string().nullable(),
  tag: z.string().nullable(),
  commit: z.string().nullable(),
  message: z.string(),
  author: z.object({ name: z.string(), email: z.string() }),
  pullRequest: z.number().nullable(),
  trigger: z.string(),
  status: z.enum(buildStatuses),
  reason: z.string().nullable(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  /** The manual step (or group) the build waits at, while its status is waiting-for-approval. */
  waitingFor: waitingStepSchema.nullable(),
  /** Every manual step the build stopped at, in order, and who approved it. */
  approvals: z.array(approvalSchema),
  jobs: z.array(
    z.object({
      id: z.string(),
      name: z.string(),
      status: z.enum(buildStatuses),
      reason: z.string().nullable(),
      attempts: z.number(),
      startedAt: z.string().nullable(),
      finishedAt: z.string().nullable(),
      logBytes: z.number(),
      /** Every step the job reached, live: running, then how it ended. */
      steps: z.array(jobStepSchema),
    }),
  ),
});
export type Build = z.infer<typeof buildSchema>;

export interface NewBuild {
  branch?: string;
  tag?: string;
  commit?: string;
  message?: string;
  author?: { name: string; email: string };
  pullRequest?: number;
  /** A pull request from a fork: waits for an approval first when its project asks for that. */
  fromFork?: boolean;
  trigger: "api" | "webhook" | "poll";
}

/** What a runner gets when it leases a job: enough to check out and run the build, and nothing of other projects. */
export interface LeasedJob {
  jobId: string;
  buildId: string;
  projectId: string;
  repositoryUrl: string | null;
  /** When set, the job's sandboxes reach only these entries. */
  egressAllowlist: string[] | null;
  branch: string | null;
  tag: string | null;
  commit: string | null;
  message: string;
  author: { name: string; email: string };
  pullRequest: number | null;
  buildNumber: number;
  leaseExpiresAt: string;
  /** Set for a job queued by an approval: it runs the pipeline from this step (or group) on. */
  resumeFrom: string | null;
  /** Manual steps and groups of the build that were approved: they run; other manual ones stop the job. */
  approvedSteps: string[];
}

export const LEASE_MS = 30_000;
const MAX_ATTEMPTS = 2;

/**
 * Builds and their jobs: created queued, leased by runners (with an expiry that heartbeats
 * extend), finished by them. A job whose lease runs out is retried once and then failed with the
 * reason, so a runner or server killed mid-build leaves nothing stuck.
 */
export class Builds {
  private readonly queued = new EventEmitter();
  private readonly changed = new EventEmitter();

  constructor(
    private readonly store: Store,
    private readonly logs: JobLogs,
    private readonly projectFacts: (projectId: string) => Promise<{ repositoryUrl: string | null; egressAllowlist: string[] | null }>,
    private readonly audit: AuditLog,
  ) {
    this.queued.setMaxListeners(0);
  }

  /** Calls `listener` after each committed change of a build's status (it reads the build itself). */
  onChange(listener: (buildId: string) => void): void {
    this.changed.on("build", listener);
  }

  async create(projectId: string, input: NewBuild): Promise<Build> {
    const id = newId("bld");
    await this.store.db.transaction().execute(async (tx) => {
      await this.store.lock(tx, `builds:${projectId}`);
      const last = await tx.selectFrom("builds").select((eb) => eb.fn.max("number").as("n")).where("project_id", "=", projectId).executeTakeFirst();
      // Fails closed: anything but an explicit "run" makes a fork's pull request wait.
      const gated = input.fromFork === true && (await tx.selectFrom("projects").select("fork_builds").where("id", "=", projectId).executeTakeFirst())?.fork_builds !== "run";
      const row: BuildsTable = {
        id,
        project_id: projectId,
        number: Number(last?.n ?? 0) + 1,
        branch: input.branch ?? null,
        tag: input.tag ?? null,
        commit_sha: input.commit ?? null,
        message: input.message ?? "",
        author_name: input.author?.name ?? "",
        author_email: input.author?.email ?? "",
        pr_number: input.pullRequest ?? null,
        trigger: input.trigger,
        status: gated ? WAITING : "queued",
        reason: null,
        created_at: now(),
        started_at: null,
        finished_at: null,
      };
      await tx.insertInto("builds").values(row).execute();
      const job = newJob(id, "pipeline");
      if (!gated) return void (await tx.insertInto("jobs").values(job).execute());
      // Nothing of a fork's code runs, not even its pipeline config, until an owner or admin approves it.
      await tx.insertInto("jobs").values({ ...job, status: WAITING, reason: `waiting for an approval of the ${FORK_GATE.name}` }).execute();
      await recordWait(tx, id, job.id, FORK_GATE);
    });
    this.queued.emit("job");
    this.changed.emit("build", id);
    return this.get(id);
  }

  async get(id: string): Promise<Build> {
    const row = await this.store.db.selectFrom("builds").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row) throw notFound("build");
    const jobs = await this.store.db.selectFrom("jobs").selectAll().where("build_id", "=", id).orderBy("created_at").execute();
    return toBuild(row, jobs, await approvalsOf(this.store.db, id), await stepsOf(this.store.db, jobs.map((j) => j.id)));
  }

  async projectOf(buildId: string): Promise<string | undefined> {
    return (await this.store.db.selectFrom("builds").select("project_id").where("id", "=", buildId).executeTakeFirst())?.project_id;
  }

  /** `withoutPullRequests` leaves out builds of pull requests: they carry their head branch's name, which a fork may call `main`. */
  async list(projectId: string, opts: { before?: number; limit: number; branch?: string; status?: string; withoutPullRequests?: boolean }): Promise<Build[]> {
    let q = this.store.db.selectFrom("builds").selectAll().where("project_id", "=", projectId);
    if (opts.before) q = q.where("number", "<", opts.before);
    if (opts.branch) q = q.where("branch", "=", opts.branch);
    if (opts.status) q = q.where("status", "=", opts.status);
    if (opts.withoutPullRequests) q = q.where("pr_number", "is", null);
    const rows = await q.orderBy("number", "desc").limit(opts.limit).execute();
    return Promise.all(rows.map((r) => this.get(r.id)));
  }

  async job(buildId: string, jobId: string): Promise<JobsTable> {
    const job = await this.store.db.selectFrom("jobs").selectAll().where("id", "=", jobId).where("build_id", "=", buildId).executeTakeFirst();
    if (!job) throw notFound("job");
    return job;
  }

  /** Cancels a build: queued and waiting jobs end at once; running ones are told at their next heartbeat (every few seconds). */
  async cancel(_ctx: RequestContext, buildId: string): Promise<Build> {
    const jobs = await this.store.db.transaction().execute(async (tx) => {
      // The lock an approval takes: a cancel and an approval of one build never interleave.
      await this.store.lock(tx, `build:${buildId}`);
      const build = await tx.selectFrom("builds").select("status").where("id", "=", buildId).executeTakeFirst();
      if (!build) throw notFound("build");
      if (FINAL.includes(build.status)) throw new AppError(409, "build_finished", `the build already ended (${build.status})`);
      await tx.updateTable("jobs").set({ status: "canceled", reason: "canceled", finished_at: now() }).where("build_id", "=", buildId).where("status", "in", ["queued", WAITING]).execute();
      await tx.updateTable("jobs").set({ cancel_requested: 1 }).where("build_id", "=", buildId).where("status", "=", "running").execute();
      const queued = await tx.selectFrom("jobs").select("id").where("build_id", "=", buildId).where("status", "=", "canceled").execute();
      await this.settle(tx, buildId);
      return queued.map((j) => j.id);
    });
    for (const id of jobs) this.logs.ended(id);
    this.changed.emit("build", buildId);
    return this.get(buildId);
  }

  /**
   * Leases the oldest queued job to a runner, waiting up to `waitMs` for one to be queued. Runners
   * are woken by the queue itself, not by polling, so a pushed build starts at once.
   */
  async lease(runnerId: string, waitMs: number, signal?: AbortSignal): Promise<LeasedJob | null> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const job = await this.tryLease(runnerId);
      if (job || Date.now() >= deadline || signal?.aborted) return job;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.queued.off("job", done);
          signal?.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, deadline - Date.now());
        this.queued.once("job", done);
        signal?.addEventListener("abort", done);
      });
    }
  }

  private async tryLease(runnerId: string): Promise<LeasedJob | null> {
    const leased = await this.store.db.transaction().execute(async (tx) => {
      await this.store.lock(tx, "job-queue");
      const job = await tx.selectFrom("jobs").selectAll().where("status", "=", "queued").orderBy("created_at").limit(1).executeTakeFirst();
      if (!job) return null;
      const leaseExpiresAt = inFuture(LEASE_MS);
      await tx.updateTable("jobs").set({ status: "running", runner_id: runnerId, lease_expires_at: leaseExpiresAt, attempts: Number(job.attempts) + 1, started_at: job.started_at ?? now() }).where("id", "=", job.id).execute();
      // A build resumed after an approval keeps the time it first started.
      await tx
        .updateTable("builds")
        .set((eb) => ({ status: "running", started_at: eb.fn.coalesce("started_at", eb.val(now())) }))
        .where("id", "=", job.build_id)
        .where("status", "=", "queued")
        .execute();
      const build = await tx.selectFrom("builds").selectAll().where("id", "=", job.build_id).executeTakeFirstOrThrow();
      return { job, build, leaseExpiresAt, resume: await resumePointOf(tx, build.id, job.id) };
    });
    if (!leased) return null;
    const { job, build, leaseExpiresAt, resume } = leased;
    this.changed.emit("build", build.id);
    return {
      jobId: job.id,
      buildId: build.id,
      projectId: build.project_id,
      ...(await this.projectFacts(build.project_id)),
      branch: build.branch,
      tag: build.tag,
      commit: build.commit_sha,
      message: build.message,
      author: { name: build.author_name, email: build.author_email },
      pullRequest: build.pr_number === null ? null : Number(build.pr_number),
      buildNumber: Number(build.number),
      leaseExpiresAt,
      ...resume,
    };
  }

  /** Hands a job back to the queue untouched, as if it had never been leased. */
  async release(runnerId: string, jobId: string): Promise<void> {
    const job = await this.held(runnerId, jobId);
    await this.store.db.updateTable("jobs").set({ status: "queued", runner_id: null, lease_expires_at: null, attempts: Math.max(0, Number(job.attempts) - 1) }).where("id", "=", jobId).execute();
    this.queued.emit("job");
  }

  /** Extends the lease of a job the runner holds; says whether the job was canceled meanwhile. */
  async heartbeat(runnerId: string, jobId: string): Promise<{ cancel: boolean; leaseExpiresAt: string }> {
    const job = await this.held(runnerId, jobId);
    const leaseExpiresAt = inFuture(LEASE_MS);
    const res = await this.store.db.updateTable("jobs").set({ lease_expires_at: leaseExpiresAt }).where("id", "=", jobId).where("runner_id", "=", runnerId).where("status", "=", "running").executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw leaseLost();
    return { cancel: Number(job.cancel_requested) === 1, leaseExpiresAt };
  }

  async appendLog(runnerId: string, jobId: string, offset: number, data: Buffer): Promise<{ size: number; truncated: boolean }> {
    const { projectId } = await this.leasedJob(runnerId, jobId);
    return this.logs.append(projectId, jobId, offset, data);
  }

  async reportStep(runnerId: string, jobId: string, report: StepReport): Promise<void> {
    await this.held(runnerId, jobId);
    await recordStep(this.store.db, jobId, report);
  }

  async finish(runnerId: string, jobId: string, outcome: JobOutcome): Promise<void> {
    const job = await this.held(runnerId, jobId);
    await this.store.db.transaction().execute(async (tx) => {
      const canceled = Number(job.cancel_requested) === 1;
      const status = canceled ? "canceled" : outcome.status;
      const reason = canceled ? "canceled" : outcome.status === WAITING ? `waiting for an approval of step "${outcome.step.name}"` : outcome.reason;
      const res = await tx.updateTable("jobs").set({ status, reason, finished_at: now(), lease_expires_at: null }).where("id", "=", jobId).where("runner_id", "=", runnerId).where("status", "=", "running").executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) throw leaseLost();
      if (!canceled && outcome.status === WAITING) {
        await recordWait(tx, job.build_id, jobId, outcome.step);
        // The approval is of this revision: a job resumed later checks out the same one, not a newer head of the branch.
        if (outcome.commit) await tx.updateTable("builds").set({ commit_sha: outcome.commit }).where("id", "=", job.build_id).where("commit_sha", "is", null).execute();
      }
      await this.settle(tx, job.build_id);
    });
    this.logs.ended(jobId);
    this.changed.emit("build", job.build_id);
  }

  /**
   * An owner's or admin's approval of the manual step a build waits at: recorded with who gave it,
   * audited, and a new job of the build queued that runs the pipeline from that step on.
   */
  async approve(ctx: RequestContext, buildId: string, stepId: string): Promise<Build> {
    await this.store.db.transaction().execute(async (tx) => {
      await this.store.lock(tx, `build:${buildId}`);
      const build = await tx.selectFrom("builds").innerJoin("projects", "projects.id", "builds.project_id").select(["builds.status", "projects.org_id"]).where("builds.id", "=", buildId).executeTakeFirst();
      if (!build) throw notFound("build");
      if (FINAL.includes(build.status)) throw new AppError(409, "build_finished", `the build already ended (${build.status}); start a new build to run its manual steps`);
      const { stepName, waitingJobId } = await waitingApproval(tx, buildId, stepId);
      const resumeJob = newJob(buildId, `pipeline from ${stepName}`);
      await tx.insertInto("jobs").values(resumeJob).execute();
      await markApproved(tx, buildId, stepId, stepName, ctx.principal.userId, resumeJob.id);
      const { name } = await tx.selectFrom("users").select("name").where("id", "=", ctx.principal.userId).executeTakeFirstOrThrow();
      // The waiting job did its part; whether the build passes is now up to the job that resumes it.
      const res = await tx.updateTable("jobs").set({ status: "success", reason: `approved by ${name}` }).where("id", "=", waitingJobId).where("status", "=", WAITING).executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) throw new AppError(409, "not_waiting", `step "${stepName}" is not waiting for an approval (the build is ${build.status})`);
      await tx.updateTable("builds").set({ status: "queued", reason: null }).where("id", "=", buildId).execute();
      await this.audit.record({ action: "build.step_approved", ...actorOf(ctx), orgId: build.org_id, target: buildId, details: { step: stepId, name: stepName } }, tx);
    });
    this.queued.emit("job");
    this.changed.emit("build", buildId);
    return this.get(buildId);
  }

  /** Jobs whose runner went quiet: queued again once, then failed with the reason. */
  async expireLeases(): Promise<number> {
    const expired = await this.store.db.selectFrom("jobs").selectAll().where("status", "=", "running").where("lease_expires_at", "<", now()).execute();
    for (const job of expired) {
      const retry = Number(job.attempts) < MAX_ATTEMPTS && Number(job.cancel_requested) !== 1;
      await this.store.db.transaction().execute(async (tx) => {
        await tx
          .updateTable("jobs")
          .set(retry ? { status: "queued", runner_id: null, lease_expires_at: null, reason: "the runner stopped answering; retried", log_bytes: 0 } : { status: "error", lease_expires_at: null, finished_at: now(), reason: "the runner stopped answering (lease expired) twice; check the runner and restart the build" })
          .where("id", "=", job.id)
          .where("status", "=", "running")
          .execute();
        // A retry starts its log and steps afresh; the lost attempt's partial output would not line up with it.
        if (retry) {
          await tx.deleteFrom("log_chunks").where("job_id", "=", job.id).execute();
          await clearSteps(tx, job.id);
        } else await this.settle(tx, job.build_id);
      });
      if (retry) this.queued.emit("job");
      else {
        this.logs.ended(job.id);
        this.changed.emit("build", job.build_id);
      }
    }
    return expired.length;
  }

  /** The project and trust of a job this runner holds. */
  async leasedJob(runnerId: string, jobId: string): Promise<{ projectId: string; pullRequest: number | null }> {
    const job = await this.held(runnerId, jobId);
    const build = await this.store.db.selectFrom("builds").select(["project_id", "pr_number"]).where("id", "=", job.build_id).executeTakeFirstOrThrow();
    return { projectId: build.project_id, pullRequest: build.pr_number === null ? null : Number(build.pr_number) };
  }

  private async held(runnerId: string, jobId: string): Promise<JobsTable> {
    const job = await this.store.db.selectFrom("jobs").selectAll().where("id", "=", jobId).executeTakeFirst();
    if (!job || job.runner_id !== runnerId || job.status !== "running") throw leaseLost();
    return job;
  }

  /** A build ends when all its jobs have: failed if any failed, else success. One stopped at a manual step makes it wait, unended. */
  private async settle(tx: Tx, buildId: string): Promise<void> {
    const jobs = await tx.selectFrom("jobs").select(["status", "reason"]).where("build_id", "=", buildId).execute();
    if (jobs.some((j) => j.status === "queued" || j.status === "running")) return;
    const waiting = jobs.find((j) => j.status === WAITING);
    if (waiting) {
      await tx.updateTable("builds").set({ status: WAITING, reason: waiting.reason, finished_at: null }).where("id", "=", buildId).execute();
      return;
    }
    const order = ["error", "failed", "canceled", "success", "skipped"];
    const worst = order.find((s) => jobs.some((j) => j.status === s)) ?? "success";
    const reason = jobs.find((j) => j.status === worst)?.reason ?? null;
    await tx.updateTable("builds").set({ status: worst, reason, finished_at: now() }).where("id", "=", buildId).execute();
  }
}

const leaseLost = () => new AppError(409, "lease_lost", "this runner no longer holds the job (its lease expired or it was reassigned); drop it");

function newJob(buildId: string, name: string): JobsTable {
  return { id: newId("job"), build_id: buildId, name, status: "queued", runner_id: null, lease_expires_at: null, attempts: 0, cancel_requested: 0, reason: null, created_at: now(), started_at: null, finished_at: null, log_bytes: 0 };
}

function toBuild(r: BuildsTable, jobs: JobsTable[], approvals: Approval[], steps: Map<string, JobStep[]>): Build {
  const waiting = r.status === WAITING ? approvals.find((a) => a.approvedAt === null) : undefined;
  return {
    id: r.id,
    project: r.project_id,
    number: Number(r.number),
    branch: r.branch,
    tag: r.tag,
    commit: r.commit_sha,
    message: r.message,
    author: { name: r.author_name, email: r.author_email },
    pullRequest: r.pr_number === null ? null : Number(r.pr_number),
    trigger: r.trigger,
    status: r.status as BuildStatus,
    reason: r.reason,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    waitingFor: waiting ? { id: waiting.step, name: waiting.name } : null,
    approvals,
    jobs: jobs.map((j) => ({ id: j.id, name: j.name, status: j.status as BuildStatus, reason: j.reason, attempts: Number(j.attempts), startedAt: j.started_at, finishedAt: j.finished_at, logBytes: Number(j.log_bytes), steps: steps.get(j.id) ?? [] })),
  };
}
