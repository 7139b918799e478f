import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { Services } from "../../services.js";
import { version } from "../../version.js";
import { metaSchema } from "../schemas.js";

const publicAccess = { access: { kind: "public" } } as const;

/** Health, readiness, metrics, the security contact and server facts: all public by design. */
export const systemRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { settings } = services;

  app.get("/healthz", { config: publicAccess, schema: { hide: true } }, async () => ({ status: "ok" }));

  app.get("/readyz", { config: publicAccess, schema: { hide: true } }, async (_req, reply) => {
    try {
      await services.store.ping();
      return { status: "ready" };
    } catch {
      return reply.code(503).send({ error: { code: "database_unreachable", message: "the database does not answer; check SLIPWAY_DATABASE_URL and the database server" } });
    }
  });

  app.get("/metrics", { config: publicAccess, schema: { hide: true } }, async (_req, reply) => {
    reply.type(app.metrics.contentType);
    return app.metrics.metrics();
  });

  app.get("/.well-known/security.txt", { config: publicAccess, schema: { hide: true } }, async (_req, reply) => {
    const base = services.publicUrl();
    const expires = settings.securityTxtExpires ?? new Date(Date.now() + 180 * 86_400_000).toISOString();
    const lines = [
      `Contact: ${settings.securityContact ?? `mailto:security@${new URL(base).hostname}`}`,
      `Expires: ${expires}`,
      ...(settings.securityPgpKeyUrl ? [`Encryption: ${settings.securityPgpKeyUrl}`] : []),
      ...(settings.securityPolicyUrl ? [`Policy: ${settings.securityPolicyUrl}`] : []),
      "Preferred-Languages: en",
      `Canonical: ${base}/.well-known/security.txt`,
    ];
    reply.type("text/plain; charset=utf-8");
    return lines.join("\n") + "\n";
  });

  app.get(
    "/api/v1/meta",
    {
      config: publicAccess,
      schema: {
        summary: "Server version and facts that clients rely on",
        response: { 200: metaSchema },
      },
    },
    async () => ({ version, signup: settings.signup, egressAddresses: settings.egressAddresses, sshPort: services.sshPort() }),
  );

  app.get("/api/v1/openapi.json", { config: publicAccess, schema: { hide: true } }, async () => app.swagger());
};
