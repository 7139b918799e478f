import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { waitingStepSchema } from "../../builds/approvals.js";
import { commitIdSchema } from "../../builds/events.js";
import { LogGapError } from "../../builds/job-logs.js";
import { stepReportSchema } from "../../builds/job-steps.js";
import { AppError } from "../../errors.js";
import { knownHostsSchema } from "../../projects/known-hosts.js";
import { usesSsh } from "../../runner/git-checkout.js";
import { POLL_REPORT_BODY_LIMIT, pollReportSchema } from "../../scm/poll-report.js";
import { secretNameSchema } from "../../secrets/secret-variables.js";
import type { Services } from "../../services.js";
import { envFileTextSchema } from "./env-file-key.js";

const runner = { access: { kind: "runner" } } as const;
const jobParams = z.object({ jobId: z.string().min(1).max(64) });
const runnerId = (request: FastifyRequest) => request.runnerId!;
const LOG_DATA_MAX = 512 * 1024;
/** A log chunk's base64 (up to LOG_DATA_MAX; the runner sends 256 KiB of output, 342 KiB encoded) outgrows the app's body limit. */
export const RUNNER_LOG_BODY_LIMIT = LOG_DATA_MAX + 1024;

/**
 * The API runners use (a runner token as bearer): lease a job, keep the lease alive, get the clone credentials, send log
 * chunks, fetch the secrets the config names, have its encrypted env files opened, and finish. The server never runs steps itself.
 */
export const runnerApiRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { builds } = services;

  app.post(
    "/runner/lease",
    {
      // Each idle runner slot asks every few seconds: logging every answer would bury the log.
      logLevel: "warn",
      config: runner,
      schema: {
        summary: "Lease the next job (long poll)",
        description: "Waits up to `waitMs` for a job; 204 when none came. The lease lasts 30 s; heartbeats extend it.",
        body: z.object({ waitMs: z.number().int().min(0).max(60_000).default(25_000) }).strict(),
      },
    },
    async (request, reply) => {
      // The connection closing means the runner hung up (an in-process caller has no socket to close).
      const aborter = new AbortController();
      const socket = request.raw.socket as { once?(e: string, f: () => void): void; off?(e: string, f: () => void): void; destroyed?: boolean } | undefined;
      const hangUp = () => aborter.abort();
      socket?.once?.("close", hangUp);
      // A runner that hung up before this handler ran has closed already: no event will come.
      if (socket?.destroyed === true) hangUp();
      const job = await builds.lease(runnerId(request), request.body.waitMs, aborter.signal);
      socket?.off?.("close", hangUp);
      // Nobody is left to run a job leased to a runner that hung up: it goes back to the queue.
      if (job && (aborter.signal.aborted || socket?.destroyed === true)) {
        await builds.release(runnerId(request), job.jobId);
        return reply.code(204).send();
      }
      if (!job) return reply.code(204).send();
      return { job };
    },
  );

  app.post("/runner/jobs/:jobId/heartbeat", { logLevel: "warn", config: runner, schema: { summary: "Extend a lease; says whether the job was canceled", params: jobParams, body: z.object({}).strict().optional() } }, async (request) =>
    builds.heartbeat(runnerId(request), request.params.jobId),
  );

  app.post(
    "/runner/jobs/:jobId/steps",
    {
      config: runner,
      schema: {
        summary: "Report a step's start or end",
        description: "Sent when a step starts (status running) and when it ends or is skipped; `logOffset` is where its output starts in the job's log.",
        params: jobParams,
        body: stepReportSchema,
      },
    },
    async (request, reply) => {
      await builds.reportStep(runnerId(request), request.params.jobId, request.body);
      return reply.code(204).send();
    },
  );

  app.post(
    "/runner/jobs/:jobId/log",
    {
      config: runner,
      bodyLimit: RUNNER_LOG_BODY_LIMIT,
      schema: {
        summary: "Append a chunk of (masked) output",
        description: "Once the log reached the server's cap (maxJobLogBytes) the answer says `truncated`: later chunks are dropped, so stop sending them.",
        params: jobParams,
        body: z.object({ offset: z.number().int().min(0), data: z.string().max(LOG_DATA_MAX).base64() }).strict(),
        response: { 200: z.object({ size: z.number().int(), truncated: z.boolean() }) },
      },
    },
    async (request) => {
      try {
        return await builds.appendLog(runnerId(request), request.params.jobId, request.body.offset, Buffer.from(request.body.data, "base64"));
      } catch (err) {
        if (err instanceof LogGapError) throw new AppError(409, "log_gap", err.message, { "x-log-size": String(err.expected) });
        throw err;
      }
    },
  );

  app.post(
    "/runner/jobs/:jobId/secrets",
    {
      config: runner,
      schema: { summary: "The values of the project secrets the pipeline names", description: "Refused for pull-request builds: untrusted changes get no secrets.", params: jobParams, body: z.object({ names: z.array(secretNameSchema).max(200) }).strict() },
    },
    async (request) => {
      const leased = await builds.leasedJob(runnerId(request), request.params.jobId);
      if (leased.pullRequest !== null) throw new AppError(403, "untrusted_build", "builds of pull requests get no secrets");
      const all = await services.secrets.reveal(services.store.db, { kind: "project", id: leased.projectId });
      return { secrets: Object.fromEntries(request.body.names.filter((n) => all.has(n)).map((n) => [n, all.get(n)!])) };
    },
  );

  app.post(
    "/runner/jobs/:jobId/image-cache",
    {
      config: runner,
      schema: {
        summary: "The key of the project's image cache, and whether this job may write it",
        description:
          "P10: images of services with `cached: true` are kept on the runner, sealed with this key, derived from the project's data key (deleting the project makes them unreadable) and never shared with another project. Builds of pull requests read but never write (`write: false`). Entries older than `maxAgeDays` are removed.",
        params: jobParams,
        body: z.object({}).strict().optional(),
        response: { 200: z.object({ key: z.string(), write: z.boolean(), maxAgeDays: z.number().int() }) },
      },
    },
    async (request) => {
      const leased = await builds.leasedJob(runnerId(request), request.params.jobId);
      const key = await services.box.ownerKey(services.store.db, { kind: "project", id: leased.projectId }, "image-cache");
      return { key: key.toString("base64"), write: leased.pullRequest === null, maxAgeDays: services.settings.imageCacheMaxDays };
    },
  );

  app.post(
    "/runner/jobs/:jobId/env-files",
    {
      config: runner,
      schema: {
        summary: "The variables of an encrypted env file the pipeline names",
        description:
          "Opened with the project's private key, which never leaves the server, only for the runner holding the job's lease. Refused for pull-request builds. 422 `env_file_unreadable` names the file and line that do not open.",
        params: jobParams,
        body: z.object({ path: z.string().min(1).max(1000), text: envFileTextSchema }).strict(),
        response: { 200: z.object({ env: z.record(z.string(), z.string()) }) },
      },
    },
    async (request) => {
      const leased = await builds.leasedJob(runnerId(request), request.params.jobId);
      if (leased.pullRequest !== null) throw new AppError(403, "untrusted_build", "builds of pull requests get no secrets, so no encrypted env files either");
      return { env: await services.envFileKeys.open(leased.projectId, request.body.path, request.body.text) };
    },
  );

  app.post(
    "/runner/jobs/:jobId/checkout",
    {
      config: runner,
      schema: {
        summary: "The credentials to clone the job's repository",
        description:
          "P01: the project's deploy key (private half), only to the runner holding the job's lease, which writes it into the sandbox's tmpfs for the clone alone and removes it before the first step. `knownHosts`: the git host's pinned keys, which the clone insists on; null while none are pinned (the clone then reports the key it saw).",
        params: jobParams,
        body: z.object({}).strict().optional(),
      },
    },
    async (request) => {
      const { projectId } = await builds.leasedJob(runnerId(request), request.params.jobId);
      const { privateKey } = await services.deployKeys.revealDeployKey(projectId);
      return { privateKey, knownHosts: (await services.projects.get(projectId)).knownHosts };
    },
  );

  app.post(
    "/runner/jobs/:jobId/known-hosts",
    {
      config: runner,
      schema: {
        summary: "Report the git host keys the first clone saw (trust on first use)",
        description: "Pins them for the job's project when it has none pinned yet; a pin already there is kept. Every entry must name the repository's host.",
        params: jobParams,
        body: z.object({ knownHosts: knownHostsSchema }).strict(),
        response: { 200: z.object({ pinned: z.boolean() }) },
      },
    },
    async (request) => {
      const { projectId } = await builds.leasedJob(runnerId(request), request.params.jobId);
      return { pinned: await services.projects.pinFirstSeenHostKeys(projectId, runnerId(request), request.body.knownHosts) };
    },
  );


  app.post(
    "/runner/polls/lease",
    {
      logLevel: "warn",
      config: runner,
      schema: {
        summary: "Lease the next repository poll that is due",
        description:
          "P08: for projects whose repository cannot call Slipway. 204 when none is due. The runner lists the repository's heads and tags with `git ls-remote` in a sandbox and reports them within 2 minutes. For an SSH URL it gets the deploy key and the pinned host keys, as for a clone.",
        body: z.object({}).strict().optional(),
      },
    },
    async (request, reply) => {
      const poll = await services.scm.polls.lease(runnerId(request));
      if (!poll) return reply.code(204).send();
      if (!usesSsh(poll.repositoryUrl)) return { poll };
      const { privateKey } = await services.deployKeys.revealDeployKey(poll.projectId);
      return { poll: { ...poll, credentials: { privateKey, knownHosts: (await services.projects.get(poll.projectId)).knownHosts } } };
    },
  );

  app.post(
    "/runner/polls/:projectId/result",
    {
      config: runner,
      bodyLimit: POLL_REPORT_BODY_LIMIT,
      schema: {
        summary: "Report a repository poll",
        description: "`refs`: each head and tag (`refs/heads/…`, `refs/tags/…`) with the commit it points at; those new or moved since the last poll are built (the first poll only learns them). `error`: why listing failed, shown on the project. `knownHosts`: what ssh saw when no host key was pinned.",
        params: z.object({ projectId: z.string().min(1).max(64) }),
        body: pollReportSchema,
        response: { 200: z.object({ builds: z.number() }) },
      },
    },
    async (request) => {
      const { projectId } = request.params;
      await services.scm.polls.assertHeld(runnerId(request), projectId);
      const body = request.body;
      if ("refs" in body && body.knownHosts !== undefined) await services.projects.pinFirstSeenHostKeys(projectId, runnerId(request), body.knownHosts);
      return services.scm.polls.report(runnerId(request), projectId, "refs" in body ? { refs: body.refs } : body);
    },
  );

  app.post(
    "/runner/jobs/:jobId/finish",
    {
      config: runner,
      schema: {
        summary: "Finish a job",
        description: "`waiting-for-approval`: the job stopped at the manual step `waitingFor` (nothing after it ran); `commit` is the revision it checked out, which a job resumed after the approval checks out too.",
        params: jobParams,
        body: z
          .object({
            status: z.enum(["success", "failed", "error", "waiting-for-approval"]),
            reason: z.string().max(2000).nullable().default(null),
            waitingFor: waitingStepSchema.strict().optional(),
            commit: commitIdSchema.optional(),
          })
          .strict()
          .refine((b) => (b.status === "waiting-for-approval") === (b.waitingFor !== undefined), { message: "waitingFor goes with status waiting-for-approval, and only with it", path: ["waitingFor"] }),
      },
    },
    async (request, reply) => {
      const { status, reason, waitingFor, commit } = request.body;
      await builds.finish(runnerId(request), request.params.jobId, status === "waiting-for-approval" ? { status, step: waitingFor!, commit } : { status, reason });
      return reply.code(204).send();
    },
  );
};
