import { createServer, type AddressInfo, type Server as NetServer, type Socket } from "node:net";
import type { Logger } from "pino";
import ssh2, { type ClientInfo, type Connection, type PublicKeyAuthContext, type ServerChannel, type Session } from "ssh2";

// ssh2 is CommonJS: its parts are properties of the default export.
const { Server, utils } = ssh2;
import type { AuditLog } from "../audit/audit-log.js";
import type { SshKeys } from "../auth/ssh-keys.js";
import type { Sharing } from "../workspaces/sharing.js";
import type { TerminalSize } from "../workspaces/terminal.js";
import { SFTP_SERVER, type WorkspaceHost } from "../workspaces/workspace-host.js";
import type { Workspaces } from "../workspaces/workspaces.js";

export interface SshGatewayOptions {
  workspaces: Workspaces;
  host: WorkspaceHost;
  keys: SshKeys;
  audit: AuditLog;
  /** Whether the user may still open workspaces of the project (P18): access is decided again at each login. */
  mayUse(userId: string, projectId: string): Promise<boolean>;
  /** Approved guests of shared workspaces get in too, and out again the moment that ends. */
  sharing: Pick<Sharing, "guests" | "isGuest" | "onAccessEnded">;
  /** The organisation of a project, for the audit log. */
  orgOf(projectId: string): Promise<string | null>;
  /** The gateway's host key (an OpenSSH private key), made once and kept in the secret box. */
  hostKey: string;
  log: Logger;
}

/** Who a connection was let in as. */
interface Login {
  workspaceId: string;
  projectId: string;
  userId: string;
  fingerprint: string;
  /** Let in as an approved guest, not as the owner. */
  guest: boolean;
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1"]);
const DEFAULT_SIZE: TerminalSize = { cols: 80, rows: 24 };

/**
 * The SSH gateway: `ssh <workspace id>@<host> -p <port>` with a key registered in the account
 * of the workspace's owner (or of a guest they approved) gives a shell in it (a terminal like the browser's), runs commands,
 * serves SFTP (scp, editors' Remote-SSH) and forwards ports to the workspace's loopback (-L).
 * Every session is audited.
 */
export class SshGateway {
  private readonly server: InstanceType<typeof Server>;
  /** Connections are accepted here and handed to ssh2, so that one can be cut off at the socket. */
  private readonly listener: NetServer;
  private readonly sockets = new Map<string, Socket>();

  constructor(private readonly opts: SshGatewayOptions) {
    this.server = new Server({ hostKeys: [opts.hostKey], ident: "Slipway" }, (client, info) => this.serve(client, info));
    this.listener = createServer((socket) => {
      const peer = `${socket.remoteAddress}:${socket.remotePort}`;
      this.sockets.set(peer, socket);
      socket.once("close", () => this.sockets.delete(peer));
      this.server.injectSocket(socket);
    });
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.listener.once("error", reject);
      this.listener.listen(port, host, () => resolve(this.listener.address() as AddressInfo));
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.listener.close(() => resolve()));
  }

  private serve(client: Connection, { ip, port }: ClientInfo): void {
    let login: Login | undefined;
    client.on("error", () => undefined);
    client.on("authentication", (ctx) => {
      if (ctx.method !== "publickey") return ctx.reject(["publickey"]);
      // Without a signature the client only asks whether a key would do. Every key may go on to
      // sign: the answer must not tell whose keys open which workspace.
      if (!ctx.signature) return ctx.accept();
      this.authenticate(ctx).then(
        (who) => {
          if (!who) return ctx.reject(["publickey"]);
          login = who;
          ctx.accept();
        },
        (err: Error) => {
          this.opts.log.warn({ err }, "ssh authentication failed");
          ctx.reject(["publickey"]);
        },
      );
    });
    client.on("ready", () => {
      const who = login!;
      if (who.guest) {
        // A client may ignore the goodbye: a moment later, its socket is cut whatever it does.
        const cut = () => {
          client.end();
          setTimeout(() => this.sockets.get(`${ip}:${port}`)?.destroy(), 500).unref();
        };
        client.on("close", this.opts.sharing.onAccessEnded(who.workspaceId, who.userId, cut));
        // Sent away between the login and now: the watch above came too late for that.
        void this.opts.sharing.isGuest(who.workspaceId, who.userId).then((still) => still || cut());
      }
      void this.opts.orgOf(who.projectId).then((orgId) =>
        this.opts.audit.record({ action: "workspace.ssh_session", actorId: who.userId, actor: `ssh ${who.fingerprint}`, orgId, target: who.workspaceId, ip, details: { fingerprint: who.fingerprint } }),
      );
      client.on("session", (accept) => this.session(accept(), who));
      client.on("tcpip", (accept, reject, info) => {
        if (!LOOPBACK.has(info.destIP)) return reject();
        this.opts.host.connect(who.workspaceId, info.destPort).then(
          (socket) => {
            if (!socket) return reject();
            let channel: ServerChannel;
            try {
              channel = accept();
            } catch {
              // The client went while the relay started: its slot is given back at once.
              return socket.destroy();
            }
            this.opts.host.used(who.workspaceId);
            channel.pipe(socket).pipe(channel);
            socket.on("error", () => channel.destroy()).once("close", () => channel.destroy());
            channel.on("error", () => socket.destroy()).once("close", () => socket.destroy());
          },
          () => reject(),
        );
      });
    });
  }

  /**
   * Who signed in, by a valid signature with a registered key: the owner of the running workspace
   * named as the user while they may open workspaces of its project, or one of its approved guests.
   */
  private async authenticate(ctx: PublicKeyAuthContext): Promise<Login | undefined> {
    const parsed = utils.parseKey(ctx.key.data);
    if (parsed instanceof Error || !ctx.signature || !parsed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo)) return undefined;
    const ws = await this.opts.workspaces.ownership(ctx.username);
    if (!ws || !this.opts.host.sandboxOf(ctx.username)) return undefined;
    const guests = (await this.opts.sharing.guests(ctx.username)).filter((g) => g.state === "approved").map((g) => g.userId);
    for (const userId of [ws.ownerId, ...guests]) {
      const key = await this.opts.keys.match(userId, ctx.key.data);
      if (!key) continue;
      const may = userId === ws.ownerId ? await this.opts.mayUse(userId, ws.projectId) : await this.opts.sharing.isGuest(ctx.username, userId);
      if (may) return { workspaceId: ctx.username, projectId: ws.projectId, userId, fingerprint: key.fingerprint, guest: userId !== ws.ownerId };
    }
    return undefined;
  }

  private session(session: Session, who: Login): void {
    const { workspaceId } = who;
    const host = this.opts.host;
    let size: TerminalSize | undefined;
    let terminalId: string | undefined;
    session.on("pty", (accept, _reject, info) => {
      size = { cols: Math.max(2, Math.min(1000, info.cols || DEFAULT_SIZE.cols)), rows: Math.max(1, Math.min(1000, info.rows || DEFAULT_SIZE.rows)) };
      accept?.();
    });
    session.on("window-change", (accept, _reject, info) => {
      accept?.();
      const terminal = terminalId && host.terminal(workspaceId, terminalId);
      if (terminal) void terminal.resize({ cols: Math.max(2, Math.min(1000, info.cols)), rows: Math.max(1, Math.min(1000, info.rows)) }).catch(() => undefined);
    });
    session.on("env", (accept) => accept?.());
    const inTerminal = (channel: ServerChannel, script?: string) => {
      let terminal: ReturnType<typeof host.openTerminal>;
      try {
        terminal = host.openTerminal(workspaceId, { size: size ?? DEFAULT_SIZE, script, name: script ? "ssh command" : "ssh", ...(who.guest && { guest: who.userId }) });
      } catch (err) {
        return channel.end(`${(err as Error).message}\r\n`);
      }
      if (!terminal) return channel.end("the workspace is not running\r\n");
      terminalId = terminal.id;
      const attached = terminal.attach(
        (data) => channel.write(data),
        (status) => {
          channel.exit(status.code ?? 255);
          channel.end();
        },
      );
      channel.write(attached.backlog);
      channel.on("data", (data: Buffer) => {
        host.used(workspaceId);
        terminal.write(data);
      });
      channel.on("close", () => {
        attached.detach();
        void host.closeTerminal(workspaceId, terminal.id);
      });
    };
    session.on("shell", (accept) => inTerminal(accept()));
    session.on("exec", (accept, _reject, info) => {
      const channel = accept();
      if (size) return inTerminal(channel, info.command);
      this.run(channel, workspaceId, ["/bin/sh", "-c", info.command]);
    });
    session.on("subsystem", (accept, reject, info) => {
      if (info.name !== "sftp") return reject();
      this.run(accept(), workspaceId, [SFTP_SERVER]);
    });
  }

  /** A command without a terminal: its output and exit status go back over the channel as they are. */
  private run(channel: ServerChannel, workspaceId: string, argv: string[]): void {
    const shell = this.opts.host.shellOf(workspaceId);
    if (!shell) {
      channel.stderr.write("the workspace is not running\n");
      channel.exit(255);
      return void channel.end();
    }
    this.opts.host.used(workspaceId);
    // As sshd hangs up on a session's processes: a command ends with its connection.
    const hangUp = new AbortController();
    channel.once("close", () => hangUp.abort());
    shell.sandbox
      .exec({ argv, env: shell.env, cwd: shell.cwd, signal: hangUp.signal }, { stdin: channel, stdout: (d) => channel.write(d), stderr: (d) => channel.stderr.write(d) })
      .then(
        (status) => channel.exit(status.code ?? 255),
        (err: Error) => {
          channel.stderr.write(`${err.message}\n`);
          channel.exit(255);
        },
      )
      .finally(() => channel.end());
  }
}
