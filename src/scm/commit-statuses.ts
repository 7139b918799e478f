import type { Logger } from "pino";
import type { Build } from "../builds/builds.js";
import type { ScmConnections } from "./connections.js";
import { ScmError, type CommitStatus } from "./provider.js";
import type { RepositoryLinks } from "./repository-links.js";

export const STATUS_CONTEXT = "slipway";

/** The status a build shows on its commit. */
export function statusOf(build: Pick<Build, "status" | "reason" | "startedAt" | "finishedAt">): Pick<CommitStatus, "state" | "description"> {
  switch (build.status) {
    case "queued":
      return { state: "pending", description: "Queued" };
    case "running":
      return { state: "pending", description: "Running" };
    case "waiting-for-approval":
      return { state: "pending", description: `Waiting: ${build.reason ?? "for an approval"}` };
    case "success":
      return { state: "success", description: `Passed${took(build)}` };
    case "failed":
      return { state: "failure", description: `Failed${took(build)}: ${build.reason ?? "a step failed"}` };
    case "skipped":
      return { state: "success", description: "Skipped" };
    case "canceled":
      return { state: "error", description: "Canceled" };
    default:
      return { state: "error", description: `Errored: ${build.reason ?? "see the build"}` };
  }
}

function took(build: Pick<Build, "startedAt" | "finishedAt">): string {
  if (!build.startedAt || !build.finishedAt) return "";
  const s = Math.max(0, Math.round((Date.parse(build.finishedAt) - Date.parse(build.startedAt)) / 1000));
  return ` in ${s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`}`;
}

/**
 * Posts each build's status to its commit at the linked provider, with a link to the build. Posts
 * run in the background, one build's in order, so a slow or failing provider never holds a build
 * up; the provider client retries outages with backoff, and what still fails is noted on the link
 * for the project page.
 */
export class CommitStatuses {
  /** Each build's chain of posts, so a late "pending" never lands after its "success". */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly posted = new Map<string, string>();

  constructor(
    private readonly builds: { get(id: string): Promise<Build> },
    private readonly links: RepositoryLinks,
    private readonly connections: ScmConnections,
    private readonly buildUrl: (build: Build) => string,
    private readonly log: Logger,
  ) {}

  /** Queues a post of the build's current status; returns at once. */
  changed(buildId: string): void {
    const next = (this.chains.get(buildId) ?? Promise.resolve()).then(() => this.post(buildId));
    this.chains.set(buildId, next);
    void next.finally(() => {
      if (this.chains.get(buildId) === next) this.chains.delete(buildId);
    });
  }

  /** Waits for every queued post (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.chains.size) await Promise.all(this.chains.values());
  }

  private async post(buildId: string): Promise<void> {
    try {
      const build = await this.builds.get(buildId);
      const target = build.commit ? await this.links.target(build.project) : undefined;
      if (!build.commit || !target) return;
      if (!target.connectionId) {
        await this.links.setProblem(build.project, "Build statuses are not posted: the account that linked this repository was disconnected. Unlink the repository and link it again with a connected account.");
        return;
      }
      const status = statusOf(build);
      const said = `${status.state}\n${status.description}`;
      if (this.posted.get(buildId) === said) return;
      const commit = build.commit;
      await this.connections.useConnection(target.connectionId, ({ provider, token }) =>
        provider.setCommitStatus(token, target.repo, commit, { ...status, targetUrl: this.buildUrl(build), context: STATUS_CONTEXT }),
      );
      if (status.state === "pending") this.posted.set(buildId, said);
      else this.posted.delete(buildId);
      await this.links.setProblem(build.project, null);
    } catch (err) {
      if (!(err instanceof ScmError)) {
        this.log.error({ err, buildId }, "posting a commit status failed");
        return;
      }
      this.log.warn({ buildId, kind: err.kind }, "the provider refused a commit status");
      const build = await this.builds.get(buildId).catch(() => undefined);
      if (build) await this.links.setProblem(build.project, `Build statuses cannot be posted: ${err.message}`).catch(() => undefined);
    }
  }
}
