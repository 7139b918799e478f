import type { ServerResponse } from "node:http";
import { Readable } from "node:stream";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { waitingStepSchema } from "../../builds/approvals.js";
import { buildSchema, buildStatuses } from "../../builds/builds.js";
import { commitIdSchema } from "../../builds/events.js";
import type { LogChunk } from "../../builds/job-logs.js";
import type { Services } from "../../services.js";
import { contextOf } from "../plugins/access.js";
import { projectParams, refPart } from "../schemas.js";

const buildParams = z.object({ buildId: z.string().min(1).max(64) });
const logParams = buildParams.extend({ jobId: z.string().min(1).max(64) });

/** The bytes of a log's chunks, for streaming it as text. */
async function* logBytes(chunks: AsyncIterable<LogChunk>): AsyncGenerator<Buffer> {
  for await (const c of chunks) yield c.data;
}

/** Resolves when the client has taken what was written, or has gone. */
const drained = (res: ServerResponse) =>
  new Promise<void>((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });

/** Builds: start one, list and read them, cancel, and follow a job's log live (Server-Sent Events). */
export const buildRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { builds, logs } = services;

  app.post(
    "/projects/:projectId/builds",
    {
      config: { access: { kind: "project", action: "project.builds.write" } },
      schema: {
        summary: "Start a build of a branch or tag",
        params: projectParams,
        body: z.object({ branch: refPart.optional(), tag: refPart.optional(), commit: commitIdSchema.optional(), message: z.string().max(4096).optional() }).strict().refine((b) => Boolean(b.branch) !== Boolean(b.tag), "give either a branch or a tag"),
        response: { 201: buildSchema },
      },
    },
    async (request, reply) => {
      const { principal } = contextOf(request);
      // P13: every member reads the build, so the starter is named by display name, never by account email.
      const { name } = await services.users.byId(services.store.db, principal.userId);
      const build = await builds.create(request.params.projectId, { ...request.body, author: { name, email: "" }, trigger: "api" });
      return reply.code(201).send(build);
    },
  );

  app.get(
    "/projects/:projectId/builds",
    {
      config: { access: { kind: "project", action: "project.builds.read" } },
      schema: {
        summary: "A project's builds, newest first",
        params: projectParams,
        querystring: z.object({ branch: refPart.optional(), status: z.enum(buildStatuses).optional(), before: z.coerce.number().int().positive().optional(), limit: z.coerce.number().int().min(1).max(100).default(25) }).strict(),
        response: { 200: z.object({ builds: z.array(buildSchema) }) },
      },
    },
    async (request) => ({ builds: await builds.list(request.params.projectId, request.query) }),
  );

  app.get("/builds/:buildId", { config: { access: { kind: "build", action: "project.builds.read" } }, schema: { summary: "A build and its jobs", params: buildParams, response: { 200: buildSchema } } }, async (request) =>
    builds.get(request.params.buildId),
  );

  app.post(
    "/builds/:buildId/cancel",
    { config: { access: { kind: "build", action: "project.builds.write" } }, schema: { summary: "Cancel a build", description: "Running jobs are killed within seconds.", params: buildParams, response: { 200: buildSchema } } },
    async (request) => builds.cancel(contextOf(request), request.params.buildId),
  );

  app.post(
    "/builds/:buildId/approvals",
    {
      config: { access: { kind: "build", action: "project.builds.approve" } },
      schema: {
        summary: "Approve the manual step a build waits at",
        description: "Owners and admins only. Queues a job that runs the pipeline from that step on (the steps before it are not run again). 409 when the step is not waiting, was approved already, or the build has ended.",
        params: buildParams,
        body: z.object({ step: waitingStepSchema.shape.id.describe("The id of the waiting step, as in the build's `waitingFor`") }).strict(),
        response: { 200: buildSchema },
      },
    },
    async (request) => builds.approve(contextOf(request), request.params.buildId, request.body.step),
  );

  app.get(
    "/builds/:buildId/jobs/:jobId/log",
    {
      config: { access: { kind: "build", action: "project.builds.read" } },
      schema: {
        summary: "A job's log, live",
        description:
          "Server-Sent Events: `log` events carry `{offset, data}` (base64 of the bytes, ANSI colours kept) and an `id` to resume from (`Last-Event-ID` or `?offset=`); an `end` event closes the stream when the job has ended. `?format=text` returns the stored log from `offset` on as text/plain instead. A log that reached the server's cap ends with a line saying so.",
        params: logParams,
        querystring: z
          .object({
            offset: z.coerce.number().int().min(0).optional().describe("The byte to start from (wins over Last-Event-ID)"),
            format: z.enum(["sse", "text"]).default("sse").describe("`sse` (live, the default) or `text` (what is stored so far)"),
          })
          .strict(),
      },
    },
    async (request, reply) => {
      const build = await builds.get(request.params.buildId);
      const job = await builds.job(build.id, request.params.jobId);
      const lastEventId = Number(request.headers["last-event-id"]);
      const from = request.query.offset ?? (Number.isInteger(lastEventId) && lastEventId >= 0 ? lastEventId : 0);
      if (request.query.format === "text") {
        return reply.type("text/plain; charset=utf-8").header("cache-control", "no-store").send(Readable.from(logBytes(logs.chunks(build.project, job.id, from))));
      }
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive", "x-accel-buffering": "no" });
      let sent = from;
      /** The event for a chunk, or nothing when it was all sent already (a live chunk racing the backlog): no byte appears twice. */
      const event = (offset: number, data: Buffer): string | undefined => {
        const skip = Math.max(0, sent - offset);
        if (skip >= data.length) return undefined;
        sent = offset + data.length;
        return `event: log\nid: ${sent}\ndata: ${JSON.stringify({ offset: offset + skip, data: data.subarray(skip).toString("base64") })}\n\n`;
      };
      const pending: LogChunk[] = [];
      let caughtUp = false;
      let endSeen = false;
      let ended = false;
      let closed = false;
      const unfollow = logs.follow(job.id, (c) => {
        if (!caughtUp) return void pending.push(c);
        const e = event(c.offset, c.data);
        if (e) res.write(e);
      });
      // The end is written once, and only after the backlog, so no line is lost behind it.
      const finish = async () => {
        if (ended) return;
        ended = true;
        const last = await builds.job(build.id, job.id).catch(() => undefined);
        res.end(`event: end\ndata: ${JSON.stringify({ status: last?.status ?? "unknown", reason: last?.reason ?? null })}\n\n`);
      };
      const unEnd = logs.onEnd(job.id, () => (caughtUp ? void finish() : (endSeen = true)));
      request.raw.on("close", () => {
        closed = true;
        unfollow();
        unEnd();
      });
      // The backlog is read a page at a time and written as the client takes it, never held whole.
      for await (const c of logs.chunks(build.project, job.id, from)) {
        const e = event(c.offset, c.data);
        if (e && !res.write(e)) await drained(res);
        if (closed) return;
      }
      for (const c of pending.splice(0)) {
        const e = event(c.offset, c.data);
        if (e) res.write(e);
      }
      caughtUp = true;
      const now = await builds.job(build.id, job.id);
      if (endSeen || !["queued", "running"].includes(now.status)) await finish();
      else res.write(": live\n\n");
    },
  );
};
