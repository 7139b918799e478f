import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { notFound } from "../../errors.js";
import type { Services } from "../../services.js";
import { workspaceParams } from "../schemas.js";
import { guestSchema, guestStates } from "../../workspaces/sharing.js";
import { snapshotSchema } from "../../workspaces/snapshots.js";
import { workspaceSchema } from "../../workspaces/workspaces.js";
import { contextOf } from "../plugins/access.js";

const snapshotParams = z.object({ snapshotId: z.string().min(1).max(64) });

/** Snapshots of a workspace and sharing it while it runs (P18). */
export const workspaceSharingRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { workspaces, snapshots, sharing, projects, authorizer } = services;
  const orgOf = async (projectId: string) => (await projects.find(services.store.db, projectId))?.orgId ?? null;
  const owned = { kind: "workspace", scope: "workspaces:write" } as const;

  app.get(
    "/workspaces/:workspaceId/snapshots",
    { config: { access: { kind: "workspace", scope: "workspaces:read" } }, schema: { summary: "A workspace's snapshots", params: workspaceParams, response: { 200: z.object({ snapshots: z.array(snapshotSchema) }) } } },
    async (request) => ({ snapshots: await snapshots.list(request.params.workspaceId) }),
  );

  app.post(
    "/workspaces/:workspaceId/snapshots",
    {
      config: { access: owned },
      schema: {
        summary: "Take a snapshot",
        description: "P16: an immutable copy of /workspace (of a running workspace as it is now, of a stopped one as it was left), sealed with the workspace's key. Its id is its link: whoever may open workspaces of the project can open it as a workspace of their own (POST /snapshots/{id}/open).",
        params: workspaceParams,
        body: z.object({ name: z.string().trim().min(1).max(100).default("snapshot") }).strict().optional(),
        response: { 201: snapshotSchema },
      },
    },
    async (request, reply) => {
      const { workspaceId } = request.params;
      const ws = await workspaces.get(workspaceId);
      return reply.code(201).send(await snapshots.create(contextOf(request), await orgOf(ws.projectId), workspaceId, request.body?.name));
    },
  );

  app.delete(
    "/workspaces/:workspaceId/snapshots/:snapshotId",
    { config: { access: owned }, schema: { summary: "Delete a snapshot, which revokes its link", params: workspaceParams.extend(snapshotParams.shape) } },
    async (request, reply) => {
      const ws = await workspaces.get(request.params.workspaceId);
      await snapshots.delete(contextOf(request), await orgOf(ws.projectId), ws.id, request.params.snapshotId);
      return reply.code(204).send();
    },
  );

  /** P18: the snapshot, to whoever may open workspaces of its project; to anyone else it does not exist. */
  async function readable(request: Parameters<typeof contextOf>[0], snapshotId: string) {
    const found = await snapshots.get(snapshotId);
    await authorizer.projectAction(contextOf(request).principal, "project.workspaces.open", found.snapshot.projectId).catch(() => {
      throw notFound("snapshot");
    });
    return found;
  }

  app.get(
    "/snapshots/:snapshotId",
    { config: { access: { kind: "account", scope: "workspaces:read" } }, schema: { summary: "A snapshot, for someone about to open it", params: snapshotParams, response: { 200: snapshotSchema } } },
    async (request) => (await readable(request, request.params.snapshotId)).snapshot,
  );

  app.post(
    "/snapshots/:snapshotId/open",
    {
      config: { access: { kind: "account", scope: "workspaces:write" } },
      schema: {
        summary: "Open a snapshot as a new workspace of your own",
        description: "P18: only if you may open workspaces of its project (else 404). The new workspace starts from the snapshot's /workspace, sealed anew with its own key.",
        params: snapshotParams,
        response: { 201: workspaceSchema },
      },
    },
    async (request, reply) => {
      const { snapshot } = await readable(request, request.params.snapshotId);
      const project = await projects.get(snapshot.projectId);
      if (!project.repositoryUrl) throw notFound("snapshot");
      const ws = await snapshots.open(contextOf(request), snapshot.id, { id: project.id, orgId: project.orgId, repositoryUrl: project.repositoryUrl });
      services.workspaceHost.start(ws.id);
      return reply.code(201).send(ws);
    },
  );

  app.put(
    "/workspaces/:workspaceId/sharing",
    {
      config: { access: owned },
      schema: {
        summary: "Share a running workspace, or stop sharing it",
        description: "P18: while shared, someone with its link may ask to join (POST …/join), and you approve or deny each one. Turning sharing off, or stopping the workspace, ends every guest's access at once. An organisation may forbid sharing (403 sharing_forbidden).",
        params: workspaceParams,
        body: z.object({ shared: z.boolean() }).strict(),
        response: { 200: z.object({ shared: z.boolean() }) },
      },
    },
    async (request) => {
      const ws = await workspaces.get(request.params.workspaceId);
      const orgId = await orgOf(ws.projectId);
      await sharing.setShared(contextOf(request), { id: ws.id, orgId: orgId ?? "" }, request.body.shared);
      return { shared: request.body.shared };
    },
  );

  app.post(
    "/workspaces/:workspaceId/join",
    {
      config: { access: { kind: "account", scope: "workspaces:read" } },
      schema: {
        summary: "Ask to join a shared workspace",
        description: "P18: its owner approves or denies the request; until approved you get nothing of it. 404 unless it is running and shared.",
        params: workspaceParams,
        response: { 202: z.object({ state: z.enum(guestStates) }) },
      },
    },
    async (request, reply) => {
      const ws = await workspaces.find(services.store.db, request.params.workspaceId);
      if (!ws) throw notFound("shared workspace");
      const state = await sharing.requestJoin(contextOf(request), { ...ws, orgId: (await orgOf(ws.projectId)) ?? "" });
      return reply.code(202).send({ state });
    },
  );

  app.get(
    "/workspaces/:workspaceId/guests",
    { config: { access: owned }, schema: { summary: "Who asked to join, and what you decided", params: workspaceParams, response: { 200: z.object({ guests: z.array(guestSchema) }) } } },
    async (request) => ({ guests: await sharing.guests(request.params.workspaceId) }),
  );

  app.put(
    "/workspaces/:workspaceId/guests/:userId",
    {
      config: { access: owned },
      schema: {
        summary: "Approve or deny a request to join",
        description: "P18: an approved guest reaches the workspace's terminals and private ports while it is shared and running; the decision can be changed.",
        params: workspaceParams.extend({ userId: z.string().min(1).max(64) }),
        body: z.object({ approve: z.boolean() }).strict(),
        response: { 200: z.object({ approve: z.boolean() }) },
      },
    },
    async (request) => {
      const ws = await workspaces.get(request.params.workspaceId);
      await sharing.decide(contextOf(request), { id: ws.id, orgId: (await orgOf(ws.projectId)) ?? "" }, request.params.userId, request.body.approve);
      return { approve: request.body.approve };
    },
  );
};
