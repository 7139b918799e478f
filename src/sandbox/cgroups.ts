import { accessSync, constants, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { SandboxLimits } from "./backend.js";

const ROOT = "/sys/fs/cgroup";
const V1_CONTROLLERS = ["memory", "pids", "cpu"] as const;
const CPU_PERIOD_US = 100_000;

/** One sandbox's control group: limits, membership and a way to kill everything in it. */
export interface SandboxCgroup {
  /** Moves a process (and so its future children) into the group. */
  add(pid: number): void;
  /** Every process in the group: what `destroy` must kill. */
  pids(): number[];
  remove(): void;
}

export type CgroupMode = "v2" | "v1" | "none";

/** Which cgroup interface this machine offers to us: v2, v1 (memory, pids and cpu mounted) or none we can write. */
export function detectCgroups(): CgroupMode {
  try {
    if (existsSync(path.join(ROOT, "cgroup.controllers"))) {
      accessSync(ROOT, constants.W_OK);
      return "v2";
    }
    for (const c of V1_CONTROLLERS) accessSync(path.join(ROOT, c), constants.W_OK);
    return "v1";
  } catch {
    return "none";
  }
}

export function createCgroup(mode: Exclude<CgroupMode, "none">, id: string, limits: SandboxLimits): SandboxCgroup {
  return mode === "v2" ? createV2(id, limits) : createV1(id, limits);
}

function write(file: string, value: string | number): void {
  writeFileSync(file, String(value));
}

function tryWrite(file: string, value: string | number): void {
  if (existsSync(file)) write(file, value);
}

function readPids(file: string): number[] {
  try {
    return readFileSync(file, "utf8").split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function createV2(id: string, limits: SandboxLimits): SandboxCgroup {
  const parent = path.join(ROOT, "slipway");
  if (!existsSync(parent)) {
    mkdirSync(parent);
  }
  // Controllers must be enabled on every level above a group for its limit files to exist.
  tryWrite(path.join(ROOT, "cgroup.subtree_control"), "+memory +pids +cpu");
  tryWrite(path.join(parent, "cgroup.subtree_control"), "+memory +pids +cpu");
  const dir = path.join(parent, id);
  mkdirSync(dir);
  write(path.join(dir, "memory.max"), limits.memoryBytes);
  tryWrite(path.join(dir, "memory.swap.max"), 0);
  write(path.join(dir, "pids.max"), limits.pids);
  write(path.join(dir, "cpu.max"), `${Math.round(limits.cpus * CPU_PERIOD_US)} ${CPU_PERIOD_US}`);
  return {
    add: (pid) => write(path.join(dir, "cgroup.procs"), pid),
    pids: () => readPids(path.join(dir, "cgroup.procs")),
    remove: () => rmdirSync(dir),
  };
}

function createV1(id: string, limits: SandboxLimits): SandboxCgroup {
  const dirs = V1_CONTROLLERS.map((c) => path.join(ROOT, c, "slipway", id));
  for (const dir of dirs) mkdirSync(dir, { recursive: true });
  const [memory, pids, cpu] = dirs as [string, string, string];
  write(path.join(memory, "memory.limit_in_bytes"), limits.memoryBytes);
  // Without swap accounting the memory limit could be dodged by swapping.
  tryWrite(path.join(memory, "memory.memsw.limit_in_bytes"), limits.memoryBytes);
  write(path.join(pids, "pids.max"), limits.pids);
  write(path.join(cpu, "cpu.cfs_period_us"), CPU_PERIOD_US);
  write(path.join(cpu, "cpu.cfs_quota_us"), Math.round(limits.cpus * CPU_PERIOD_US));
  return {
    add: (pid) => {
      for (const dir of dirs) write(path.join(dir, "cgroup.procs"), pid);
    },
    pids: () => [...new Set(dirs.flatMap((d) => readPids(path.join(d, "cgroup.procs"))))],
    remove: () => {
      for (const dir of dirs) rmdirSync(dir);
    },
  };
}
