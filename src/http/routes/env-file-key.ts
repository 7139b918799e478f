import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { ENV_FILE_MAX_BYTES } from "../../secrets/env-file-format.js";
import type { Services } from "../../services.js";
import { contextOf } from "../plugins/access.js";
import { projectParams } from "../schemas.js";

/** An encrypted env file's text, as committed (lines of `slipway:v1:…`). */
export const envFileTextSchema = z.string().max(ENV_FILE_MAX_BYTES);

/** The project's key for encrypted env files (`encrypted_env_file`): public half to encrypt, audited decrypt. */
export const envFileKeyRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { envFileKeys, projects } = services;

  app.get(
    "/projects/:projectId/env-file-key",
    {
      config: { access: { kind: "project", action: "project.read" } },
      schema: {
        summary: "The project's public key for encrypted env files",
        description: "Base64 of an X25519 public key, made on first use. `slipway secrets encrypt` seals each NAME=value line for it; only the server holds the private half.",
        params: projectParams,
        response: { 200: z.object({ publicKey: z.string() }) },
      },
    },
    async (request) => ({ publicKey: await envFileKeys.publicKey(request.params.projectId) }),
  );

  app.post(
    "/projects/:projectId/env-file-key/decrypt",
    {
      config: { access: { kind: "project", action: "project.env_files.decrypt" } },
      schema: {
        summary: "Decrypt an encrypted env file (owners and admins; audited)",
        description: "Answers the file's NAME=value lines in plain text. 422 `env_file_unreadable` names the line that does not open. `name` only labels the file in messages.",
        params: projectParams,
        body: z.object({ text: envFileTextSchema, name: z.string().min(1).max(200).default("the file") }).strict(),
        response: { 200: z.object({ text: z.string() }) },
      },
    },
    async (request, reply) => {
      const p = await projects.get(request.params.projectId);
      const text = await envFileKeys.decrypt(contextOf(request), p.id, p.orgId, request.body.text, request.body.name);
      // Plaintext secrets: no cache along the way may keep a copy.
      void reply.header("cache-control", "no-store");
      return { text };
    },
  );
};
