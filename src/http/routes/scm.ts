import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { AppError } from "../../errors.js";
import { connectionSchema, providerCall, providerInfoSchema, providerNameSchema } from "../../scm/connections.js";
import { repositoryPageSchema } from "../../scm/provider.js";
import { leftoverSchema, repositoryLinkSchema } from "../../scm/repository-links.js";
import type { Services } from "../../services.js";
import { contextOf } from "../plugins/access.js";
import { projectParams, sessionResponseSchema } from "../schemas.js";
import { RedirectNotes } from "../redirect-notes.js";
import { setSessionCookie } from "./session.js";

const sessionOnly = { access: { kind: "account", sessionOnly: true } } as const;
const STATE_COOKIE = "slipway_scm_state";
const providerParams = z.object({ provider: providerNameSchema });
/** Owner/name at GitHub, Gitea and Bitbucket; group/subgroup/name at GitLab. */
const repoSchema = z.string().min(3).max(512).regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)+$/, "a repository is named owner/name (GitLab: group/subgroup/name)");
const leftoversSchema = z.object({ leftovers: z.array(leftoverSchema).describe("What could not be removed at the provider, with why: remove these by hand.") });

/**
 * Git hosts: the providers this server offers, the caller's connected accounts (OAuth with PKCE;
 * tokens sealed, never returned), their repositories, and linking a project to one of them.
 */
export const scmRoutes: FastifyPluginAsyncZod<{ services: Services; tls: boolean }> = async (app, { services, tls }) => {
  const { registry, connections, links } = services.scm;
  const notes = new RedirectNotes();

  app.get(
    "/scm/providers",
    { config: { access: { kind: "public" } }, schema: { summary: "Git hosts this server can connect to", response: { 200: z.object({ providers: z.array(providerInfoSchema) }) } } },
    async () => ({ providers: registry.configured().map((p) => ({ ...p, scopes: [...p.scopes] })) }),
  );

  app.post(
    "/me/connections/:provider",
    {
      config: sessionOnly,
      schema: {
        summary: "Start connecting an account at a git host",
        description: "Returns the provider's sign-in page to send the browser to. The provider sends it back to `/api/v1/scm/{provider}/callback`, which finishes the connection.",
        params: providerParams,
        response: { 200: z.object({ authorizeUrl: z.string() }) },
      },
    },
    async (request) => ({ authorizeUrl: (await connections.begin(contextOf(request).principal.userId, request.params.provider)).toString() }),
  );

  app.post(
    "/session/scm/:provider",
    {
      config: { access: { kind: "public" }, rateLimit: { max: 30, timeWindow: "1 minute" } },
      schema: {
        summary: "Start signing in with an account at a git host",
        description: "For a Slipway account that has connected that git host account before (never matched by email). Returns the provider's sign-in page to send the browser to; the callback then signs in, or asks for the two-factor code.",
        params: providerParams,
        response: { 200: z.object({ authorizeUrl: z.string() }) },
      },
    },
    async (request, reply) => {
      const url = await connections.begin(null, request.params.provider);
      // Binds the sign-in to this browser: a callback link made by someone else (login CSRF) finds no such cookie.
      reply.setCookie(STATE_COOKIE, url.searchParams.get("state")!, { path: "/api/v1/scm", httpOnly: true, sameSite: "lax", secure: tls, maxAge: 600 });
      return { authorizeUrl: url.toString() };
    },
  );

  app.get(
    "/scm/:provider/callback",
    {
      config: { access: { kind: "public" } },
      schema: {
        summary: "Where the git host sends the browser back after its sign-in",
        description:
          "Connecting an account: finishes it (with the session that started it) and redirects to `/account#connected=<provider>`. Signing in: sets the session cookie and redirects to `/`, or for an account with two-factor to `/sign-in#scm-ticket=<ticket>` (finish with `POST /api/v1/session/scm`). Failures redirect with `#scm-error=<id>`: the page reads the message from `GET /api/v1/scm/errors/<id>`.",
        params: providerParams,
        querystring: z.object({ state: z.string().min(1).max(256), code: z.string().min(1).max(2048).optional(), error: z.string().max(256).optional(), error_description: z.string().max(1024).optional() }),
      },
    },
    async (request, reply) => {
      const { provider } = request.params;
      const { state, code, error } = request.query;
      const back = (page: string, fragment: Record<string, string>) => reply.redirect(`${page}#${new URLSearchParams(fragment).toString()}`, 303);
      const ctx = request.principal ? contextOf(request) : undefined;
      try {
        // Only an OAuth error code is repeated (RFC 6749 names them in lower case): the page shows this text.
        if (!code) throw new AppError(400, "oauth_declined", `${registry.label(provider)} did not grant access (${error && /^[a-z_]{1,64}$/.test(error) ? error : "no code"}): start again and allow Slipway's access.`);
        const done = await connections.complete(provider, state, code, { ctx, browserState: request.cookies[STATE_COOKIE] });
        reply.clearCookie(STATE_COOKIE, { path: "/api/v1/scm" });
        if ("connected" in done) return back("/account", { connected: provider });
        const signedIn = await services.signIn.signInVerified(done.signedIn, request.ip, provider);
        if ("ticket" in signedIn) return back("/sign-in", { "scm-ticket": signedIn.ticket });
        if (request.principal?.sessionHash) await services.sessions.destroy(request.principal.sessionHash);
        setSessionCookie(reply, signedIn.sessionToken, { tls, maxDays: services.settings.sessionMaxDays });
        return reply.redirect("/", 303);
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        return back(ctx ? "/account" : "/sign-in", { "scm-error": notes.put(err.message) });
      }
    },
  );

  app.get(
    "/scm/errors/:errorId",
    {
      config: { access: { kind: "public" } },
      schema: {
        summary: "Why a git host sign-in or connection failed",
        description: "The message behind the id a failed callback put in `#scm-error=`, for a few minutes after it. 404 when unknown or too old: start again.",
        params: z.object({ errorId: z.string().min(1).max(64) }),
        response: { 200: z.object({ message: z.string() }) },
      },
    },
    async (request) => {
      const message = notes.get(request.params.errorId);
      if (!message) throw new AppError(404, "not_found", "this sign-in's message is gone: start again");
      return { message };
    },
  );

  app.post(
    "/session/scm",
    {
      config: { access: { kind: "public" }, rateLimit: { max: 30, timeWindow: "1 minute" } },
      schema: {
        summary: "Finish a git host sign-in with the two-factor code",
        description: "The ticket from the callback's redirect is good for one try within five minutes. Sets the session cookie and returns the CSRF token, as `POST /api/v1/session` does.",
        body: z.object({ ticket: z.string().min(16).max(128), totp: z.string().min(1).max(64) }).strict(),
        response: { 200: sessionResponseSchema },
      },
    },
    async (request, reply) => {
      const { user, sessionToken } = await services.signIn.redeemTicket(request.body.ticket, request.body.totp, request.ip);
      if (request.principal?.sessionHash) await services.sessions.destroy(request.principal.sessionHash);
      return { user, csrfToken: setSessionCookie(reply, sessionToken, { tls, maxDays: services.settings.sessionMaxDays }) };
    },
  );

  app.get(
    "/me/connections",
    { config: { access: { kind: "account" } }, schema: { summary: "Your connected git host accounts", description: "Profile and granted scopes only; tokens never leave the server.", response: { 200: z.object({ connections: z.array(connectionSchema) }) } } },
    async (request) => ({ connections: await connections.list(contextOf(request).principal.userId) }),
  );

  app.delete(
    "/me/connections/:provider",
    {
      config: sessionOnly,
      schema: {
        summary: "Disconnect an account at a git host",
        description: "Revokes Slipway's grant at the provider where its API allows, and deletes the tokens here. `manual` says what to do by hand when the provider could not revoke it.",
        params: providerParams,
        response: { 200: z.object({ revoked: z.boolean(), manual: z.string().nullable() }) },
      },
    },
    async (request) => connections.disconnect(contextOf(request), request.params.provider),
  );

  app.get(
    "/me/connections/:provider/repositories",
    {
      config: { access: { kind: "account", scope: "projects:read" } },
      schema: { summary: "Repositories your connected account can see, a page at a time", params: providerParams, querystring: z.object({ page: z.coerce.number().int().min(1).max(100_000).default(1) }).strict(), response: { 200: repositoryPageSchema } },
    },
    async (request) => providerCall(() => connections.repositories(contextOf(request).principal.userId, request.params.provider, request.query.page)),
  );

  app.get(
    "/projects/:projectId/repository-link",
    { config: { access: { kind: "project", action: "project.read" } }, schema: { summary: "The repository the project is linked to", description: "`problem` says, in words, why the provider last refused Slipway (a revoked token, say) and what to do.", params: projectParams, response: { 200: repositoryLinkSchema } } },
    async (request) => {
      const link = await links.get(request.params.projectId);
      if (!link) throw new AppError(404, "not_found", "the project is not linked to a repository: link one with PUT, or use the generic webhook");
      return link;
    },
  );

  app.put(
    "/projects/:projectId/repository-link",
    {
      config: { access: { kind: "project", action: "project.update" } },
      schema: {
        summary: "Link the project to a repository at a connected git host",
        description: "With your connection: installs the project's deploy key (read-only) and a webhook with a fresh secret in the repository, and points the project at its SSH URL. Needs admin rights on the repository.",
        params: projectParams,
        body: z.object({ provider: providerNameSchema, repo: repoSchema }).strict(),
        response: { 200: repositoryLinkSchema },
      },
    },
    async (request) => links.link(contextOf(request), request.params.projectId, request.body.provider, request.body.repo),
  );

  app.delete(
    "/projects/:projectId/repository-link",
    {
      config: { access: { kind: "project", action: "project.update" } },
      schema: {
        summary: "Unlink the project from its repository",
        description: "Removes the deploy key and webhook at the provider, then replaces the project's key pair and webhook secret here. `leftovers` lists what the provider would not remove.",
        params: projectParams,
        response: { 200: leftoversSchema },
      },
    },
    async (request) => ({ leftovers: await links.unlink(contextOf(request), request.params.projectId) }),
  );
};
