import { existsSync } from "node:fs";
import { PassThrough, type Duplex } from "node:stream";
import type { Logger } from "pino";
import { createMasker, maskText, secretValueProblem } from "../crypto/masking.js";
import { AppError } from "../errors.js";
import type { ImageStore } from "../images/image-store.js";
import { memoryFiles } from "../pipeline/files.js";
import { limits as configLimits } from "../pipeline/problems.js";
import { dockerfilePath } from "../pipeline/image-builds.js";
import type { ImageBuild } from "../pipeline/model.js";
import { configFileNames } from "../pipeline/load.js";
import { readWorkspaceConfig, workspaceConfigFileNames } from "../pipeline/workspace-load.js";
import { defaultWorkspaceConfig, type PortVisibility, type WorkspaceConfig, type WorkspaceImage } from "../pipeline/workspace-model.js";
import { WORKSPACE, type Sandbox, type SandboxBackend, type SandboxLimits, type SandboxSpec } from "../sandbox/backend.js";
import type { NetworkPolicy } from "../sandbox/network.js";
import { gitCheckout, hardenedGit, installPushKey, type RepositoryAccess } from "../runner/git-checkout.js";
import { archiveName, restoreWorkspace, saveWorkspace } from "./archive.js";
import type { ArchiveStorage } from "./archive-storage.js";
import { taskScript, type TaskStatus } from "./tasks.js";
import { Terminal, type TerminalInfo, type TerminalSize } from "./terminal.js";
import type { WorkspacePortStatus } from "./views.js";
import { LIVE_STATES, type Workspace, type Workspaces } from "./workspaces.js";

export interface WorkspaceHostOptions {
  /** The sandbox backend, made on first use: a machine that cannot run sandboxes fails the start, not the server. */
  backend(): SandboxBackend;
  images?: ImageStore;
  /**
   * Builds a workspace image from its Dockerfile (`image: {file}`, a dev container's `build`):
   * `checkout` puts the workspace's files into the builder's /workspace. Through the project's
   * image cache, an unchanged Dockerfile and context give the image built before.
   */
  build?(ws: Workspace, build: ImageBuild, checkout: (sandbox: Sandbox) => Promise<void>, output: (chunk: Buffer) => void): Promise<{ rootfs: string; env: Record<string, string>; dispose(): void }>;
  storage: ArchiveStorage;
  network: NetworkPolicy;
  limits?: Partial<SandboxLimits>;
  /** The deploy key and pinned host keys of a workspace's project. */
  access(ws: Workspace): RepositoryAccess;
  /** Variables the workspace's tasks and terminals get (user and project variables), and which of them are secret. */
  variables?(ws: Workspace): Promise<{ env: Record<string, string>; secrets: string[] }>;
  /** Called when a workspace stopped or failed: what held only while it ran ends. */
  stopped?(id: string): Promise<void>;
  /** How long a running workspace may stay unused, and run at once (its organisation's, within the operator's). */
  limitsOf(ws: Workspace): Promise<{ idleMs: number; maxLifetimeMs: number }>;
  /** P18: whether its owner may still open workspaces of its project; one whose owner lost that is stopped. */
  ownerMay?(ws: Workspace): Promise<boolean>;
  log: Logger;
}

interface Live {
  /** Replaced once, when a clone moves into the workspace's image. */
  sandbox: Sandbox;
  /** Releases the image built for it (held in memory while it runs). */
  dispose?(): void;
  config: WorkspaceConfig;
  /** Every terminal, the tasks' first. */
  terminals: Map<string, Terminal>;
  /** How many shells were opened in this run: each is named by its number. */
  shells: number;
  env: Record<string, string>;
  cwd: string;
  secrets: string[];
}

/** What a task's status shows of its output; its terminal keeps more. */
const TASK_OUTPUT_CHARS = 64 * 1024;
const DEFAULT_SIZE: TerminalSize = { cols: 120, rows: 32 };
/** Use of a workspace is written down at most this often. */
const USE_WRITE_MS = 5_000;

/** Where a workspace's SSH sessions find the SFTP server: the host's, bound in. */
export const SFTP_SERVER = "/.slipway/sftp-server";
const HOST_SFTP_SERVER = "/usr/lib/openssh/sftp-server";

/** Time a workspace's git commands and archive steps may take, each. */
const GIT_TIMEOUT_MS = 10 * 60_000;

/** Shells a running workspace may have open at once (browser, SSH): each is a process tree in it. */
export const MAX_TERMINALS = 32;
/** Of those, what one guest may have: a guest cannot take them all from the owner. */
export const MAX_GUEST_TERMINALS = 8;
/** Connections relayed into one workspace at once (port proxy, ssh -L): each is a process on the host. */
export const MAX_RELAYS = 32;

/**
 * Runs workspaces on this machine: a long-lived sandbox each, its /workspace cloned on the first
 * start and restored from its encrypted archive on the next, its tasks started; on stop,
 * /workspace archived, encrypted, stored, and the sandbox destroyed. Every step shows in the
 * workspace's state.
 */
export class WorkspaceHost {
  private readonly live = new Map<string, Live>();
  private readonly starting = new Map<string, Promise<void>>();
  private readonly stopping = new Map<string, Promise<void>>();
  private readonly lastUse = new Map<string, number>();
  private readonly relays = new Map<string, number>();

  constructor(
    private readonly workspaces: Workspaces,
    private readonly opts: WorkspaceHostOptions,
  ) {}

  /**
   * A server that starts finds no sandbox of an earlier run alive: workspaces it left running
   * failed, with what was archived at their last stop kept for the next start.
   */
  async recover(): Promise<void> {
    for (const ws of await this.workspaces.listIn(LIVE_STATES)) {
      const reason = `the server stopped while the workspace was ${ws.state}; changes since its last stop are lost. Start it again to resume${ws.archiveBytes === null ? " (it will be cloned afresh)" : " from its last stop"}`;
      await this.workspaces.transition(ws.id, LIVE_STATES, "failed", { reason }).catch(() => undefined);
      await this.opts.stopped?.(ws.id);
    }
  }

  /** Starts a pending workspace in the background; its state says how it goes. */
  start(id: string): void {
    const run = this.run(id)
      .catch((err: Error) => this.fail(id, err))
      .finally(() => this.starting.delete(id));
    this.starting.set(id, run);
  }

  /** Waits for the start under way, if any (tests, shutdown). */
  async settled(id: string): Promise<void> {
    await this.starting.get(id);
    await this.stopping.get(id);
  }

  tasks(id: string): TaskStatus[] {
    return [...(this.live.get(id)?.terminals.values() ?? [])]
      .filter((t) => t.info.kind === "task")
      .map((t) => {
        const { name, state, exitCode, id: terminal } = t.info;
        return { name, state: state === "running" ? "running" : exitCode === 0 ? "succeeded" : "failed", exitCode, output: t.output.toString("utf8").slice(-TASK_OUTPUT_CHARS), terminal };
      });
  }

  /**
   * Someone used the workspace (typed in a terminal, an SSH session, a request through the port
   * proxy): the idle timeout counts from now. Written at most every few seconds.
   */
  used(id: string): void {
    const now = Date.now();
    if (now - (this.lastUse.get(id) ?? 0) < USE_WRITE_MS) return;
    this.lastUse.set(id, now);
    this.workspaces.touch(id).catch((err: unknown) => this.opts.log.warn({ err, workspace: id }, "recording workspace use failed"));
  }

  terminals(id: string): TerminalInfo[] {
    return [...(this.live.get(id)?.terminals.values() ?? [])].map((t) => t.info);
  }

  terminal(id: string, terminalId: string): Terminal | undefined {
    return this.live.get(id)?.terminals.get(terminalId);
  }

  /**
   * The ports of a running workspace: those its config names and those something listens on now,
   * each with its visibility (private unless the config or its owner made it public).
   */
  async ports(id: string): Promise<WorkspacePortStatus[]> {
    const live = this.live.get(id);
    if (!live) return [];
    const [listening, set] = await Promise.all([listeningPorts(live.sandbox), this.workspaces.portVisibilities(id)]);
    const named = live.config.ports.flatMap((p) => (p.from === p.to ? [p.from] : [...listening].filter((n) => n >= p.from && n <= p.to)));
    return [...new Set([...named, ...listening])]
      .sort((a, b) => a - b)
      .map((port) => {
        const configured = configuredPort(live.config, port);
        return { port, name: configured?.name ?? null, visibility: set.get(port) ?? configured?.visibility ?? "private", listening: listening.has(port), onOpen: configured?.onOpen ?? "notify" };
      });
  }

  /** Who may reach a port of a running workspace through the proxy; undefined when it does not run. */
  async visibility(id: string, port: number): Promise<PortVisibility | undefined> {
    const live = this.live.get(id);
    if (!live) return undefined;
    return (await this.workspaces.portVisibilities(id)).get(port) ?? configuredPort(live.config, port)?.visibility ?? "private";
  }

  /** What a command run in a running workspace gets: its sandbox, folder and variables. */
  shellOf(id: string): { sandbox: Sandbox; env: Record<string, string>; cwd: string } | undefined {
    const live = this.live.get(id);
    return live && { sandbox: live.sandbox, env: live.env, cwd: live.cwd };
  }

  /** A new terminal in a running workspace, in its folder, with its variables: a login shell, or `script`. */
  openTerminal(id: string, opts: { size?: TerminalSize; script?: string; name?: string; guest?: string } = {}): Terminal | undefined {
    const live = this.live.get(id);
    if (!live) return undefined;
    const shells = [...live.terminals.values()].filter((t) => t.info.kind === "shell" && t.info.state === "running");
    if (shells.length >= MAX_TERMINALS) throw new AppError(409, "too_many_terminals", `the workspace has ${MAX_TERMINALS} terminals open, the most it may; close one first`);
    if (opts.guest && shells.filter((t) => t.guest === opts.guest).length >= MAX_GUEST_TERMINALS) throw new AppError(409, "too_many_terminals", `a guest may have ${MAX_GUEST_TERMINALS} terminals open; close one first`);
    const terminal = new Terminal(live.sandbox, { name: opts.name ?? `shell ${++live.shells}`, kind: "shell", script: opts.script, env: live.env, cwd: live.cwd, size: opts.size ?? DEFAULT_SIZE, guest: opts.guest });
    live.terminals.set(terminal.id, terminal);
    return terminal;
  }

  /** Ends the terminals these guests opened in the workspace: their access to it ended. */
  async closeGuestTerminals(id: string, guests: string[]): Promise<void> {
    const theirs = [...(this.live.get(id)?.terminals.values() ?? [])].filter((t) => t.guest !== undefined && guests.includes(t.guest));
    await Promise.all(theirs.map((t) => this.closeTerminal(id, t.id)));
  }

  /** Ends a terminal and forgets it. */
  async closeTerminal(id: string, terminalId: string): Promise<boolean> {
    const terminal = this.terminal(id, terminalId);
    if (!terminal) return false;
    this.live.get(id)?.terminals.delete(terminalId);
    await terminal.close();
    return true;
  }

  /**
   * A connection to a port on a running workspace's loopback (port proxy, ssh -L), through a relay
   * process on the host: at most MAX_RELAYS at once per workspace, so that a flood of requests to
   * a public port costs the host no more. Undefined when the workspace is not running.
   */
  async connect(id: string, port: number): Promise<Duplex | undefined> {
    const sandbox = this.sandboxOf(id);
    if (!sandbox) return undefined;
    const open = this.relays.get(id) ?? 0;
    if (open >= MAX_RELAYS) throw new AppError(503, "too_many_connections", `the workspace has ${MAX_RELAYS} connections open through Slipway, the most it may; try again once some have closed`);
    this.relays.set(id, open + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (this.relays.get(id) ?? 1) - 1;
      if (left > 0) this.relays.set(id, left);
      else this.relays.delete(id);
    };
    try {
      const socket = await sandbox.connect(port);
      // The sandbox's connection closes with its relay process, whichever ends first.
      socket.once("close", release);
      return socket;
    } catch (err) {
      release();
      throw err;
    }
  }

  /** The sandbox of a running workspace, for its terminals. */
  sandboxOf(id: string): Sandbox | undefined {
    return this.live.get(id)?.sandbox;
  }

  private async run(id: string): Promise<void> {
    let ws = await this.workspaces.transition(id, ["pending"], "creating");
    const vars = (await this.opts.variables?.(ws)) ?? { env: {}, secrets: [] };
    const archive = await this.workspaces.archiveOf(id);
    // A clone is made on the host image, where git is, and then moved into the workspace's image.
    const key = await this.workspaces.key(id, "archive");
    const restore = archive ? (into: Sandbox) => restoreWorkspace(into, key, this.opts.storage, archive) : undefined;
    const image = archive ? await this.imageFor(ws, ws.config!.image, restore!) : undefined;
    let sandbox = await this.sandbox(image ?? HOST);
    const live: Live = { sandbox, dispose: image && image !== HOST ? image.dispose : undefined, config: defaultWorkspaceConfig(), terminals: new Map(), shells: 0, env: {}, cwd: WORKSPACE, secrets: vars.secrets.filter((v) => secretValueProblem(v) === undefined) };
    this.live.set(id, live);
    ws = await this.workspaces.transition(id, ["creating"], "initializing");
    let config = ws.config;
    let facts: Parameters<Workspaces["transition"]>[3] = {};
    if (restore) {
      await restore(sandbox);
    } else {
      const commit = await gitCheckout(this.opts.access(ws), { repositoryUrl: ws.repositoryUrl, branch: ws.ref, tag: null }, sandbox, { depth: "full", timeoutMs: GIT_TIMEOUT_MS });
      facts = { commit };
      if (!config) {
        const read = await readConfigIn(sandbox);
        if (!read.config) throw new Error(`the workspace config has errors: ${read.problems.filter((p) => p.severity === "error").map((p) => `${p.file}:${p.line}:${p.col}: ${p.message}`).join("; ")}`);
        config = read.config;
        facts = { ...facts, config, problems: read.problems };
      }
      if (!isHost(config.image)) {
        const clone = sandbox;
        const built = await this.imageFor(ws, config.image, (into) => copyWorkspace(clone, into));
        live.dispose = built === HOST ? undefined : built.dispose;
        live.sandbox = sandbox = await this.moveTo(clone, built);
      }
    }
    await this.prepare(sandbox, config!);
    // Each start: the key lives in the home, which is not kept; /workspace keeps the git config naming it.
    if (ws.pushAccess) await installPushKey(this.opts.access(ws), sandbox);
    live.config = config!;
    live.env = { ...config!.env, ...vars.env };
    live.cwd = config!.location ? `${WORKSPACE}/${config!.location}` : WORKSPACE;
    for (const task of config!.tasks) {
      const script = taskScript(task, !ws.initialized);
      if (!script) continue;
      const terminal = new Terminal(sandbox, { name: task.name, kind: "task", script, env: { ...live.env, ...task.env }, cwd: live.cwd, size: DEFAULT_SIZE, masker: createMasker(live.secrets) });
      live.terminals.set(terminal.id, terminal);
    }
    await this.workspaces.transition(id, ["initializing"], "running", { ...facts, initialized: true });
  }

  private async fail(id: string, err: Error): Promise<void> {
    const live = this.live.get(id);
    this.live.delete(id);
    await live?.sandbox.destroy();
    live?.dispose?.();
    this.opts.log.warn({ err, workspace: id }, "workspace failed to start");
    const reason = maskText(live?.secrets ?? [], err.message);
    await this.workspaces.transition(id, ["pending", ...LIVE_STATES], "failed", { reason }).catch(() => undefined);
    await this.opts.stopped?.(id);
  }

  /**
   * Stops a workspace: its /workspace is archived and stored, then its sandbox is destroyed. If
   * the archive cannot be written, the workspace keeps running (nothing is lost) and this fails.
   */
  stop(id: string, reason: string | null = null): Promise<void> {
    let stopping = this.stopping.get(id);
    if (!stopping) {
      stopping = this.archiveAndStop(id, reason).finally(() => this.stopping.delete(id));
      this.stopping.set(id, stopping);
    }
    return stopping;
  }

  private async archiveAndStop(id: string, reason: string | null): Promise<void> {
    // A stop during the start waits for it: then there is a whole workspace to archive, or none.
    await this.starting.get(id);
    const before = await this.workspaces.transition(id, ["running"], "stopping", { reason });
    const live = this.live.get(id);
    if (!live) {
      await this.workspaces.transition(id, ["stopping"], "stopped", { reason });
      await this.opts.stopped?.(id);
      return;
    }
    const name = archiveName(id);
    try {
      const bytes = await saveWorkspace(live.sandbox, await this.workspaces.key(id, "archive"), this.opts.storage, name);
      const previous = await this.workspaces.archiveOf(id);
      await this.workspaces.transition(id, ["stopping"], "stopped", { reason, archive: { name, bytes } });
      await this.opts.stopped?.(id);
      if (previous) await this.opts.storage.delete(previous);
    } catch (err) {
      await this.workspaces.transition(id, ["stopping"], "running", { reason: maskText(live.secrets, `could not stop: ${(err as Error).message}; the workspace keeps running`), initialized: before.initialized });
      throw err;
    }
    this.live.delete(id);
    await live.sandbox.destroy();
    live.dispose?.();
  }

  /** Destroys a workspace's sandbox without saving anything (the workspace is being deleted). */
  async discard(id: string): Promise<void> {
    await this.starting.get(id);
    const live = this.live.get(id);
    this.live.delete(id);
    await live?.sandbox.destroy();
    live?.dispose?.();
  }

  /**
   * Stops the running workspaces that were not used for the idle time, or ran for the longest
   * time allowed (the server calls this every little while). Returns those it stopped.
   */
  async stopExpired(now = Date.now()): Promise<string[]> {
    const stopped: string[] = [];
    // Side by side: one workspace slow to archive holds up no other's limits.
    await Promise.allSettled([...this.live.keys()].map(async (id) => {
      const ws = await this.workspaces.get(id).catch(() => undefined);
      if (ws?.state !== "running") return;
      const { idleMs, maxLifetimeMs } = await this.opts.limitsOf(ws);
      // An extended run lasts twice the longest run.
      const lifetime = maxLifetimeMs * (ws.extended ? 2 : 1);
      const idle = now - Date.parse(ws.lastActivityAt) >= idleMs;
      const old = ws.startedAt !== null && now - Date.parse(ws.startedAt) >= lifetime;
      // Asked only when no limit stops it anyway; a failed check stops nothing (the next sweep asks again).
      const refused =
        !idle &&
        !old &&
        this.opts.ownerMay !== undefined &&
        !(await this.opts.ownerMay(ws).catch((err: unknown) => {
          this.opts.log.warn({ err, workspace: id }, "checking a workspace owner's access failed");
          return true;
        }));
      if (!idle && !old && !refused) return;
      const reason = refused
        ? "stopped because its owner may no longer open workspaces of its project (ask an owner of its organization for access)"
        : idle
          ? `stopped after ${Math.round(idleMs / 60_000)} minutes without use`
          : `stopped after running for ${Math.round(lifetime / 3_600_000)} hours, the longest a workspace may run at once`;
      await this.stop(id, reason).then(
        () => stopped.push(id),
        (err: Error) => this.opts.log.error({ err, workspace: id }, "stopping an expired workspace failed"),
      );
    }));
    return stopped;
  }

  /** Removes a stored archive (of a workspace being deleted, whose key is gone already). */
  removeArchive(name: string): Promise<void> {
    return this.opts.storage.delete(name);
  }

  /** Stops every running workspace, archiving each (server shutdown). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.starting.values()]);
    await Promise.allSettled([...this.live.keys()].map((id) => this.stop(id, "the server shut down")));
  }

  /** The root filesystem of the workspace's image: pulled, or built from its Dockerfile with the workspace's files. */
  private async imageFor(ws: Workspace, image: WorkspaceImage, checkout: (sandbox: Sandbox) => Promise<void>): Promise<RootImage> {
    if (isHost(image)) return HOST;
    if (image.kind === "build") {
      if (!this.opts.build) throw new Error("this server cannot build images (it needs to run as root, with buildah); name an image instead");
      let tail = "";
      try {
        return await this.opts.build(ws, image.build, checkout, (d) => (tail = (tail + d.toString()).slice(-4000)));
      } catch (err) {
        const said = tail.trim().split("\n").slice(-5).join("\n");
        throw new Error(`the workspace image did not build: ${(err as Error).message}${said ? `\nthe builder said:\n${said}` : ""}`);
      }
    }
    if (!this.opts.images) throw new Error(`image ${image.ref}: this server has no image store; use image: host`);
    const resolved = await this.opts.images.resolve(image.ref);
    return { rootfs: resolved.rootfs, env: resolved.env };
  }

  private async sandbox(image: RootImage): Promise<Sandbox> {
    // The host's SFTP server, for scp and editors over SSH whatever the image holds (it needs only libc).
    const sftp = existsSync(HOST_SFTP_SERVER) ? [{ hostPath: HOST_SFTP_SERVER, path: SFTP_SERVER }] : [];
    const spec: SandboxSpec = { image: image === HOST ? { kind: "host" } : { kind: "rootfs", path: image.rootfs }, ...(image !== HOST && { env: image.env }), network: this.opts.network, limits: this.opts.limits, hostname: "workspace", profile: "workspace", readOnlyBinds: sftp };
    return this.opts.backend().create(spec);
  }

  /** A sandbox of the config's image holding the clone made in `from`, which goes. */
  private async moveTo(from: Sandbox, image: RootImage): Promise<Sandbox> {
    const to = await this.sandbox(image);
    try {
      await copyWorkspace(from, to);
      await from.destroy();
      return to;
    } catch (err) {
      await to.destroy();
      throw err;
    }
  }

  /** Git settings the config asks for (Gitpod's gitConfig), as the workspace user's own. */
  private async prepare(sandbox: Sandbox, config: WorkspaceConfig): Promise<void> {
    for (const [key, value] of Object.entries(config.gitConfig)) {
      const status = await sandbox.exec({ argv: hardenedGit("config", "--global", "--", key, value), timeoutMs: 30_000 });
      if (status.code !== 0) throw new Error(`git config ${key} failed (exit ${status.code}); is git in the workspace image?`);
    }
  }
}

/** The TCP ports something listens on in the sandbox's network namespace, from the kernel's tables. */
async function listeningPorts(sandbox: Sandbox): Promise<Set<number>> {
  let text = "";
  await sandbox.exec({ argv: ["cat", "/proc/net/tcp", "/proc/net/tcp6"], timeoutMs: 10_000 }, { stdout: (d) => (text += d.toString()) });
  const ports = new Set<number>();
  for (const line of text.split("\n")) {
    // sl local_address rem_address st …: state 0A is LISTEN.
    const [, local, , state] = line.trim().split(/\s+/);
    if (state === "0A" && local?.includes(":")) ports.add(parseInt(local.split(":").at(-1)!, 16));
  }
  return ports;
}

const configuredPort = (config: WorkspaceConfig, port: number) => config.ports.find((p) => p.from <= port && port <= p.to);

/** An image's root filesystem for a workspace sandbox, or the host's own /usr. */
type RootImage = typeof HOST | { rootfs: string; env: Record<string, string>; dispose?(): void };
const HOST = "host" as const;

/** /workspace of one sandbox into another, as tar through memory. */
async function copyWorkspace(from: Sandbox, to: Sandbox): Promise<void> {
  const pipe = new PassThrough();
  const [packed, unpacked] = await Promise.all([
    from.exec({ argv: ["tar", "-C", WORKSPACE, "-cf", "-", "."], timeoutMs: GIT_TIMEOUT_MS }, { stdout: pipe }),
    to.exec({ argv: ["tar", "--no-same-owner", "-C", WORKSPACE, "-xpf", "-"], timeoutMs: GIT_TIMEOUT_MS }, { stdin: pipe }),
  ]);
  if (packed.code !== 0 || unpacked.code !== 0) throw new Error(`the workspace's files could not be moved into its image (tar exit ${packed.code}/${unpacked.code}); the image needs tar`);
}

const isHost = (image: WorkspaceImage): boolean => image.kind === "image" && image.ref === "host";

/** The candidates for a workspace config, read from the clone; a link out of /workspace is not followed. */
async function readConfigIn(sandbox: Sandbox): Promise<ReturnType<typeof readWorkspaceConfig>> {
  const names = [...configFileNames.slipway, ...workspaceConfigFileNames.gitpod, ...workspaceConfigFileNames.devcontainer];
  const files: Record<string, string> = {};
  for (const name of names) {
    const text = await readRepoFile(sandbox, name);
    if (text !== undefined) files[name] = text;
  }
  const first = readWorkspaceConfig(memoryFiles(files));
  const image = first.config?.image;
  if (image?.kind !== "build") return first;
  const dockerfile = dockerfilePath(image.build);
  const text = await readRepoFile(sandbox, dockerfile);
  return text === undefined ? first : readWorkspaceConfig(memoryFiles({ ...files, [dockerfile]: text }));
}

/** A file of the clone, up to one byte past the config size limit (the reader then says it is too large). */
async function readRepoFile(sandbox: Sandbox, name: string): Promise<string | undefined> {
  const script = 'f=$(realpath -e -- "$1" 2>/dev/null) || exit 3; case "$f" in /workspace/*) [ -f "$f" ] && exec head -c "$2" -- "$f" ;; esac; exit 3';
  const out: Buffer[] = [];
  const status = await sandbox.exec({ argv: ["/bin/sh", "-c", script, "read", name, String(configLimits.fileBytes + 1)], cwd: WORKSPACE, timeoutMs: 30_000 }, { stdout: (d) => out.push(d) });
  return status.code === 0 ? Buffer.concat(out).toString("utf8") : undefined;
}
