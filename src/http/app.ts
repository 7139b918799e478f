import { randomUUID } from "node:crypto";
import swagger from "@fastify/swagger";
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import type { Logger } from "pino";
import type { Services } from "../services.js";
import { version } from "../version.js";
import { accessPlugin } from "./plugins/access.js";
import { errorsPlugin, frameworkErrors, MAX_PARAM_LENGTH } from "./plugins/errors.js";
import { metricsPlugin } from "./plugins/metrics.js";
import { securityPlugin } from "./plugins/security.js";
import { shutdownPlugin } from "./plugins/shutdown.js";
import { accountRoutes } from "./routes/account.js";
import { badgeRoutes } from "./routes/badges.js";
import { buildRoutes } from "./routes/builds.js";
import { envFileKeyRoutes } from "./routes/env-file-key.js";
import { runnerApiRoutes } from "./routes/runner-api.js";
import { runnerAdminRoutes } from "./routes/runners.js";
import { hookRoutes } from "./routes/hooks.js";
import { organizationRoutes } from "./routes/organizations.js";
import { projectCredentialRoutes } from "./routes/project-credentials.js";
import { projectRoutes } from "./routes/projects.js";
import { sessionRoutes } from "./routes/session.js";
import { scmRoutes } from "./routes/scm.js";
import { systemRoutes } from "./routes/system.js";
import { webRoutes } from "./routes/web.js";
import { workspaceRoutes } from "./routes/workspaces.js";
import { MAX_TERMINAL_FRAME, workspaceTerminalRoutes } from "./routes/workspace-terminals.js";
import { workspacePortRoutes } from "./routes/workspace-ports.js";
import { workspaceSharingRoutes } from "./routes/workspace-sharing.js";
import websocket from "@fastify/websocket";

export const BODY_LIMIT = 256 * 1024;

/** The HTTP application: cross-cutting plugins once, then each concern's routes as its own plugin. */
export async function buildApp(services: Services, opts: { tls?: { cert: string; key: string }; logger: Logger | false }): Promise<FastifyInstance> {
  const tls = opts.tls !== undefined;
  const app = Fastify({
    loggerInstance: (opts.logger || undefined) as FastifyBaseLogger | undefined,
    logger: opts.logger ? undefined : false,
    bodyLimit: BODY_LIMIT,
    trustProxy: services.settings.trustProxy,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors,
    ...(opts.tls && { https: { ...opts.tls, minVersion: "TLSv1.2" as const } }),
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // The API speaks JSON only; Fastify would otherwise also parse text/plain bodies.
  app.removeContentTypeParser("text/plain");

  await app.register(errorsPlugin);
  await app.register(shutdownPlugin, { tls });
  await app.register(metricsPlugin);
  await app.register(securityPlugin, { tls, cookieSecret: await services.box.derivedKey("cookies"), csrfKey: await services.box.derivedKey("csrf") });
  await app.register(swagger, {
    openapi: {
      info: { title: "Slipway API", version, description: "Authenticate with the session cookie (browser; send X-CSRF-Token on writes) or `Authorization: Bearer <API token>`. Errors are `{ \"error\": { \"code\", \"message\" } }`." },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" }, session: { type: "apiKey", in: "cookie", name: "slipway_session" } } },
      security: [{ bearer: [] }, { session: [] }],
    },
    transform: jsonSchemaTransform,
  });
  await app.register(websocket, { options: { maxPayload: MAX_TERMINAL_FRAME } });
  await app.register(accessPlugin, { services });

  await app.register(systemRoutes, { services });
  await app.register(badgeRoutes, { services });
  for (const routes of [sessionRoutes, accountRoutes, organizationRoutes, projectRoutes, projectCredentialRoutes, envFileKeyRoutes, hookRoutes, scmRoutes, buildRoutes, runnerApiRoutes, runnerAdminRoutes, workspaceRoutes, workspaceTerminalRoutes, workspaceSharingRoutes]) {
    await app.register(routes, { prefix: "/api/v1", services, tls });
  }
  await app.register(workspacePortRoutes, { services });
  await app.register(webRoutes);
  return app;
}
