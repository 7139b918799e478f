import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { unauthenticated } from "../../auth/authorize.js";
import type { Access, Principal, RequestContext } from "../../auth/permissions.js";
import { AppError } from "../../errors.js";
import type { Services } from "../../services.js";

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal?: Principal;
    runnerId?: string;
  }
}

export const SESSION_COOKIE = "slipway_session";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Who is calling (session cookie or bearer token), CSRF for browser writes, then the permission table. */
export const accessPlugin = fp(async (app: FastifyInstance, opts: { services: Services }) => {
  const { sessions, tokens, users, authorizer } = opts.services;

  app.addHook("onRoute", (route) => {
    if (!route.config?.access) throw new Error(`route ${String(route.method)} ${route.url} declares no access rule`);
  });

  app.decorateRequest("principal", undefined);
  app.decorateRequest("runnerId", undefined);

  app.addHook("onRequest", async (request) => {
    const header = request.headers.authorization;
    const access = request.routeOptions.config.access;
    if (access?.kind === "runner") {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
      const runnerId = match ? await opts.services.runners.resolve(match[1]!) : undefined;
      if (!runnerId) throw new AppError(401, "invalid_runner_token", "the runner token is missing, malformed or unknown; register the runner again");
      request.runnerId = runnerId;
      return;
    }
    // Public routes ignore the header: probes and proxies may send credentials of their own. So
    // does the port proxy: the header belongs to the workspace's own server (private ports take a session).
    if (header !== undefined && access && access.kind !== "public" && access.kind !== "workspacePort") {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
      const found = match ? await tokens.resolve(match[1]!) : undefined;
      if (!found) throw new AppError(401, "invalid_token", "the API token is malformed, unknown, expired or revoked; create a new one");
      const user = await users.byId(opts.services.store.db, found.userId);
      request.principal = { userId: user.id, email: user.email, isAdmin: user.isAdmin, twoFactor: user.twoFactor, via: "token", scopes: new Set(found.scopes), tokenId: found.tokenId };
      return;
    }
    const token = request.cookies[SESSION_COOKIE];
    const session = token && token.length <= 100 ? await sessions.resolve(token) : undefined;
    if (session) {
      const user = await users.byId(opts.services.store.db, session.userId);
      request.principal = { userId: user.id, email: user.email, isAdmin: user.isAdmin, twoFactor: user.twoFactor, via: "session", scopes: "all", sessionHash: session.hash };
    }
  });

  // A browser sends the session cookie with a WebSocket any page's script opens, and CSRF tokens
  // do not apply to it: only pages of this server may open one with a session (the Origin check).
  app.addHook("onRequest", async (request) => {
    if (request.principal?.via !== "session" || request.headers.upgrade?.toLowerCase() !== "websocket") return;
    const own = new URL(opts.services.publicUrl()).origin;
    const origin = request.headers.origin;
    if (origin !== own) throw new AppError(403, "bad_origin", `a WebSocket with a session opens only from pages of ${own}; this one came from ${origin ?? "no page (no Origin header)"}`);
  });

  app.addHook("onRequest", (request, reply, done) => {
    const access = request.routeOptions.config.access;
    if (request.principal?.via === "session" && !SAFE_METHODS.has(request.method) && access && access.kind !== "public") {
      app.csrfProtection(request, reply, done);
    } else done();
  });

  app.addHook("preValidation", async (request) => {
    const access = request.routeOptions.config.access;
    if (!access) throw new AppError(404, "not_found", "no such route");
    // The router matches "/projects/" to "/projects/:projectId" with an empty id: no such route.
    // (A wildcard may be empty: "/w/<id>/p/<port>/" is the root of a workspace's page.)
    if (Object.entries((request.params ?? {}) as Record<string, string>).some(([name, value]) => value === "" && name !== "*")) {
      throw new AppError(404, "not_found", `no route ${request.method} ${request.url.split("?")[0]}; see /api/v1/openapi.json`);
    }
    await authorizer.check(request.principal, access, request.params as Record<string, string | undefined>);
  });
});

/** The caller of a route that requires one; the access hook has already refused anonymous requests. */
export function contextOf(request: FastifyRequest): RequestContext {
  if (!request.principal) throw unauthenticated();
  return { principal: request.principal, ip: request.ip };
}
