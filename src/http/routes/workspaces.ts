import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import type { RequestContext } from "../../auth/permissions.js";
import { AppError, conflict, notFound } from "../../errors.js";
import type { Project } from "../../projects/projects.js";
import type { Services } from "../../services.js";
import { repositoryKey } from "../../workspaces/repository-names.js";
import { workspaceDetailSchema, workspaceViewSchema } from "../../workspaces/views.js";
import type { Workspace } from "../../workspaces/workspaces.js";
import { contextOf } from "../plugins/access.js";
import { refPart, workspaceParams } from "../schemas.js";

/** States a workspace stays in until someone acts: its events stream ends there. */
const RESTING: readonly string[] = ["stopped", "failed"];


/** Workspaces: open one from a project's repository, follow it, stop, start and delete it. */
export const workspaceRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { workspaces, workspaceHost: host, projects, authorizer } = services;
  const view = (ws: Workspace) => ({ ...ws, tasks: host.tasks(ws.id) });

  /** P18: the project named, or the one project of the caller's with this repository, that the caller may open workspaces of. */
  async function projectFor(ctx: RequestContext, repository: string): Promise<Project & { repositoryUrl: string }> {
    let project: Project | undefined;
    if (/^prj_[A-Za-z0-9_-]+$/.test(repository)) {
      project = await projects.find(services.store.db, repository);
      if (!project) throw notFound("project");
    } else {
      const matches = (await projects.listFor(ctx.principal.userId)).filter((p) => p.repositoryUrl !== null && repositoryKey(p.repositoryUrl) === repositoryKey(repository));
      if (matches.length === 0) throw new AppError(404, "not_found", "no project of yours has this repository; create a project with it as repositoryUrl (POST /api/v1/projects), or name a project by its id");
      if (matches.length > 1) throw conflict(`projects ${matches.map((p) => p.id).join(", ")} all have this repository; name one by its id as "repository"`);
      project = matches[0]!;
    }
    await authorizer.projectAction(ctx.principal, "project.workspaces.open", project.id);
    if (project.repositoryUrl === null) throw new AppError(400, "no_repository", "the project has no repository URL; set one (PATCH /api/v1/projects/<id>) first");
    return { ...project, repositoryUrl: project.repositoryUrl };
  }

  app.post(
    "/workspaces",
    {
      config: { access: { kind: "account", scope: "workspaces:write" } },
      schema: {
        summary: "Open a workspace",
        description:
          "P18: `repository` is a project's id, or the repository URL of a project of yours; you need the right to open workspaces of that project. The workspace is cloned from `ref` (a branch or tag; the default branch without one) with the project's deploy key, which is removed before anything runs unless `pushAccess` asks to keep it for pushing. It starts in the background: follow `state` (GET, or the events stream) from pending through creating and initializing to running.",
        body: z
          .object({
            repository: z.string().trim().min(1).max(2048),
            ref: refPart.optional(),
            pushAccess: z.boolean().default(false).describe("Let git in the workspace push to the repository with the project's deploy key (only this repository's git config names it). For those who manage the project."),
          })
          .strict(),
        response: { 201: workspaceViewSchema },
      },
    },
    async (request, reply) => {
      const ctx = contextOf(request);
      const project = await projectFor(ctx, request.body.repository);
      if (request.body.pushAccess) await authorizer.projectAction(ctx.principal, "project.workspaces.push", project.id);
      const ws = await workspaces.create(ctx, project, request.body.ref ?? null, undefined, request.body.pushAccess);
      host.start(ws.id);
      return reply.code(201).send(view(ws));
    },
  );

  app.get(
    "/workspaces",
    {
      config: { access: { kind: "account", scope: "workspaces:read" } },
      schema: { summary: "Your workspaces, newest first", response: { 200: z.object({ workspaces: z.array(workspaceViewSchema) }) } },
    },
    async (request) => ({ workspaces: (await workspaces.listFor(contextOf(request).principal.userId)).map(view) }),
  );

  app.get(
    "/workspaces/:workspaceId",
    {
      config: { access: { kind: "workspace", scope: "workspaces:read", guests: true } },
      schema: { summary: "A workspace, with its tasks and every state it went through", params: workspaceParams, response: { 200: workspaceDetailSchema } },
    },
    async (request) => {
      const ws = await workspaces.get(request.params.workspaceId);
      return { ...view(ws), transitions: await workspaces.transitions(ws.id) };
    },
  );

  app.get(
    "/workspaces/:workspaceId/events",
    {
      config: { access: { kind: "workspace", scope: "workspaces:read", guests: true } },
      schema: {
        summary: "A workspace's state, live",
        description: "Server-Sent Events: a `workspace` event with the whole workspace now, then one on every change of state; the stream ends once the workspace is stopped or failed.",
        params: workspaceParams,
      },
    },
    async (request, reply) => {
      const id = request.params.workspaceId;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive", "x-accel-buffering": "no" });
      const send = (ws: Workspace) => {
        const event = `event: workspace\ndata: ${JSON.stringify(view(ws))}\n\n`;
        if (RESTING.includes(ws.state)) res.end(event);
        else res.write(event);
      };
      const unfollow = workspaces.onChange((ws) => ws.id === id && !res.writableEnded && send(ws));
      // Comments keep proxies from closing a stream that is quiet for a while.
      const keepAlive = setInterval(() => res.write(": alive\n\n"), 25_000);
      const done = () => {
        unfollow();
        clearInterval(keepAlive);
      };
      request.raw.on("close", done);
      res.on("finish", done);
      send(await workspaces.get(id));
    },
  );

  app.post(
    "/workspaces/:workspaceId/stop",
    {
      config: { access: { kind: "workspace", scope: "workspaces:write" } },
      schema: {
        summary: "Stop a workspace",
        description: "P16: /workspace is archived, encrypted with the workspace's key, and stored; then its sandbox is destroyed. Answers once it is stopped; 409 when it is not running.",
        params: workspaceParams,
        response: { 200: workspaceViewSchema },
      },
    },
    async (request) => {
      const id = request.params.workspaceId;
      const ws = await workspaces.get(id);
      if (!["running", "pending", "creating", "initializing"].includes(ws.state)) throw conflict(`the workspace is ${ws.state}, not running`);
      await host.stop(id, `stopped by ${contextOf(request).principal.email}`);
      return view(await workspaces.get(id));
    },
  );

  app.post(
    "/workspaces/:workspaceId/extend",
    {
      config: { access: { kind: "workspace", scope: "workspaces:write" } },
      schema: {
        summary: "Let a running workspace run longer, once per start",
        description: "Its longest run doubles for this start (24 hours more by default); 409 when extended already or not running.",
        params: workspaceParams,
        response: { 200: workspaceViewSchema },
      },
    },
    async (request) => {
      await workspaces.extend(request.params.workspaceId);
      return view(await workspaces.get(request.params.workspaceId));
    },
  );

  app.post(
    "/workspaces/:workspaceId/start",
    {
      config: { access: { kind: "workspace", scope: "workspaces:write" } },
      schema: {
        summary: "Start a stopped (or failed) workspace again",
        description: "Its /workspace is restored from the archive of its last stop before its tasks run; one that never stopped is cloned again.",
        params: workspaceParams,
        response: { 202: workspaceViewSchema },
      },
    },
    async (request, reply) => {
      const ws = await workspaces.transition(request.params.workspaceId, ["stopped", "failed"], "pending");
      host.start(ws.id);
      return reply.code(202).send(view(ws));
    },
  );

  app.delete(
    "/workspaces/:workspaceId",
    {
      config: { access: { kind: "workspace", scope: "workspaces:write", ownerOnly: true } },
      schema: {
        summary: "Delete a workspace",
        description: "Its sandbox goes without saving, and its data key is destroyed: its archive and snapshots can never be read again, and are removed.",
        params: workspaceParams,
      },
    },
    async (request, reply) => {
      const id = request.params.workspaceId;
      const ws = await workspaces.get(id);
      const project = await projects.find(services.store.db, ws.projectId);
      await host.discard(id);
      const objects = [await workspaces.archiveOf(id), ...(await services.snapshots.objectsOf(id))].filter((o): o is string => o !== null);
      await workspaces.delete(contextOf(request), id, project?.orgId ?? null);
      for (const object of objects) await host.removeArchive(object);
      return reply.code(204).send();
    },
  );
};
