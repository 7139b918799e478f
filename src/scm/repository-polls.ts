import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import { AppError, notFound } from "../errors.js";
import type { Store } from "../store/database.js";
import { now } from "../store/ids.js";
import type { PollResult } from "./poll-report.js";

export const MIN_POLL_SECONDS = 60;
export const MAX_POLL_SECONDS = 24 * 3600;
/** How long a runner may take over one poll (`git ls-remote` is bounded well below this). */
export const POLL_LEASE_MS = 2 * 60_000;
/** New heads and tags one poll may start builds for; a burst beyond it is recorded, not built. */
export const MAX_BUILDS_PER_POLL = 20;

export const pollIntervalSchema = z.number().int().min(MIN_POLL_SECONDS).max(MAX_POLL_SECONDS);

export const pollingSchema = z.object({
  intervalSeconds: z.number(),
  polledAt: z.string().nullable().describe("When a runner last listed the repository's refs."),
  problem: z.string().nullable().describe("Why the last poll failed, with what git said; null when it worked."),
});
export type Polling = z.infer<typeof pollingSchema>;

export interface PollLease {
  projectId: string;
  repositoryUrl: string;
  egressAllowlist: string[] | null;
}

/**
 * P08: repositories Slipway cannot be told about (a git server behind a firewall with no way to
 * call out) are polled: a runner, which sits where the git server is reachable, lists the refs
 * with `git ls-remote` in a sandbox at the project's interval; a head or tag that moved since the
 * last poll becomes a build. The server itself never connects to the git server.
 */
export class RepositoryPolls {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly startBuild: (projectId: string, ref: string, commit: string) => Promise<void>,
  ) {}

  async get(projectId: string): Promise<Polling | null> {
    return (await this.getMany([projectId])).get(projectId) ?? null;
  }

  async getMany(projectIds: string[]): Promise<Map<string, Polling>> {
    if (!projectIds.length) return new Map();
    const rows = await this.store.db.selectFrom("repository_polls").selectAll().where("project_id", "in", projectIds).execute();
    return new Map(rows.map((r) => [r.project_id, { intervalSeconds: Number(r.interval_s), polledAt: r.polled_at, problem: r.problem }]));
  }

  /** Turns polling on (the first poll is due at once), changes its interval, or turns it off (null). */
  async configure(ctx: RequestContext, project: { id: string; orgId: string }, intervalSeconds: number | null): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      if (intervalSeconds === null) await tx.deleteFrom("repository_polls").where("project_id", "=", project.id).execute();
      else
        await tx
          .insertInto("repository_polls")
          .values({ project_id: project.id, interval_s: intervalSeconds, refs: null, next_at: now(), runner_id: null, lease_expires_at: null, polled_at: null, problem: null })
          .onConflict((oc) => oc.column("project_id").doUpdateSet({ interval_s: intervalSeconds }))
          .execute();
      await this.audit.record({ action: "project.polling_changed", ...actorOf(ctx), orgId: project.orgId, target: project.id, details: { intervalSeconds } }, tx);
    });
  }

  /**
   * The project now points at another repository: what was learnt of the old one is dropped (the
   * next poll learns the new one's refs rather than building every one of them), and a poll of the
   * old one still running may no longer report.
   */
  async repositoryChanged(projectId: string): Promise<void> {
    await this.store.db.updateTable("repository_polls").set({ refs: null, runner_id: null, lease_expires_at: null, problem: null, next_at: now() }).where("project_id", "=", projectId).execute();
  }

  /** The poll due longest, for this runner to run; one runner at a time per project. */
  async lease(runnerId: string): Promise<PollLease | null> {
    return this.store.db.transaction().execute(async (tx) => {
      await this.store.lock(tx, "repository-polls");
      const at = now();
      const due = await tx
        .selectFrom("repository_polls")
        .innerJoin("projects", "projects.id", "repository_polls.project_id")
        .select(["repository_polls.project_id", "repository_polls.interval_s", "projects.repository_url", "projects.egress_allowlist"])
        .where("repository_polls.next_at", "<=", at)
        .where((eb) => eb.or([eb("repository_polls.lease_expires_at", "is", null), eb("repository_polls.lease_expires_at", "<", at)]))
        .where("projects.repository_url", "is not", null)
        .orderBy("repository_polls.next_at")
        .limit(1)
        .executeTakeFirst();
      if (!due) return null;
      await tx
        .updateTable("repository_polls")
        .set({ runner_id: runnerId, lease_expires_at: new Date(Date.now() + POLL_LEASE_MS).toISOString(), next_at: new Date(Date.now() + Number(due.interval_s) * 1000).toISOString() })
        .where("project_id", "=", due.project_id)
        .execute();
      return { projectId: due.project_id, repositoryUrl: due.repository_url!, egressAllowlist: due.egress_allowlist === null ? null : (JSON.parse(due.egress_allowlist) as string[]) };
    });
  }

  /** Whether this runner holds the project's poll now (for the credentials it asks for). */
  async assertHeld(runnerId: string, projectId: string): Promise<void> {
    const row = await this.store.db.selectFrom("repository_polls").select(["runner_id", "lease_expires_at"]).where("project_id", "=", projectId).executeTakeFirst();
    if (!row || row.runner_id !== runnerId || row.lease_expires_at === null || row.lease_expires_at < now()) throw leaseLost();
  }

  /**
   * A runner's answer. The first poll only learns the refs; later ones build each head or tag that
   * is new or moved (deleted ones build nothing). Says which builds it started.
   */
  async report(runnerId: string, projectId: string, result: PollResult): Promise<{ builds: number }> {
    await this.assertHeld(runnerId, projectId);
    if ("error" in result) {
      await this.release(runnerId, projectId, { problem: result.error });
      return { builds: 0 };
    }
    const row = await this.store.db.selectFrom("repository_polls").select("refs").where("project_id", "=", projectId).executeTakeFirst();
    if (!row) throw notFound("repository poll");
    const before = row.refs === null ? null : (JSON.parse(row.refs) as Record<string, string>);
    // Stored before any build starts: a crash in between must not build the same refs twice.
    await this.release(runnerId, projectId, { refs: JSON.stringify(result.refs), problem: null });
    if (before === null) return { builds: 0 };
    const moved = Object.entries(result.refs).filter(([ref, commit]) => before[ref] !== commit);
    for (const [ref, commit] of moved.slice(0, MAX_BUILDS_PER_POLL)) await this.startBuild(projectId, ref, commit);
    return { builds: Math.min(moved.length, MAX_BUILDS_PER_POLL) };
  }

  /** Ends the lease with what the poll found; only the runner that still holds it may (two reports of one poll would build twice). */
  private async release(runnerId: string, projectId: string, found: { refs?: string; problem: string | null }): Promise<void> {
    const res = await this.store.db
      .updateTable("repository_polls")
      .set({ ...found, runner_id: null, lease_expires_at: null, polled_at: now() })
      .where("project_id", "=", projectId)
      .where("runner_id", "=", runnerId)
      .executeTakeFirst();
    if (res.numUpdatedRows === 0n) throw leaseLost();
  }
}

const leaseLost = () => new AppError(409, "lease_lost", "this runner does not hold the project's poll (its lease expired or it was reassigned); drop it");
