import type { Socket } from "node:net";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";

/**
 * Closing the server ends the keep-alive connections idle at that moment; two kinds would hold the
 * shutdown for a minute or more: a connection that has not sent its first request yet (a client
 * that connected and gave up), which Node counts as neither idle nor busy, and one whose request
 * was in flight, which stays open for the next request once it is answered. The first kind is
 * closed at once; the second finishes its request and is told to close. Whatever is still open
 * after a grace period (live log streams, which follow a job that may run for hours) is cut.
 */
const GRACE_MS = 5_000;

export const shutdownPlugin = fp(async (app: FastifyInstance, opts: { tls: boolean }) => {
  const waiting = new Set<Socket>();
  // Over TLS, requests arrive on the TLS socket, which exists once the handshake is done.
  app.server.on(opts.tls ? "secureConnection" : "connection", (socket: Socket) => {
    waiting.add(socket);
    socket.once("close", () => waiting.delete(socket));
  });
  app.addHook("onRequest", async (request) => {
    waiting.delete(request.raw.socket);
  });
  let closing = false;
  app.addHook("onSend", async (_request, reply, payload) => {
    if (closing) reply.header("connection", "close");
    return payload;
  });
  app.addHook("preClose", async () => {
    closing = true;
    for (const socket of waiting) socket.destroy();
    setTimeout(() => app.server.closeAllConnections(), GRACE_MS).unref();
  });
});
