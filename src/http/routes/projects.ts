import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { hasScope } from "../../auth/permissions.js";
import { AppError } from "../../errors.js";
import type { Project } from "../../projects/projects.js";
import { knownHostsSchema } from "../../projects/known-hosts.js";
import { forkBuildsSchema, projectNameSchema, repositoryUrlSchema } from "../../projects/projects.js";
import { allowEntrySchema } from "../../sandbox/network.js";
import { leftoverSchema } from "../../scm/repository-links.js";
import { pollIntervalSchema, type Polling } from "../../scm/repository-polls.js";
import { secretNameSchema, secretValueSchema } from "../../secrets/secret-variables.js";
import type { Services } from "../../services.js";
import { contextOf } from "../plugins/access.js";
import { projectParams, projectSchema, secretNameListSchema, someField } from "../schemas.js";

const secretParams = projectParams.extend({ name: secretNameSchema });
const assignmentParams = projectParams.extend({ userId: z.string().min(1).max(64) });
const view = (p: Project, polling: Polling | null) => ({ id: p.id, organization: p.orgId, name: p.name, repositoryUrl: p.repositoryUrl, createdAt: p.createdAt, egressAllowlist: p.egressAllowlist, knownHosts: p.knownHosts, forkBuilds: p.forkBuilds, hostKeyFingerprints: p.hostKeyFingerprints, knownHostsConfirmed: p.knownHostsConfirmed, polling });

/** Projects, their secrets (write-only values) and contractor assignments. */
export const projectRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { projects, orgs, authorizer } = services;
  const { polls } = services.scm;

  app.get(
    "/projects",
    {
      config: { access: { kind: "account", scope: "projects:read" } },
      schema: { summary: "Projects you can see", querystring: z.object({ organization: z.string().max(64).optional() }).strict(), response: { 200: z.object({ projects: z.array(projectSchema) }) } },
    },
    async (request) => {
      const { principal } = contextOf(request);
      const locked = new Set((await orgs.listFor(principal.userId)).filter((o) => o.require2fa && !principal.twoFactor).map((o) => o.id));
      const list = (await projects.listFor(principal.userId, request.query.organization)).filter((p) => !locked.has(p.orgId));
      const polling = await polls.getMany(list.map((p) => p.id));
      return { projects: list.map((p) => view(p, polling.get(p.id) ?? null)) };
    },
  );

  app.post(
    "/projects",
    {
      config: { access: { kind: "account", scope: "projects:write" } },
      schema: {
        summary: "Create a project",
        description: "`organization` may be left out when you belong to one organization; with none, a personal one is made for you.",
        body: z.object({ name: projectNameSchema, organization: z.string().min(1).max(64).optional(), repositoryUrl: repositoryUrlSchema.optional() }).strict(),
        response: { 201: projectSchema },
      },
    },
    async (request, reply) => {
      const ctx = contextOf(request);
      let orgId = request.body.organization;
      if (!orgId) {
        const mine = await orgs.listFor(ctx.principal.userId);
        if (mine.length > 1) throw new AppError(400, "organization_required", `you belong to ${mine.length} organizations; name one as "organization" (see GET /api/v1/orgs)`);
        if (!mine[0] && !hasScope(ctx.principal, "orgs:write")) throw new AppError(400, "organization_required", "you belong to no organization; create one first (POST /api/v1/orgs) or use a token with the orgs:write scope");
        orgId = mine[0]?.id ?? (await orgs.create(ctx, ctx.principal.email.split("@")[0]!)).id;
      }
      await authorizer.orgAction(ctx.principal, "project.create", orgId);
      return reply.code(201).send(view(await projects.create(ctx, orgId, request.body.name, request.body.repositoryUrl ?? null), null));
    },
  );

  app.get("/projects/:projectId", { config: { access: { kind: "project", action: "project.read" } }, schema: { summary: "A project", params: projectParams, response: { 200: projectSchema } } }, async (request) =>
    view(await projects.get(request.params.projectId), await polls.get(request.params.projectId)),
  );

  app.patch(
    "/projects/:projectId",
    {
      config: { access: { kind: "project", action: "project.update" } },
      schema: { summary: "Rename a project, change its repository URL, its egress allowlist or its git host's pinned keys", params: projectParams, body: z
          .object({
            name: projectNameSchema.optional(),
            repositoryUrl: repositoryUrlSchema.nullable().optional(),
            // Include the git host: the clone goes through the same allowlist.
            egressAllowlist: z.array(allowEntrySchema).min(1).max(100).nullable().optional(),
            knownHosts: knownHostsSchema
              .nullable()
              .optional()
              .describe("The git host's keys in known_hosts format (as `ssh-keyscan host` prints them); clones refuse any other key. null: the next clone pins the key it sees."),
            confirmHostKeys: z
              .array(z.string().regex(/^SHA256:[A-Za-z0-9+/]{43}$/, "a fingerprint as ssh-keygen -lf prints it: SHA256: and 43 base64 characters"))
              .min(1)
              .max(20)
              .optional()
              .describe("Vouch for the host keys the first clone or poll pinned (trust on first use) by naming exactly their SHA256 fingerprints, as the git host's operator gives them; 409 if they differ."),
            pollIntervalSeconds: pollIntervalSchema
              .nullable()
              .optional()
              .describe("P08: for a git server that cannot call Slipway: every this many seconds (60 to 86400) a runner lists the repository's heads and tags and builds those that moved. null: no polling."),
            forkBuilds: forkBuildsSchema.optional().describe("Pull requests from forks: `run` them without secrets, or `approve`: each waits for an owner's or admin's approval before anything runs."),
          })
          .strict()
          .refine(...someField)
          .refine((b) => b.confirmHostKeys === undefined || b.knownHosts === undefined, { message: "pin keys (knownHosts) or confirm the pinned ones (confirmHostKeys), not both at once", path: ["confirmHostKeys"] }), response: { 200: projectSchema } },
    },
    async (request) => {
      const ctx = contextOf(request);
      const { pollIntervalSeconds, ...patch } = request.body;
      const before = await projects.get(request.params.projectId);
      const project = Object.keys(patch).length ? await projects.update(ctx, before.id, patch) : before;
      if (project.repositoryUrl !== before.repositoryUrl) await polls.repositoryChanged(project.id);
      if (pollIntervalSeconds !== undefined) await polls.configure(ctx, project, pollIntervalSeconds);
      return view(project, await polls.get(project.id));
    },
  );

  app.delete(
    "/projects/:projectId",
    {
      config: { access: { kind: "project", action: "project.delete" } },
      schema: {
        summary: "Delete a project",
        description: "Its data key is destroyed: every secret sealed for it becomes unreadable. The deploy key and webhook of a linked repository are removed at the provider first; 204 when all went, 200 with `leftovers` naming what must be removed by hand.",
        params: projectParams,
        response: { 200: z.object({ leftovers: z.array(leftoverSchema) }), 204: z.null().describe("Deleted; nothing was left at a provider.") },
      },
    },
    async (request, reply) => {
      const ctx = contextOf(request);
      await projects.get(request.params.projectId);
      const leftovers = await services.scm.links.beforeProjectDelete(ctx, request.params.projectId);
      await projects.delete(ctx, request.params.projectId);
      return leftovers.length ? { leftovers } : reply.code(204).send(null);
    },
  );

  app.get(
    "/projects/:projectId/secrets",
    { config: { access: { kind: "project", action: "project.secrets.read" } }, schema: { summary: "Names of a project's secrets (values are never returned)", params: projectParams, response: { 200: secretNameListSchema } } },
    async (request) => ({ secrets: await services.secrets.list({ kind: "project", id: request.params.projectId }) }),
  );

  app.put(
    "/projects/:projectId/secrets/:name",
    { config: { access: { kind: "project", action: "project.secrets.write" } }, schema: { summary: "Set a project secret (write-only)", params: secretParams, body: z.object({ value: secretValueSchema }).strict() } },
    async (request, reply) => {
      const p = await projects.get(request.params.projectId);
      const { created } = await services.secrets.set(contextOf(request), { kind: "project", id: p.id }, p.orgId, request.params.name, request.body.value);
      return reply.code(created ? 201 : 204).send();
    },
  );

  app.delete(
    "/projects/:projectId/secrets/:name",
    { config: { access: { kind: "project", action: "project.secrets.write" } }, schema: { summary: "Delete a project secret", params: secretParams } },
    async (request, reply) => {
      const p = await projects.get(request.params.projectId);
      await services.secrets.delete(contextOf(request), { kind: "project", id: p.id }, p.orgId, request.params.name);
      return reply.code(204).send();
    },
  );

  app.get(
    "/projects/:projectId/assignments",
    { config: { access: { kind: "project", action: "project.assignments.manage" } }, schema: { summary: "Contractors assigned to the project", params: projectParams, response: { 200: z.object({ userIds: z.array(z.string()) }) } } },
    async (request) => ({ userIds: await projects.assignments(request.params.projectId) }),
  );

  app.put(
    "/projects/:projectId/assignments/:userId",
    { config: { access: { kind: "project", action: "project.assignments.manage" } }, schema: { summary: "Give a contractor access to the project", params: assignmentParams } },
    async (request, reply) => {
      await projects.assign(contextOf(request), request.params.projectId, request.params.userId);
      return reply.code(204).send();
    },
  );

  app.delete(
    "/projects/:projectId/assignments/:userId",
    { config: { access: { kind: "project", action: "project.assignments.manage" } }, schema: { summary: "Take a contractor's access away", params: assignmentParams } },
    async (request, reply) => {
      await projects.unassign(contextOf(request), request.params.projectId, request.params.userId);
      return reply.code(204).send();
    },
  );
};
