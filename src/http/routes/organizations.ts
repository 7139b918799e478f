import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { auditChainSchema, auditEntrySchema } from "../../audit/audit-log.js";
import { roleAllows, roleSchema } from "../../auth/permissions.js";
import { emailSchema } from "../../auth/users.js";
import { tokenLink } from "../../mail/mailer.js";
import type { Services } from "../../services.js";
import { contextOf } from "../plugins/access.js";
import { orgMemberSchema, orgSchema, orgWithRoleSchema, someField } from "../schemas.js";

const orgName = z.string().trim().min(1).max(100);
const orgParams = z.object({ orgId: z.string().min(1).max(64) });
const memberParams = orgParams.extend({ userId: z.string().min(1).max(64) });
/** Any user can make an organization and check its chain, and each walk is the whole instance's log. */
const CHAIN_CHECK_MAX_AGE_MS = 60_000;

/** Organisations, members, invitations and the audit log. */
export const organizationRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { orgs, settings } = services;

  app.get("/orgs", { config: { access: { kind: "account", scope: "orgs:read" } }, schema: { summary: "Your organizations", response: { 200: z.object({ organizations: z.array(orgWithRoleSchema) }) } } }, async (request) => ({
    organizations: await orgs.listFor(contextOf(request).principal.userId),
  }));

  app.post(
    "/orgs",
    { config: { access: { kind: "account", scope: "orgs:write" } }, schema: { summary: "Create an organization (you become its owner)", body: z.object({ name: orgName }).strict(), response: { 201: orgSchema } } },
    async (request, reply) => reply.code(201).send(await orgs.create(contextOf(request), request.body.name)),
  );

  app.get("/orgs/:orgId", { config: { access: { kind: "org", action: "org.read" } }, schema: { summary: "An organization", params: orgParams, response: { 200: orgSchema } } }, async (request) => orgs.get(request.params.orgId));

  app.patch(
    "/orgs/:orgId",
    {
      config: { access: { kind: "org", action: "org.update" } },
      schema: { summary: "Rename; require two-factor authentication; allow or forbid sharing workspaces; set workspaces' time limits (within the server's)", params: orgParams, body: z
          .object({
            name: orgName.optional(),
            require2fa: z.boolean().optional(),
            workspaceSharing: z.boolean().optional(),
            workspaceIdleMinutes: z.number().int().min(1).max(settings.workspaceIdleMinutes, `at most the server's ${settings.workspaceIdleMinutes} minutes`).nullable().optional(),
            workspaceMaxHours: z.number().int().min(1).max(settings.workspaceMaxHours, `at most the server's ${settings.workspaceMaxHours} hours`).nullable().optional(),
          })
          .strict()
          .refine(...someField), response: { 200: orgSchema } },
    },
    async (request) => orgs.update(contextOf(request), request.params.orgId, request.body),
  );

  app.get(
    "/orgs/:orgId/members",
    {
      config: { access: { kind: "org", action: "org.members.read" } },
      schema: {
        summary: "Members and their roles",
        description: "Email addresses are shown to owners and admins only.",
        params: orgParams,
        response: { 200: z.object({ members: z.array(orgMemberSchema) }) },
      },
    },
    async (request) => {
      const ctx = contextOf(request);
      const members = await orgs.members(request.params.orgId);
      const people = await services.users.describe(members.map((m) => m.userId));
      const myRole = members.find((m) => m.userId === ctx.principal.userId)?.role;
      const seesEmails = myRole !== undefined && roleAllows(myRole, "org.members.manage");
      return {
        members: members.map((m) => ({
          ...m,
          name: people.get(m.userId)?.name ?? "",
          ...((seesEmails || m.userId === ctx.principal.userId) && { email: people.get(m.userId)?.email }),
        })),
      };
    },
  );

  app.post(
    "/orgs/:orgId/invitations",
    {
      config: { access: { kind: "org", action: "org.members.manage" } },
      schema: { summary: "Invite someone by email", description: "A link is mailed to the address; the invitee accepts it signed in with that address.", params: orgParams, body: z.object({ email: emailSchema, role: roleSchema }).strict(), response: { 202: z.object({ expiresAt: z.string() }) } },
    },
    async (request, reply) => {
      const ctx = contextOf(request);
      const org = await orgs.get(request.params.orgId);
      const { token, expiresAt } = await orgs.invite(ctx, org.id, request.body.email, request.body.role);
      await services.mailer.send({
        to: request.body.email,
        subject: `Slipway: join ${org.name}`,
        text: `${ctx.principal.email} invited you to the organization ${org.name} on Slipway as ${request.body.role}.\n\nAccept: ${tokenLink(services.publicUrl(), "accept-invitation", token)}\n\nThe link works once, until ${expiresAt}.\n`,
      });
      return reply.code(202).send({ expiresAt });
    },
  );

  app.patch(
    "/orgs/:orgId/members/:userId",
    { config: { access: { kind: "org", action: "org.members.manage" } }, schema: { summary: "Change a member's role", params: memberParams, body: z.object({ role: roleSchema }).strict() } },
    async (request, reply) => {
      await orgs.changeRole(contextOf(request), request.params.orgId, request.params.userId, request.body.role);
      return reply.code(204).send();
    },
  );

  app.delete("/orgs/:orgId/members/:userId", { config: { access: { kind: "org", action: "org.members.manage" } }, schema: { summary: "Remove a member", params: memberParams } }, async (request, reply) => {
    await orgs.removeMember(contextOf(request), request.params.orgId, request.params.userId);
    return reply.code(204).send();
  });

  app.get(
    "/orgs/:orgId/audit",
    {
      config: { access: { kind: "org", action: "org.audit.read" } },
      schema: {
        summary: "The organization's audit log, newest first",
        description: "Filters: `action`, `actor` (a user id), and `since`/`until` (ISO 8601 times, both included). Page with `before` = the last page's `nextBefore`.",
        params: orgParams,
        querystring: z
          .object({
            before: z.coerce.number().int().positive().optional(),
            limit: z.coerce.number().int().min(1).max(500).default(100),
            action: z.string().max(64).optional(),
            actor: z.string().max(64).optional(),
            since: z.iso.datetime({ offset: true }).optional(),
            until: z.iso.datetime({ offset: true }).optional(),
          })
          .strict(),
        response: { 200: z.object({ entries: z.array(auditEntrySchema), nextBefore: z.number().nullable() }) },
      },
    },
    async (request) => {
      const q = request.query;
      const entries = await services.audit.list(services.store.db, { orgId: request.params.orgId, before: q.before, limit: q.limit, action: q.action, actorId: q.actor, since: q.since, until: q.until });
      return { entries, nextBefore: entries.length === q.limit ? entries[entries.length - 1]!.seq : null };
    },
  );

  app.get(
    "/orgs/:orgId/audit/verify",
    {
      // Each check walks the whole instance's log.
      config: { access: { kind: "org", action: "org.audit.read" }, rateLimit: { max: 10, timeWindow: "1 minute", keyGenerator: (request: FastifyRequest) => `${request.ip}|${request.principal?.userId ?? ""}` } },
      schema: {
        summary: "Check the audit log's hash chain",
        description:
          "The chain runs through the whole instance's log, so a break anywhere counts: `problem` describes breaks in this organization's rows and deleted rows, and only counts those in other organizations' rows. The log is walked at most once a minute for these checks; `checkedAt` says when the walk that answers began (`slipway admin audit verify` always walks it afresh). At most 10 checks a minute.",
        params: orgParams,
        response: { 200: auditChainSchema },
      },
    },
    async (request) => services.audit.verifyFor(request.params.orgId, CHAIN_CHECK_MAX_AGE_MS),
  );
};
