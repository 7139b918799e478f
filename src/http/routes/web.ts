import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { AppError } from "../../errors.js";
import { MAX_PARAM_LENGTH, SEGMENT_TOO_LONG } from "../plugins/errors.js";

/** Where `vite build` puts the browser app: dist/web in the package, whether this runs from dist/src or src. */
export const WEB_ROOT = path.join(packageRoot(path.dirname(fileURLToPath(import.meta.url))), "dist", "web");

function packageRoot(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    if (existsSync(path.join(d, "package.json"))) return d;
    if (path.dirname(d) === d) return dir;
  }
}

const publicAccess = { access: { kind: "public" } } as const;

/**
 * The browser app, from the same origin as the API: its hashed assets (cached for good) and, for
 * every other page path, its index.html (never cached, so a new release is picked up at once). The
 * page talks only to the public API under /api/v1, whose unknown paths stay JSON 404s.
 */
export const webRoutes: FastifyPluginAsync = async (app) => {
  const built = existsSync(path.join(WEB_ROOT, "index.html"));
  await app.register(fastifyStatic, { root: WEB_ROOT, serve: false });

  app.get("/assets/:file", { config: publicAccess, schema: { hide: true } }, async (request, reply) => {
    const { file } = request.params as { file: string };
    // Vite's file names start with a letter, digit, "_" or "-": ".." would be the directory (its index.html, cached for a year) and ".x" no asset.
    if (!built || !/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(file)) throw notFound(request.url);
    return reply.sendFile(path.join("assets", file), { maxAge: "365d", immutable: true });
  });

  const page = async (request: FastifyRequest, reply: FastifyReply) => {
    const url = request.url.split("?")[0]!;
    // This route catches what no other route took; the router says 414 for an overlong segment, so this does too.
    if (url.split("/").some((segment) => segment.length > MAX_PARAM_LENGTH)) throw new AppError(414, "uri_too_long", SEGMENT_TOO_LONG);
    // Pages have no file names: a dotted path (/.env, /x.php, /.well-known/…) is a file that is not here.
    if (url.split("/").some((segment) => segment.includes("."))) throw notFound(request.url);
    if (/^\/api(\/|$)/i.test(url)) throw notFound(request.url);
    if (!built) {
      return reply.code(503).type("text/plain; charset=utf-8").send("The web app is not built: run `npm run build` (the API under /api/v1 works without it).\n");
    }
    return reply.header("cache-control", "no-cache").sendFile("index.html", { cacheControl: false });
  };
  for (const url of ["/", "/*"]) app.get(url, { config: publicAccess, schema: { hide: true } }, page);
};

const notFound = (url: string) => new AppError(404, "not_found", `no route GET ${url.split("?")[0]}; see /api/v1/openapi.json`);
