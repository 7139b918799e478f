import type { NetworkPolicy } from "./network.js";

/**
 * One small interface for every place code runs in isolation (build steps, services,
 * workspaces). Callers never learn which backend is underneath.
 */
export interface SandboxBackend {
  create(spec: SandboxSpec): Promise<Sandbox>;
}

export interface Sandbox {
  readonly id: string;
  /** Runs a command inside; may be called many times and concurrently. Files persist between calls. */
  exec(cmd: Exec, io?: ExecIO): Promise<ExitStatus>;
  /** Writes a file inside the sandbox, resolved within its own root (no shell, no host path). */
  writeFile(path: string, data: Buffer | string, mode?: number): Promise<void>;
  readFile(path: string): Promise<Buffer>;
  /** Kills every process of the sandbox and releases everything it held; safe to call twice. */
  destroy(): Promise<void>;
}

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
  stdin?: Buffer | string;
  stdout?(chunk: Buffer): void;
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

export const WORKSPACE = "/workspace";
export const HOME = "/home/build";
export const SANDBOX_UID = 1000;
