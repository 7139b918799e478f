import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { badgeSvg } from "../../builds/badge-svg.js";
import { AppError } from "../../errors.js";
import type { Services } from "../../services.js";
import { contextOf } from "../plugins/access.js";
import { badgeLinkSchema, projectParams, refPart } from "../schemas.js";

/** Status badges: an SVG anyone with the project's badge link can load, and that link for the project's members. */
export const badgeRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { badges, builds } = services;
  const linkOf = async (projectId: string, token: string) => {
    const base = services.publicUrl();
    const imageUrl = `${base}/badge/${projectId}.svg?token=${token}`;
    return { imageUrl, markdown: `[![build](${imageUrl})](${base}/projects/${projectId})` };
  };

  app.get(
    "/badge/:file",
    {
      // No per-address limit: image proxies (GitHub's camo) fetch every README's badges from a few
      // shared addresses, and a load costs an HMAC and a few small queries.
      config: { access: { kind: "public" } },
      schema: {
        summary: "A project's status badge (SVG)",
        description:
          "`/badge/<projectId>.svg?token=…&branch=…`: the status of the latest build that is not of a pull request (of the branch when given). The token comes with the badge link from `GET /api/v1/projects/:id/badge`; a wrong token and an unknown project both answer 404. Other query parameters (cache busters that READMEs add) are ignored.",
        params: z.object({ file: z.string().max(80) }),
        querystring: z.object({ token: z.string().max(64), branch: refPart.optional() }),
      },
    },
    async (request, reply) => {
      const projectId = /^([A-Za-z0-9_-]{1,64})\.svg$/.exec(request.params.file)?.[1];
      if (!projectId || !(await badges.check(projectId, request.query.token))) {
        throw new AppError(404, "not_found", "no badge at this address: copy the badge link from the project's settings again (regenerating it changes the link)");
      }
      const [latest] = await builds.list(projectId, { limit: 1, branch: request.query.branch, withoutPullRequests: true });
      // Badges are embedded by image proxies that cache hard; each load should show the current status.
      return reply.type("image/svg+xml; charset=utf-8").header("cache-control", "no-cache, max-age=0").send(badgeSvg(latest));
    },
  );

  app.get(
    "/api/v1/projects/:projectId/badge",
    {
      config: { access: { kind: "project", action: "project.read" } },
      schema: { summary: "The project's status badge link", params: projectParams, response: { 200: badgeLinkSchema } },
    },
    async (request) => linkOf(request.params.projectId, await badges.token(request.params.projectId)),
  );

  app.post(
    "/api/v1/projects/:projectId/badge",
    {
      config: { access: { kind: "project", action: "project.update" } },
      schema: { summary: "Replace the status badge link", description: "Every earlier badge link stops working.", params: projectParams, response: { 200: badgeLinkSchema } },
    },
    async (request) => linkOf(request.params.projectId, await services.badges.regenerate(contextOf(request), request.params.projectId)),
  );
};
