import type { Duplex, Readable, Writable } from "node:stream";
import type { NetworkPolicy } from "./network.js";

/**
 * One small interface for every place code runs in isolation (build steps, services,
 * workspaces). Callers never learn which backend is underneath.
 */
export interface SandboxBackend {
  create(spec: SandboxSpec): Promise<Sandbox>;
}

/** A sandbox could not be made or used; the message says why and what to do. */
export class SandboxError extends Error {}

export interface Sandbox {
  readonly id: string;
  /** Runs a command inside; may be called many times and concurrently. Files persist between calls. */
  exec(cmd: Exec, io?: ExecIO): Promise<ExitStatus>;
  /** Writes a file inside the sandbox, resolved within its own root (no shell, no host path). */
  writeFile(path: string, data: Buffer | string, mode?: number): Promise<void>;
  readFile(path: string): Promise<Buffer>;
  /**
   * A TCP connection to `port` on the sandbox's own loopback, where its processes listen (the
   * workspace port proxy, `ssh -L`). Fails with SandboxError when nothing listens there.
   */
  connect(port: number): Promise<Duplex>;
  /** Adds /etc/hosts entries (name → IP address) that every later exec sees: how a job names its services. */
  addHosts(hosts: Record<string, string>): Promise<void>;
  /** Kills every process of the sandbox and releases everything it held; safe to call twice. */
  destroy(): Promise<void>;
}

/** What the processes of a sandbox may do: run steps (the default), build images, or be a workspace (see SandboxSpec.profile). */
export type SandboxProfile = "step" | "builder" | "workspace";

export type SandboxImage = { kind: "host" } | { kind: "rootfs"; path: string };

export interface SandboxLimits {
  memoryBytes: number;
  pids: number;
  /** CPU time share, in CPUs (0.5 = half a core). */
  cpus: number;
  /** Size of the in-memory filesystem holding every write of the sandbox. */
  tmpfsBytes: number;
}

export interface SandboxSpec {
  image: SandboxImage;
  env?: Record<string, string>;
  limits?: Partial<SandboxLimits>;
  hostname?: string;
  /** Host files or folders shown read-only inside (image caches, tools); the sandbox's uid still needs permission to read them. */
  readOnlyBinds?: Array<{ hostPath: string; path: string }>;
  /** Default `{ mode: "none" }`: loopback only. See NetworkPolicy. */
  network?: NetworkPolicy;
  /**
   * Joins the network namespace of this running sandbox instead of getting one of its own (the
   * services of a job talk to its steps over loopback), under that sandbox's network policy, so
   * `network` stays unset. Destroying that sandbox destroys this one.
   */
  shareNetworkWith?: Sandbox;
  /**
   * "builder" runs every exec as root of the sandbox's own user namespace, which maps a block of
   * 65536 unprivileged host uids, with the capabilities an image builder needs inside it (mount,
   * chroot, set*id, chown) and a filter that still refuses a nested user namespace: what rootless
   * buildah needs to run a Dockerfile's steps as their own users. It needs a root runner and the
   * host image. "workspace" is a step sandbox whose execs share one set of
   * pseudo-terminals (one devpts), so that a terminal is resized from outside it. Default "step".
   */
  profile?: SandboxProfile;
}

export interface Exec {
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Killed after this long, with `timedOut` set. */
  timeoutMs?: number;
  /** Kills the command when aborted (cancel, idle timeout). */
  signal?: AbortSignal;
}

export interface ExecIO {
  /** A stream is piped in (and should end); a buffer or string is written whole. */
  stdin?: Buffer | string | Readable;
  /** Each chunk as it comes; or a stream it is piped into (with backpressure), which is ended after the last. */
  stdout?: ((chunk: Buffer) => void) | Writable;
  stderr?(chunk: Buffer): void;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

export const defaultLimits: SandboxLimits = {
  memoryBytes: 2 * 1024 ** 3,
  pids: 1024,
  cpus: 2,
  tmpfsBytes: 1024 ** 3,
};

/** A name /etc/hosts can hold (RFC 1123 labels, and `_` as Compose service names use it). */
export const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;

export const WORKSPACE = "/workspace";
export const HOME = "/home/build";
export const SANDBOX_UID = 1000;
