import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { Services } from "../../services.js";
import { contextOf } from "../plugins/access.js";
import { deployKeySchema, projectParams, webhookSecretSchema } from "../schemas.js";


/** How a project reaches its repository (deploy key) and how its repository reaches it (signed webhook). */
export const projectCredentialRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { deployKeys, webhooks } = services;

  app.get(
    "/projects/:projectId/deploy-key",
    {
      config: { access: { kind: "project", action: "project.read" } },
      schema: {
        summary: "The project's SSH deploy key (public half)",
        description: "Add `publicKey` as a read-only deploy key at your git server. The private half never leaves the server except into a build's sandbox for the clone.",
        params: projectParams,
        response: { 200: deployKeySchema },
      },
    },
    async (request) => deployKeys.get(request.params.projectId),
  );

  app.post(
    "/projects/:projectId/deploy-key",
    {
      config: { access: { kind: "project", action: "project.update" } },
      schema: {
        summary: "Replace the project's deploy key with a new pair",
        description: "The old key stops being used at once; remove it from your git server and add the new `publicKey`.",
        params: projectParams,
        response: { 200: deployKeySchema },
      },
    },
    async (request) => deployKeys.regenerate(contextOf(request), request.params.projectId),
  );

  app.post(
    "/projects/:projectId/webhook-secret",
    {
      config: { access: { kind: "project", action: "project.update" } },
      schema: {
        summary: "Make a new webhook secret (shown this once)",
        description: "The previous secret stops working at once. Sign each delivery to `url` with it: `X-Slipway-Signature: sha256=<hex HMAC-SHA256 of the raw body>`.",
        params: projectParams,
        response: { 200: webhookSecretSchema },
      },
    },
    async (request, reply) => {
      const { projectId } = request.params;
      const secret = await webhooks.regenerate(contextOf(request), projectId);
      // Shown once: no cache along the way may keep a copy.
      void reply.header("cache-control", "no-store");
      return { secret, url: `${services.publicUrl()}/api/v1/hooks/${projectId}` };
    },
  );
};
