import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Writable } from "node:stream";
import { defaultLimits, HOME, SANDBOX_UID, WORKSPACE, type Exec, type ExecIO, type ExitStatus, type Sandbox, type SandboxBackend, type SandboxLimits, type SandboxSpec } from "./backend.js";
import { createCgroup, detectCgroups, type CgroupMode, type SandboxCgroup } from "./cgroups.js";
import { seccompFilter } from "./seccomp.js";
import { supervisorScript } from "./supervisor-script.js";

/** Host uids handed to sandboxes when the runner is root: far above ordinary users and subuid ranges. */
export const UID_RANGE = { first: 1_900_000_000, count: 65_536 };

// A shell that waits for one line on stdin before becoming the real command, so the process can
// be put into its cgroup before it forks anything.
const GATE = ["/bin/sh", "-c", 'read -r go && exec "$@"', "gate"];

const HOST_ETC_READ_ONLY = ["/etc/alternatives", "/etc/ssl", "/etc/ca-certificates", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"];
const HOST_ROOT_LINKS: Array<[string, string]> = [
  ["usr/bin", "/bin"],
  ["usr/sbin", "/sbin"],
  ["usr/lib", "/lib"],
  ["usr/lib32", "/lib32"],
  ["usr/lib64", "/lib64"],
];

export class SandboxError extends Error {}

export interface BwrapBackendOptions {
  /** Where each sandbox gets an empty mount point (nothing is ever written into it on disk). */
  runtimeDir?: string;
  onWarning?(message: string): void;
}

/**
 * Sandboxes on bubblewrap. Each one is a supervisor process holding user, mount, pid, net, ipc,
 * uts and cgroup namespaces, entered by every `exec`, which then runs under bwrap with no
 * capabilities, no new privileges, a new session and Slipway's seccomp filter. When the runner
 * is root, each sandbox first becomes its own unprivileged host uid, so nothing in it ever holds
 * host root.
 */
export class BwrapBackend implements SandboxBackend {
  private readonly cgroups: CgroupMode;
  private readonly runtimeDir: string;
  private readonly usedUids = new Set<number>();
  private readonly filter = seccompFilter();
  readonly isRoot = process.getuid?.() === 0;

  constructor(private readonly opts: BwrapBackendOptions = {}) {
    this.cgroups = this.isRoot ? detectCgroups() : "none";
    if (this.cgroups === "none") {
      opts.onWarning?.("cgroups are not writable here: sandboxes get a process limit from rlimits but no memory or CPU limit");
    }
    this.runtimeDir = opts.runtimeDir ?? (this.isRoot ? "/run/slipway/sandboxes" : path.join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), `slipway-sandboxes-${process.getuid?.()}`));
    makeTraversable(this.runtimeDir);
  }

  get cgroupMode(): CgroupMode {
    return this.cgroups;
  }

  async create(spec: SandboxSpec): Promise<Sandbox> {
    const limits: SandboxLimits = { ...defaultLimits, ...spec.limits };
    const id = randomBytes(8).toString("hex");
    const uid = this.isRoot ? this.allocateUid() : process.getuid!();
    const mountDir = path.join(this.runtimeDir, id);
    mkdirSync(mountDir, { mode: 0o700 });
    if (this.isRoot) chownSync(mountDir, uid, uid);
    const cgroup = this.cgroups === "none" ? undefined : createCgroup(this.cgroups, `sbx-${id}`, limits);
    const sandbox = new BwrapSandbox(id, uid, spec, limits, mountDir, cgroup, this.filter, this.isRoot, () => {
      this.usedUids.delete(uid);
    });
    try {
      await sandbox.start();
      return sandbox;
    } catch (err) {
      await sandbox.destroy();
      throw err;
    }
  }

  private allocateUid(): number {
    for (;;) {
      const uid = UID_RANGE.first + (randomBytes(4).readUInt32LE(0) % UID_RANGE.count);
      if (!this.usedUids.has(uid)) {
        this.usedUids.add(uid);
        return uid;
      }
    }
  }
}

class BwrapSandbox implements Sandbox {
  private supervisor?: ChildProcess;
  private supervisorPid?: number;
  private readonly running = new Set<ChildProcess>();
  private destroyed?: Promise<void>;

  constructor(
    readonly id: string,
    readonly hostUid: number,
    private readonly spec: SandboxSpec,
    private readonly limits: SandboxLimits,
    private readonly mountDir: string,
    private readonly cgroup: SandboxCgroup | undefined,
    private readonly filter: Buffer,
    private readonly asRoot: boolean,
    private readonly released: () => void,
  ) {}

  /** The command prefix that turns a root runner into this sandbox's uid, with its process limit. */
  private identity(): string[] {
    // RLIMIT_NPROC counts every process of the uid, so it is a per-sandbox limit only for a uid of its own.
    if (!this.asRoot) return [];
    return ["prlimit", `--nproc=${this.limits.pids}:${this.limits.pids}`, "--", "setpriv", `--reuid=${this.hostUid}`, `--regid=${this.hostUid}`, "--clear-groups", "--"];
  }

  async start(): Promise<void> {
    const image = this.spec.image.kind === "rootfs" ? this.spec.image.path : "";
    const argv = [
      ...this.identity(),
      "unshare",
      "--user",
      "--map-root-user",
      "--mount",
      "--propagation",
      "private",
      "--pid",
      "--fork",
      "--kill-child",
      // bwrap finds its children under /proc by pid: the procfs must be this pid namespace's own.
      "--mount-proc",
      "--net",
      "--ipc",
      "--uts",
      "--cgroup",
      "--",
      "/bin/sh",
      "-c",
      supervisorScript,
      "supervisor",
      this.mountDir,
      String(this.limits.tmpfsBytes),
      image,
    ];
    const child = this.spawnGated(argv, ["pipe", "pipe", "pipe"]);
    this.supervisor = child;
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new SandboxError(`sandbox did not start within 10 s: ${stderr.trim()}`)), 10_000);
      child.stdout!.on("data", (d: Buffer) => {
        if (d.toString().includes("ready")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new SandboxError(`sandbox failed to start (exit ${code}): ${stderr.trim() || "no message"}`));
      });
    });
    // `unshare` forked the supervisor as pid 1 of the new pid namespace: that child is what exec enters.
    const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    if (children.length !== 1) throw new SandboxError("sandbox supervisor not found");
    this.supervisorPid = Number(children[0]);
  }

  /** Spawns behind the gate, joins the cgroup, then lets it go. */
  private spawnGated(argv: string[], stdio: Array<"pipe" | "ignore">): ChildProcess {
    const child = spawn(GATE[0]!, [...GATE.slice(1), ...argv], { stdio, env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
    if (child.pid === undefined) throw new SandboxError("could not start a sandbox process");
    // A process that exits early resets its pipes; that ends the exec, it is not an error of ours.
    for (const stream of child.stdio) stream?.on("error", () => undefined);
    this.cgroup?.add(child.pid);
    (child.stdin as Writable).write("go\n");
    return child;
  }

  private bwrapArgs(cmd: Exec): string[] {
    const m = this.mountDir;
    const host = this.spec.image.kind === "host";
    const args = ["--unshare-user", "--unshare-pid", "--unshare-uts", "--hostname", this.spec.hostname ?? "sandbox", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--seccomp", "3"];
    args.push("--uid", String(SANDBOX_UID), "--gid", String(SANDBOX_UID));
    if (host) {
      args.push("--bind", `${m}/root`, "/usr");
      for (const [target, link] of HOST_ROOT_LINKS) if (existsSync(`/${target}`)) args.push("--symlink", target, link);
      args.push("--bind", `${m}/etc`, "/etc");
      for (const p of HOST_ETC_READ_ONLY) if (existsSync(p)) args.push("--ro-bind", p, p);
      args.push("--bind", `${m}/tmp`, "/tmp");
    } else {
      args.push("--bind", `${m}/root`, "/");
      for (const f of ["hosts", "passwd", "group", "nsswitch.conf"]) args.push("--ro-bind", `${m}/etc/${f}`, `/etc/${f}`);
    }
    // bwrap leaves /proc/sys of a new procfs writable; cover it with a read-only view.
    args.push("--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev", "--tmpfs", "/sys", "--remount-ro", "/sys");
    args.push("--bind", `${m}/workspace`, WORKSPACE, "--bind", `${m}/home`, HOME);
    for (const bind of this.spec.readOnlyBinds ?? []) args.push("--ro-bind", bind.hostPath, bind.path);
    const env = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME, USER: "build", LANG: "C.UTF-8", ...this.spec.env, ...cmd.env };
    args.push("--clearenv");
    for (const [k, v] of Object.entries(env)) args.push("--setenv", k, v);
    args.push("--chdir", cmd.cwd ?? WORKSPACE);
    return args;
  }

  async exec(cmd: Exec, io: ExecIO = {}): Promise<ExitStatus> {
    if (this.destroyed || this.supervisorPid === undefined) throw new SandboxError("the sandbox is gone");
    if (cmd.argv.length === 0 || cmd.argv.some((a) => a.includes("\0"))) throw new SandboxError("a command is a non-empty argv without NUL bytes");
    const nsenter = ["nsenter", "--preserve-credentials", `--target=${this.supervisorPid}`, "--user", "--mount", "--net", "--ipc", "--uts", "--pid", "--cgroup", "--"];
    const argv = [...this.identity(), ...nsenter, "bwrap", ...this.bwrapArgs(cmd), "--", ...cmd.argv];
    const child = this.spawnGated(argv, ["pipe", "pipe", "pipe", "pipe"]);
    this.running.add(child);
    (child.stdio[3] as Writable).end(this.filter);
    child.stdout!.on("data", (d: Buffer) => io.stdout?.(d));
    child.stderr!.on("data", (d: Buffer) => io.stderr?.(d));
    child.stdin!.end(io.stdin);
    let timedOut = false;
    const timer = cmd.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, cmd.timeoutMs);
    const abort = () => child.kill("SIGKILL");
    cmd.signal?.addEventListener("abort", abort);
    if (cmd.signal?.aborted) abort();
    return new Promise<ExitStatus>((resolve) => {
      child.once("close", (code, signal) => {
        cmd.signal?.removeEventListener("abort", abort);
        if (timer) clearTimeout(timer);
        this.running.delete(child);
        resolve({ code, signal, timedOut });
      });
    });
  }

  async writeFile(file: string, data: Buffer | string, mode = 0o644): Promise<void> {
    const script = 'umask 077 && cat > "$1" && chmod "$2" "$1"';
    const err: Buffer[] = [];
    const status = await this.exec({ argv: ["/bin/sh", "-c", script, "write", file, mode.toString(8)] }, { stdin: data, stderr: (d) => err.push(d) });
    if (status.code !== 0) throw new SandboxError(`cannot write ${file} in the sandbox: ${Buffer.concat(err).toString().trim()}`);
  }

  async readFile(file: string): Promise<Buffer> {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const status = await this.exec({ argv: ["cat", "--", file] }, { stdout: (d) => out.push(d), stderr: (d) => err.push(d) });
    if (status.code !== 0) throw new SandboxError(`cannot read ${file} in the sandbox: ${Buffer.concat(err).toString().trim()}`);
    return Buffer.concat(out);
  }

  destroy(): Promise<void> {
    this.destroyed ??= this.teardown();
    return this.destroyed;
  }

  private async teardown(): Promise<void> {
    for (const child of [...this.running, this.supervisor]) child?.kill("SIGKILL");
    for (const pid of this.cgroup?.pids() ?? []) killQuietly(pid);
    if (this.supervisor && this.supervisor.exitCode === null && this.supervisor.signalCode === null) {
      await new Promise((resolve) => this.supervisor!.once("exit", resolve));
    }
    if (this.cgroup) await removeWhenEmpty(this.cgroup);
    rmSync(this.mountDir, { recursive: true, force: true });
    this.released();
  }
}

/**
 * Creates the runtime dir (and missing parents) so that sandbox uids can pass through it to their
 * own mount point but not list it; the mode is set explicitly, whatever the umask.
 */
function makeTraversable(dir: string): void {
  const missing: string[] = [];
  for (let d = path.resolve(dir); !existsSync(d); d = path.dirname(d)) missing.unshift(d);
  mkdirSync(dir, { recursive: true });
  for (const d of [...missing, path.resolve(dir)]) chmodSync(d, 0o711);
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** A cgroup can be removed only once the kernel has reaped every process in it. */
async function removeWhenEmpty(cgroup: SandboxCgroup): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const left = cgroup.pids();
    for (const pid of left) killQuietly(pid);
    if (left.length === 0) {
      try {
        cgroup.remove();
        return;
      } catch {
        // still busy
      }
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new SandboxError("sandbox processes did not exit after SIGKILL");
}
