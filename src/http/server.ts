import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { isLoopbackHost, type Settings } from "../config/settings.js";
import { startSshGateway } from "../gateway/start.js";
import { createServices, type Services } from "../services.js";
import { buildApp } from "./app.js";
import { loadTls, type TlsMaterial } from "./tls.js";

export interface RunningServer {
  app: FastifyInstance;
  services: Services;
  url: string;
  tls?: TlsMaterial;
  close(): Promise<void>;
}

/**
 * Starts Slipway. Loopback binds may serve plain HTTP; any other bind serves HTTPS only (TLS 1.2+),
 * with the operator's certificate or a self-signed one made on first start.
 */
export async function startServer(settings: Settings, log: Logger): Promise<RunningServer> {
  const services = await createServices(settings, log);
  try {
    await services.workspaceHost.recover();
    const needsTls = !isLoopbackHost(settings.host) || Boolean(settings.tlsCertFile);
    const tls = needsTls
      ? await loadTls({ certFile: settings.tlsCertFile, keyFile: settings.tlsKeyFile, host: settings.host, slot: services.secrets.systemSlot("tls") })
      : undefined;
    const app = await buildApp(services, { tls, logger: log });
    await app.listen({ host: settings.host, port: settings.port });
    const address = app.server.address();
    const port = typeof address === "object" && address ? address.port : settings.port;
    const shownHost = settings.host.includes(":") ? `[${settings.host}]` : settings.host === "0.0.0.0" ? "localhost" : settings.host;
    const url = `${tls ? "https" : "http"}://${shownHost}:${port}`;
    services.setPublicUrl(url);
    const ssh = settings.sshGateway ? await startSshGateway(services, settings.sshPort ?? (settings.port === 0 ? 0 : 2222), settings.sshHost ?? settings.host, log) : undefined;
    if (ssh) log.info({ port: ssh.address.port }, `SSH gateway to workspaces on ${ssh.address.address}:${ssh.address.port}`);
    // Jobs whose runner went silent are retried or failed; nothing waits forever.
    const sweeper = setInterval(() => {
      services.builds.expireLeases().catch((err: unknown) => log.error({ err }, "expiring job leases failed"));
    }, 5_000);
    sweeper.unref();
    const workspaceSweeper = setInterval(() => {
      services.workspaceHost.stopExpired().catch((err: unknown) => log.error({ err }, "stopping idle workspaces failed"));
    }, 30_000);
    workspaceSweeper.unref();
    return {
      app,
      services,
      url,
      tls,
      async close() {
        clearInterval(sweeper);
        clearInterval(workspaceSweeper);
        await ssh?.gateway.close();
        await app.close();
        await services.close();
      },
    };
  } catch (err) {
    await services.close();
    throw err;
  }
}
