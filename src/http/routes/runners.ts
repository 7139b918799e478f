import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { actorOf } from "../../audit/audit-log.js";
import { runnerSchema } from "../../builds/runners.js";
import type { Services } from "../../services.js";
import { contextOf } from "../plugins/access.js";

const admin = { access: { kind: "admin" } } as const;

/** The instance's runners, for its administrators: the same registration as `slipway admin create-runner`, from the browser. */
export const runnerAdminRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { runners } = services;

  app.get(
    "/runners",
    { config: admin, schema: { summary: "The instance's runners", description: "Instance administrators only. `online`: seen within the last minute.", response: { 200: z.object({ runners: z.array(runnerSchema) }) } } },
    async () => ({ runners: await runners.list() }),
  );

  app.post(
    "/runners",
    {
      config: admin,
      schema: {
        summary: "Register a runner",
        description:
          "Instance administrators only, with their password again: a runner token reads the secrets of every organization's builds, so a session left open must not be enough to mint one (wrong passwords count towards the sign-in lock-out). Returns the runner's token, shown only this once; start the runner with it in SLIPWAY_RUNNER_TOKEN (`slipway runner --server <this server>`). Audited.",
        body: z.object({ name: z.string().trim().min(1).max(100), currentPassword: z.string().min(1).max(256) }).strict(),
        response: { 201: z.object({ runner: runnerSchema, token: z.string() }) },
      },
    },
    async (request, reply) => {
      const ctx = contextOf(request);
      await services.throttle.guard(ctx.principal.email, ctx.ip, () => services.users.confirmPassword(ctx.principal.userId, request.body.currentPassword));
      const { runner, token } = await runners.register(request.body.name, actorOf(ctx));
      return reply.code(201).send({ runner, token });
    },
  );

  app.delete(
    "/runners/:runnerId",
    { config: admin, schema: { summary: "Remove a runner", description: "Instance administrators only. Its token stops working at once; a job it was running is handled as for any lost runner when its lease runs out. Audited.", params: z.object({ runnerId: z.string().min(1).max(64) }) } },
    async (request, reply) => {
      await runners.deregister(request.params.runnerId, actorOf(contextOf(request)));
      return reply.code(204).send();
    },
  );
};
