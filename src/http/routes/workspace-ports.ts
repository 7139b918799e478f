import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import WebSocket from "ws";
import { z } from "zod";
import { portVisibilitySchema } from "../../pipeline/workspace-model.js";
import { AppError } from "../../errors.js";
import type { Services } from "../../services.js";
import { workspaceParams } from "../schemas.js";
import { portViewSchema } from "../../workspaces/views.js";
import { watchGuestAccess } from "../guest-sockets.js";

const portParams = workspaceParams.extend({ port: z.coerce.number().int().min(1).max(65535) });
const proxyParams = portParams.extend({ "*": z.string().optional() });

/** Headers of one hop, never passed on (RFC 9110 §7.6.1), and what the proxy sets itself. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"]);

/**
 * What a workspace's server may not say on Slipway's origin: a cookie would be Slipway's (a
 * slipway_session of the page author's account signs the visitor in as them), and
 * Clear-Site-Data would sign the visitor out.
 */
const REFUSED_ANSWER_HEADERS = new Set(["set-cookie", "clear-site-data"]);

/**
 * Pages of a workspace are served from Slipway's own origin: without this they could read the
 * API with the visitor's session. The sandbox directive gives them an origin of their own (no
 * Slipway cookies, no same-origin requests), while scripts, forms and popups still work.
 */
const PAGE_SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox allow-modals allow-downloads";

/** The request's headers as the workspace's server gets them: no cookies, and who asked through which prefix. */
function upstreamHeaders(request: FastifyRequest, prefix: string, port: number): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(request.headers as IncomingHttpHeaders)) {
    if (value === undefined || HOP_BY_HOP.has(name) || name.startsWith("sec-websocket-")) continue;
    // Cookies on this origin are Slipway's (pages of workspaces may set none, below): none goes on.
    if (name === "cookie") continue;
    out[name] = value;
  }
  out.host = `localhost:${port}`;
  out["x-forwarded-host"] = request.headers.host ?? "";
  out["x-forwarded-proto"] = request.protocol;
  out["x-forwarded-prefix"] = prefix;
  return out;
}

/** The workspace's ports: which are open, who may reach them, and the proxy that serves them at /w/<id>/p/<port>/. */
export const workspacePortRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { workspaceHost: host } = services;

  app.get(
    "/api/v1/workspaces/:workspaceId/ports",
    {
      config: { access: { kind: "workspace", scope: "workspaces:read", guests: true } },
      schema: {
        summary: "A running workspace's ports",
        description: "Those its config names and those something listens on now, each served at `url` to its owner (private) or to anyone with the link (public). None while it is not running.",
        params: workspaceParams,
        response: { 200: z.object({ ports: z.array(portViewSchema) }) },
      },
    },
    async (request) => {
      const id = request.params.workspaceId;
      const ports = await host.ports(id);
      return { ports: ports.map((p) => ({ ...p, url: `${services.publicUrl()}/w/${id}/p/${p.port}/` })) };
    },
  );

  app.put(
    "/api/v1/workspaces/:workspaceId/ports/:port",
    {
      config: { access: { kind: "workspace", scope: "workspaces:write" } },
      schema: {
        summary: "Make a port public or private",
        description: "P18: takes effect with the next request, and holds when the workspace runs again; a public port is open to anyone with its URL while the workspace runs.",
        params: portParams,
        body: z.object({ visibility: portVisibilitySchema }).strict(),
        response: { 200: z.object({ port: z.number(), visibility: portVisibilitySchema }) },
      },
    },
    async (request) => {
      const { workspaceId, port } = request.params;
      await services.workspaces.setPortVisibility(workspaceId, port, request.body.visibility);
      return { port, visibility: request.body.visibility };
    },
  );

  // The proxy passes bodies through as they come, whatever their type or size.
  app.register(async (proxy) => {
    proxy.removeAllContentTypeParsers();
    proxy.addContentTypeParser("*", (_request, payload, done) => done(null, payload));

    const forward = async (request: FastifyRequest, reply: FastifyReply) => {
      const { workspaceId, port } = proxyParams.parse(request.params);
      const prefix = `/w/${workspaceId}/p/${port}`;
      if (!host.sandboxOf(workspaceId)) return reply.code(404).send({ error: { code: "not_found", message: "the workspace is not running" } });
      host.used(workspaceId);
      const path = request.url.slice(prefix.length);
      // Relative links of the page resolve under the prefix only from "…/p/<port>/".
      if (!path.startsWith("/")) return reply.redirect(`${prefix}/${path}`, 308);
      // A full workspace (too many connections) says so; a port nobody listens on is a 502.
      const connection = await host.connect(workspaceId, port).catch((err: unknown) => {
        if (err instanceof AppError) throw err;
        return undefined;
      });
      if (!connection) return reply.code(502).send({ error: { code: "port_closed", message: `nothing listens on port ${port} in the workspace yet; start the server, then reload` } });
      reply.hijack();
      const res = reply.raw;
      const upstream = httpRequest({ method: request.method, path, headers: upstreamHeaders(request, prefix, port), createConnection: () => connection as never });
      upstream.on("response", (answer: IncomingMessage) => {
        const headers: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(answer.headers)) if (value !== undefined && !HOP_BY_HOP.has(name) && !REFUSED_ANSWER_HEADERS.has(name)) headers[name] = value;
        headers["content-security-policy"] = PAGE_SANDBOX;
        res.writeHead(answer.statusCode ?? 502, headers);
        answer.pipe(res);
      });
      upstream.on("error", () => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { code: "bad_gateway", message: `the server on port ${port} closed the connection` } }));
      });
      request.raw.on("close", () => {
        if (!res.writableEnded) upstream.destroy();
      });
      const body = request.body as NodeJS.ReadableStream | undefined;
      if (body) body.pipe(upstream);
      else upstream.end();
    };

    const config = { access: { kind: "workspacePort" as const } };
    // Hidden from the API document: these are the workspace's own pages, not Slipway's API.
    const schema = { hide: true, params: proxyParams };
    for (const url of ["/w/:workspaceId/p/:port", "/w/:workspaceId/p/:port/*"]) {
      proxy.route({ method: ["DELETE", "PATCH", "POST", "PUT", "OPTIONS"], url, config, schema, handler: forward });
      proxy.route({
        method: "GET",
        url,
        config,
        schema,
        handler: forward,
        // A WebSocket of the workspace's page (a dev server's live reload): relayed message by message.
        wsHandler: async (socket, request) => {
          const { workspaceId, port } = proxyParams.parse(request.params);
          const prefix = `/w/${workspaceId}/p/${port}`;
          const connection = await host.connect(workspaceId, port).catch((err: unknown) => (err instanceof AppError ? err : undefined));
          if (connection instanceof AppError) return socket.close(1013, connection.message.slice(0, 120));
          if (!connection) return socket.close(1011, `nothing listens on port ${port}`);
          // The browser may have gone while the relay started: its slot is given back at once.
          if (socket.readyState !== WebSocket.OPEN) return connection.destroy();
          const upstream = new WebSocket(`ws://localhost:${port}${request.url.slice(prefix.length) || "/"}`, { createConnection: () => connection as never, headers: upstreamHeaders(request, prefix, port) as Record<string, string> });
          const pending: Array<[WebSocket.RawData, boolean]> = [];
          socket.on("message", (data, isBinary) => {
            host.used(workspaceId);
            if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary: isBinary });
            else pending.push([data, isBinary]);
          });
          upstream.on("open", () => {
            for (const [data, isBinary] of pending.splice(0)) upstream.send(data, { binary: isBinary });
          });
          upstream.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
          const closeCode = (code: number) => (code >= 1000 && code < 5000 && code !== 1005 && code !== 1006 ? code : 1000);
          upstream.on("close", (code, reason) => socket.close(closeCode(code), reason));
          upstream.on("error", () => socket.close(1011, "the workspace's server closed the connection"));
          void watchGuestAccess(services, workspaceId, request.principal?.userId, socket, () => upstream.terminate(), false);
          socket.on("close", (code, reason) => (upstream.readyState === WebSocket.CONNECTING ? upstream.terminate() : upstream.close(closeCode(code), reason)));
        },
      });
    }
  });
};
