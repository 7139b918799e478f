import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { AppError, conflict } from "../../errors.js";
import type { Services } from "../../services.js";
import { workspaceParams } from "../schemas.js";
import { watchGuestAccess } from "../guest-sockets.js";
import { contextOf } from "../plugins/access.js";
import { terminalSchema, terminalSizeSchema } from "../../workspaces/terminal.js";

const terminalParams = workspaceParams.extend({ terminalId: z.string().min(1).max(64) });

/** Control messages a browser sends as text frames; keys typed go as binary frames. */
const controlSchema = z.discriminatedUnion("type", [z.object({ type: z.literal("resize"), cols: z.number(), rows: z.number() }), z.object({ type: z.literal("input"), data: z.string().max(1024 * 1024) })]);

/** The largest frame a terminal accepts: a big paste, not a flood. */
export const MAX_TERMINAL_FRAME = 1024 * 1024;

/** Terminals of a running workspace: list, open, close, and attach over a WebSocket. */
export const workspaceTerminalRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  const { workspaceHost: host } = services;

  app.get(
    "/workspaces/:workspaceId/terminals",
    {
      config: { access: { kind: "workspace", scope: "workspaces:read", guests: true } },
      schema: { summary: "A running workspace's terminals: its tasks' and the shells opened in it", params: workspaceParams, response: { 200: z.object({ terminals: z.array(terminalSchema) }) } },
    },
    async (request) => ({ terminals: host.terminals(request.params.workspaceId) }),
  );

  app.post(
    "/workspaces/:workspaceId/terminals",
    {
      config: { access: { kind: "workspace", scope: "workspaces:write", guests: true } },
      schema: {
        summary: "Open a shell in a running workspace",
        description: "A login shell in the workspace's folder, with its variables. Attach to it with the WebSocket at …/terminals/{terminalId}/attach.",
        params: workspaceParams,
        body: z.object({ cols: terminalSizeSchema.shape.cols.default(120), rows: terminalSizeSchema.shape.rows.default(32) }).strict().optional(),
        response: { 201: terminalSchema },
      },
    },
    async (request, reply) => {
      const { workspaceId } = request.params;
      const { userId } = contextOf(request).principal;
      const guest = (await services.workspaces.ownership(workspaceId))?.ownerId === userId ? undefined : userId;
      const terminal = host.openTerminal(workspaceId, { size: request.body, guest });
      if (!terminal) throw conflict("the workspace is not running; start it first");
      return reply.code(201).send(terminal.info);
    },
  );

  app.delete(
    "/workspaces/:workspaceId/terminals/:terminalId",
    {
      config: { access: { kind: "workspace", scope: "workspaces:write", guests: true } },
      schema: { summary: "Close a terminal and end what runs in it", params: terminalParams },
    },
    async (request, reply) => {
      if (!(await host.closeTerminal(request.params.workspaceId, request.params.terminalId))) throw new AppError(404, "no_terminal", "no such terminal in the running workspace; list them with GET …/terminals");
      return reply.code(204).send();
    },
  );

  app.route({
    method: "GET",
    url: "/workspaces/:workspaceId/terminals/:terminalId/attach",
    config: { access: { kind: "workspace", scope: "workspaces:write", guests: true } },
    schema: {
      summary: "Attach to a terminal (WebSocket)",
      description:
        "Upgrade to a WebSocket. The server sends what the terminal printed so far, then its output live, as binary frames; at its end a text frame `{\"type\":\"exit\",\"code\":N}`, and the socket closes. Send keys as binary frames, or text frames `{\"type\":\"input\",\"data\":\"…\"}`; resize with `{\"type\":\"resize\",\"cols\":C,\"rows\":R}`. A browser's session must come from a page of this server (Origin). Closing the socket leaves the terminal running; attach again to go on. A plain GET answers 426.",
      params: terminalParams,
    },
    handler: async (_request, reply) => reply.code(426).header("upgrade", "websocket").send({ error: { code: "upgrade_required", message: "this is a WebSocket: connect with Upgrade: websocket" } }),
    wsHandler: (socket, request) => {
      const { workspaceId, terminalId } = request.params;
      const terminal = host.terminal(workspaceId, terminalId);
      if (!terminal) {
        socket.close(4404, "no such terminal in a running workspace");
        return;
      }
      const attached = terminal.attach(
        (data) => socket.send(data),
        (status) => {
          socket.send(JSON.stringify({ type: "exit", code: status.code }));
          socket.close(1000, "the terminal ended");
        },
      );
      socket.send(attached.backlog);
      let cut = false;
      void watchGuestAccess(services, workspaceId, request.principal?.userId, socket, () => {
        cut = true;
        attached.detach();
      }, true);
      socket.on("message", (data: Buffer, isBinary: boolean) => {
        if (cut) return;
        host.used(workspaceId);
        if (isBinary) return terminal.write(data);
        const parsed = controlSchema.safeParse(safeJson(data.toString("utf8")));
        if (!parsed.success) return socket.close(4400, "a text frame is a JSON control message: resize or input");
        if (parsed.data.type === "input") return terminal.write(parsed.data.data);
        const size = terminalSizeSchema.safeParse(parsed.data);
        if (!size.success) return socket.close(4400, "cols 2-1000 and rows 1-1000");
        void terminal.resize(size.data).catch(() => undefined);
      });
      socket.on("close", () => attached.detach());
    },
  });
};

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
