import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { Runners } from "../builds/runners.js";
import { ImageBuilder } from "../images/image-builder.js";
import type { ImageStore } from "../images/image-store.js";
import { BwrapBackend } from "../sandbox/bwrap-backend.js";
import { Runner, type Transport } from "./runner.js";

/** The runner API reached through the server's own request handling: same routes, hooks and checks, no socket. */
export function injectTransport(app: FastifyInstance, token: string): Transport {
  return async (path, body) => {
    const res = await app.inject({ method: "POST", url: `/api/v1${path}`, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, payload: JSON.stringify(body) });
    return { status: res.statusCode, payload: res.statusCode === 204 ? undefined : res.json() };
  };
}

/**
 * The runner inside `slipway serve`: a registered runner like any other, using the same runner
 * API through the server's own request handling (no socket, no certificate to trust), with
 * outbound networking for clones. Returns how to stop it; undefined when this machine cannot
 * run sandboxes (then only runners elsewhere run builds, and the log says why).
 */
export async function startEmbeddedRunner(app: FastifyInstance, runners: Runners, images: ImageStore, log: Logger, concurrency = 2): Promise<(() => Promise<void>) | undefined> {
  let backend: BwrapBackend;
  try {
    backend = new BwrapBackend({ onWarning: (m) => log.warn(m) });
  } catch (err) {
    log.warn({ err }, "no embedded runner: sandboxes cannot run on this machine; register a runner elsewhere (slipway admin create-runner)");
    return undefined;
  }
  const { id, token } = await runners.register("embedded");
  const transport = injectTransport(app, token);
  // Short lease waits: an in-process request cannot be aborted, so shutdown waits for at most one.
  const runner = new Runner({ server: "embedded", token, backend, images, builder: new ImageBuilder(backend, images), imageCache: images.projectCaches, push: (...args) => images.push(...args), transport, leaseWaitMs: 2_000, network: { mode: "outbound" }, onError: (err) => log.error({ err }, "embedded runner") });
  runner.start(concurrency);
  log.info({ runner: id, concurrency }, "embedded runner started");
  return async () => {
    await runner.stop();
    await runners.remove(id);
  };
}
