import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Duplex, Readable, Writable } from "node:stream";
import { defaultLimits, HOME, HOST_NAME, SANDBOX_UID, SandboxError, WORKSPACE, type Exec, type ExecIO, type ExitStatus, type Sandbox, type SandboxBackend, type SandboxLimits, type SandboxProfile, type SandboxSpec } from "./backend.js";
import { attachIdmappedImage } from "./idmap-mount.js";
import { createCgroup, detectCgroups, type CgroupMode, type SandboxCgroup } from "./cgroups.js";
import { deniedCidrs, egressRuleset, networkPolicySchema, parseCidr, resolveAllowlist, SLIRP } from "./network.js";
import { seccompFilter } from "./seccomp.js";
import { supervisorScript } from "./supervisor-script.js";
import { isAlive } from "../processes.js";

/** A root runner's own folder of this machine: sandbox mount points and claims of uid blocks. */
const RUN_DIR = "/run/slipway";

/** Host uids handed to sandboxes when the runner is root: far above ordinary users and subuid ranges. */
export const UID_RANGE = { first: 1_900_000_000, count: 65_536 };
/** Blocks of host uids handed to builder sandboxes (one block each), above UID_RANGE and below 2^31. */
export const BUILDER_UID_BLOCKS = { first: 1_910_000_000, size: 65_536, count: 1024 };

// What rootless buildah needs, as root of the builder's user namespace: mount for its isolation,
// and the set a Dockerfile's RUN steps get by default (as under Docker), which it can hand on
// only if it holds them. Each counts only inside the sandbox's own namespaces.
const BUILDER_CAPS = ["CAP_SYS_ADMIN", "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"];

// A shell that waits for one line on stdin before becoming the real command, so the process can
// be put into its cgroup before it forks anything.
// It also sets the process limit first (argument 1, "" for none; `-u` in bash, `-p` in dash):
// cheaper than one more program (prlimit) in front of every command.
const GATE = ["/bin/sh", "-c", 'if [ -n "$1" ]; then ulimit -u "$1" 2>/dev/null || ulimit -p "$1" || exit 126; fi; shift; read -r go && exec "$@"', "gate"];

const TOOL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

// Connects to 127.0.0.1:<port>, says "+", then carries bytes both ways; a half-close passes through.
const RELAY = `
const s = require("node:net").connect(Number(process.argv[1]), "127.0.0.1", () => {
  process.stdout.write("+");
  process.stdin.pipe(s);
  s.pipe(process.stdout);
});
s.on("error", () => process.exit(1));
s.on("close", () => process.exit(0));
`;

// Run as root in a mount namespace of its own: gives the sandbox's uid a /dev/net/tun it may open
// (the host's may be root-only), so that slirp4netns itself never runs as root.
const TUN_FOR_UID = String.raw`
set -eu
mount -t tmpfs -o size=16k,mode=0755,nosuid,noexec slipway-tun /dev/net
mknod -m 0600 /dev/net/tun c 10 200
chown "$1:$1" /dev/net/tun
shift
exec "$@"
`;

const HOST_ETC_READ_ONLY = ["/etc/alternatives", "/etc/ssl", "/etc/ca-certificates", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"];
const HOST_ROOT_LINKS: Array<[string, string]> = [
  ["usr/bin", "/bin"],
  ["usr/sbin", "/sbin"],
  ["usr/lib", "/lib"],
  ["usr/lib32", "/lib32"],
  ["usr/lib64", "/lib64"],
];

export interface BwrapBackendOptions {
  /** Where each sandbox gets an empty mount point (nothing is ever written into it on disk). */
  runtimeDir?: string;
  /**
   * CIDRs no sandbox may reach, on top of the built-in ones (loopback, link-local, metadata and
   * every address of this machine): the control plane's addresses, the database, internal networks.
   */
  denyCidrs?: string[];
  onWarning?(message: string): void;
}

/** What an outbound sandbox needs beyond the others: its firewall and how to start slirp4netns. */
interface OutboundPlan {
  ruleset: string;
  slirpFlags: string[];
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
  /** Shared by every backend of this process (the embedded runner's, the workspaces'): a uid is one sandbox's. */
  private readonly usedUids = usedUids;
  private readonly filters: Record<SandboxProfile, Buffer> = { step: seccompFilter(), builder: seccompFilter(process.arch, "builder"), workspace: seccompFilter() };
  private slirpFlags?: string[];
  readonly isRoot = process.getuid?.() === 0;

  constructor(private readonly opts: BwrapBackendOptions = {}) {
    for (const cidr of opts.denyCidrs ?? []) {
      const parsed = parseCidr(cidr);
      if (parsed instanceof Error) throw new SandboxError(`denyCidrs: ${parsed.message}`);
    }
    this.cgroups = this.isRoot ? detectCgroups() : "none";
    if (this.cgroups === "none") {
      opts.onWarning?.("cgroups are not writable here: sandboxes get a process limit from rlimits but no memory or CPU limit");
    }
    this.runtimeDir = opts.runtimeDir ?? (this.isRoot ? path.join(RUN_DIR, "sandboxes") : path.join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), `slipway-sandboxes-${process.getuid?.()}`));
    makeTraversable(this.runtimeDir);
    // Sandbox uids pass through Slipway's own folder to their mount points, whoever made it first.
    if (this.isRoot && this.runtimeDir.startsWith(`${RUN_DIR}/`)) chmodSync(RUN_DIR, 0o711);
  }

  get cgroupMode(): CgroupMode {
    return this.cgroups;
  }

  async create(spec: SandboxSpec): Promise<BwrapSandbox> {
    if (spec.shareNetworkWith && !(spec.shareNetworkWith instanceof BwrapSandbox)) throw new SandboxError("a sandbox can share the network only of another sandbox of this backend");
    if (spec.shareNetworkWith && spec.network) throw new SandboxError("a sandbox that shares another's network has no network policy of its own");
    const profile = spec.profile ?? "step";
    if (profile === "builder" && spec.image.kind !== "host") throw new SandboxError("a builder sandbox runs the host image, where the image builder is installed");
    if (profile === "builder" && !this.isRoot) throw new SandboxError("image builds need a runner that runs as root: it hands each build a block of unprivileged uids of its own");
    const outbound = await this.planOutbound(spec);
    const limits: SandboxLimits = { ...defaultLimits, ...spec.limits };
    const id = randomBytes(8).toString("hex");
    const uid = !this.isRoot ? process.getuid!() : profile === "builder" ? this.allocateBlock() : this.allocateUid();
    const mountDir = path.join(this.runtimeDir, id);
    mkdirSync(mountDir, { mode: 0o700 });
    if (this.isRoot) chownSync(mountDir, uid, uid);
    const cgroup = this.cgroups === "none" ? undefined : createCgroup(this.cgroups, `sbx-${id}`, limits);
    const sandbox = new BwrapSandbox(id, uid, spec, limits, mountDir, cgroup, this.filters[profile], this.isRoot, outbound, () => {
      this.usedUids.delete(uid);
      if (profile === "builder") rmSync(path.join(BLOCK_CLAIMS, String(uid)), { force: true });
    });
    try {
      await sandbox.start();
      return sandbox;
    } catch (err) {
      await sandbox.destroy();
      throw err;
    }
  }

  /**
   * Validates the network policy and, for outbound access, resolves the allowlist's host names
   * and reads the host's addresses now, so that the firewall matches the machine as it is.
   */
  private async planOutbound(spec: SandboxSpec): Promise<OutboundPlan | undefined> {
    const parsed = networkPolicySchema.safeParse(spec.network ?? { mode: "none" });
    if (!parsed.success) throw new SandboxError(`bad network policy: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    const policy = parsed.data;
    if (policy.mode === "none") return undefined;
    this.slirpFlags ??= detectSlirpFlags();
    const allow = policy.allow && (await resolveAllowlist(policy.allow).catch((err: Error) => {
      throw new SandboxError(`cannot resolve the egress allowlist: ${err.message}`);
    }));
    return { ruleset: egressRuleset({ denied: deniedCidrs(this.opts.denyCidrs), allow }), slirpFlags: this.slirpFlags };
  }

  private allocateUid(): number {
    return this.allocate(() => UID_RANGE.first + (randomBytes(4).readUInt32LE(0) % UID_RANGE.count));
  }

  /** The first uid of a free block. */
  private allocateBlock(): number {
    if ([...this.usedUids].filter((uid) => uid >= BUILDER_UID_BLOCKS.first).length >= BUILDER_UID_BLOCKS.count) throw new SandboxError("too many sandboxes at once on this runner");
    makeTraversable(RUN_DIR);
    mkdirSync(BLOCK_CLAIMS, { recursive: true, mode: 0o700 });
    return this.allocate(() => BUILDER_UID_BLOCKS.first + (randomBytes(4).readUInt32LE(0) % BUILDER_UID_BLOCKS.count) * BUILDER_UID_BLOCKS.size, claimBlock);
  }

  private allocate(pick: () => number, claim: (uid: number) => boolean = () => true): number {
    for (;;) {
      const uid = pick();
      if (!this.usedUids.has(uid) && claim(uid)) {
        this.usedUids.add(uid);
        return uid;
      }
    }
  }
}

export class BwrapSandbox implements Sandbox {
  private supervisor?: ChildProcess;
  private slirp?: ChildProcess;
  private supervisorPid?: number;
  private readonly running = new Set<ChildProcess>();
  private destroyed?: Promise<void>;
  /** Sandboxes in this one's network namespace: they go when it goes. */
  private readonly sharers = new Set<BwrapSandbox>();

  constructor(
    readonly id: string,
    readonly hostUid: number,
    private readonly spec: SandboxSpec,
    private readonly limits: SandboxLimits,
    private readonly mountDir: string,
    private readonly cgroup: SandboxCgroup | undefined,
    private readonly filter: Buffer,
    private readonly asRoot: boolean,
    private readonly outbound: OutboundPlan | undefined,
    private readonly released: () => void,
  ) {}

  /** The command prefix that turns a root runner into this sandbox's uid (the gate has set its process limit). */
  private identity(): string[] {
    if (!this.asRoot) return [];
    return ["setpriv", `--reuid=${this.hostUid}`, `--regid=${this.hostUid}`, "--clear-groups", "--pdeathsig=KILL", "--"];
  }

  /** The sandbox whose network namespace this one joins (checked in create). */
  private get peer(): BwrapSandbox | undefined {
    const peer = this.spec.shareNetworkWith;
    return peer instanceof BwrapSandbox ? peer : undefined;
  }

  private get hostname(): string {
    return this.spec.hostname ?? "sandbox";
  }

  /** Names resolve through slirp's DNS when the network namespace (its own or its peer's) has a way out. */
  private get resolvesNames(): boolean {
    return Boolean(this.outbound ?? this.peer?.outbound);
  }

  /** The command prefix that puts a new sandbox's supervisor into this sandbox's network namespace. */
  private admitToNetwork(sharer: BwrapSandbox): string[] {
    const entry = this.networkEntry();
    this.sharers.add(sharer);
    return entry;
  }

  /** The command prefix that enters this sandbox's network namespace, for a sandbox that shares it. */
  private networkEntry(): string[] {
    if (this.destroyed || this.supervisorPid === undefined) throw new SandboxError("the sandbox whose network it shares is gone");
    const ns = (kind: string) => `--${kind}=/proc/${this.supervisorPid}/ns/${kind}`;
    // Root enters before it becomes the sharer's uid, which has no right to; an unprivileged
    // runner gets that right by entering this sandbox's user namespace first.
    return this.asRoot ? ["nsenter", ns("net"), "--"] : ["nsenter", "--preserve-credentials", ns("user"), ns("net"), "--"];
  }

  async start(): Promise<void> {
    const image = this.spec.image.kind === "rootfs" ? this.spec.image.path : "";
    // A root runner's images belong to host root, a uid no sandbox has: they are shown id-mapped.
    const attach = image !== "" && this.asRoot;
    const argv = [
      ...(this.peer?.admitToNetwork(this) ?? []),
      ...this.identity(),
      "unshare",
      "--user",
      // A builder's block of uids is mapped by the runner (only root may map more than its own uid).
      ...(this.builder ? [] : ["--map-root-user"]),
      "--mount",
      "--propagation",
      "private",
      "--pid",
      "--fork",
      "--kill-child",
      // bwrap finds its children under /proc by pid: the procfs must be this pid namespace's own.
      "--mount-proc",
      ...(this.peer ? [] : ["--net"]),
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
      attach ? "attach" : image,
      this.resolvesNames ? SLIRP.dns : "",
      this.peer ? "shared" : "own",
      this.builder ? "wait" : "mapped",
      this.workspace ? "shared" : "own",
      this.hostname,
    ];
    const child = this.spawnGated(argv, ["pipe", "pipe", "pipe"]);
    this.supervisor = child;
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new SandboxError(`sandbox did not start within 10 s: ${stderr.trim()}`)), 10_000);
      child.stdout!.on("data", (d: Buffer) => {
        const said = d.toString();
        if (said.includes("idmap")) {
          try {
            this.mapBlock(this.supervisorChild(child));
            child.stdin!.write("mapped\n");
          } catch (err) {
            clearTimeout(timer);
            reject(err);
          }
        }
        if (said.includes("attach")) {
          Promise.resolve()
            .then(() => attachIdmappedImage(image, this.supervisorChild(child), this.hostUid, `${this.mountDir}/lower`))
            .then(
            () => child.stdin!.write("attached\n"),
            (err: unknown) => {
              clearTimeout(timer);
              reject(err);
            },
          );
        }
        if (said.includes("ready")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new SandboxError(`sandbox failed to start (exit ${code}): ${stderr.trim() || "no message"}`));
      });
    });
    this.supervisorPid = this.supervisorChild(child);
    if (this.outbound) {
      // The firewall is in place before the namespace has any way out.
      await this.inNetworkNamespace(["nft", "-f", "-"], this.outbound.ruleset);
      await this.startSlirp(this.outbound.slirpFlags);
    }
  }

  private get builder(): boolean {
    return this.spec.profile === "builder";
  }

  private get workspace(): boolean {
    return this.spec.profile === "workspace";
  }

  /**
   * Maps the builder's block of host uids and gids, from its first (root inside), into the
   * supervisor's fresh user namespace. setgroups stays allowed there, as a step's user needs it.
   */
  private mapBlock(supervisor: number): void {
    // The supervisor waits for this, so its pid is still its own; a process of another uid is not.
    if (statSync(`/proc/${supervisor}`).uid !== this.hostUid) throw new SandboxError("the sandbox's supervisor is gone");
    const map = `0 ${this.hostUid} ${BUILDER_UID_BLOCKS.size}\n`;
    writeFileSync(`/proc/${supervisor}/uid_map`, map);
    writeFileSync(`/proc/${supervisor}/gid_map`, map);
  }

  /** `unshare` forked the supervisor as pid 1 of the new pid namespace: that child is what exec enters. */
  private supervisorChild(unshare: ChildProcess): number {
    const children = readFileSync(`/proc/${unshare.pid}/task/${unshare.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    if (children.length !== 1) throw new SandboxError("sandbox supervisor not found");
    return Number(children[0]);
  }

  /**
   * Runs a host tool as the supervisor does, root of the sandbox's user namespace, inside its
   * network namespace: the only place with the right to change that namespace's network.
   */
  private inNetworkNamespace(argv: string[], stdin = ""): Promise<string> {
    return this.asSupervisor(["--net"], argv, stdin);
  }

  /** Runs a host tool as root of the sandbox's user namespace, in some of its other namespaces. */
  private asSupervisor(namespaces: string[], argv: string[], stdin = ""): Promise<string> {
    const nsenter = ["nsenter", "--preserve-credentials", `--target=${this.supervisorPid}`, "--user", ...namespaces, "--"];
    const [command, ...args] = [...this.identity(), ...nsenter, ...argv];
    const child = spawn(command!, args, { stdio: ["pipe", "pipe", "pipe"], env: { PATH: TOOL_PATH } });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.stdin.on("error", () => undefined);
    child.stdin.end(stdin);
    return new Promise((resolve, reject) => {
      child.once("error", (e) => reject(new SandboxError(`${argv[0]}: ${e.message}`)));
      child.once("close", (code) => (code === 0 ? resolve(out) : reject(new SandboxError(`${argv.join(" ")} failed in the sandbox (exit ${code}): ${err.trim()}`))));
    });
  }

  /** The firewall of an outbound sandbox as the kernel holds it now (for operators and tests). */
  firewallRules(): Promise<string> {
    if (!this.outbound || this.supervisorPid === undefined || this.destroyed) return Promise.reject(new SandboxError("no firewall: the sandbox has no outbound network or is gone"));
    return this.inNetworkNamespace(["nft", "list", "ruleset"]);
  }

  /**
   * User-mode networking: slirp4netns, as the sandbox's uid, attaches a tap device to the
   * namespace and carries its connections out through ordinary sockets of the host. It exits
   * when the runner closes its exit pipe (or dies), and `destroy` kills it.
   */
  private async startSlirp(flags: string[]): Promise<void> {
    const tun = this.asRoot ? ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", TUN_FOR_UID, "tun", String(this.hostUid), ...this.identity()] : [];
    const argv = [...tun, "slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback", ...flags, "--ready-fd=3", "--exit-fd=4", String(this.supervisorPid), "tap0"];
    const child = this.spawnGated(argv, ["pipe", "ignore", "pipe", "pipe", "pipe"]);
    this.slirp = child;
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new SandboxError(`slirp4netns did not start within 10 s: ${stderr.trim()}`)), 10_000);
      child.stdio[3]!.on("data", () => {
        clearTimeout(timer);
        resolve();
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new SandboxError(`slirp4netns failed (exit ${code}): ${stderr.trim() || "no message"}`));
      });
    });
  }

  /**
   * Spawns behind the gate, joins the cgroup, then lets it go. A root runner's sandbox also gets
   * its process limit there: RLIMIT_NPROC counts every process of the uid, so it is a
   * per-sandbox limit only for a uid of its own.
   */
  private spawnGated(argv: string[], stdio: Array<"pipe" | "ignore">): ChildProcess {
    const child = spawn(GATE[0]!, [...GATE.slice(1), this.asRoot ? String(this.limits.pids) : "", ...argv], { stdio, env: { PATH: TOOL_PATH } });
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
    // Every exec gets a process namespace of its own: in the supervisor's, /proc/1/root would be
    // the host's filesystem, open to the sandbox's uid (a workspace sharing it could read it).
    const args = ["--unshare-pid", "--unshare-uts", "--hostname", this.hostname, "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--seccomp", "3"];
    // A builder stays root of the sandbox's own user namespace; a step is its unprivileged user in a nested one.
    if (this.builder) for (const cap of BUILDER_CAPS) args.push("--cap-add", cap);
    else args.push("--unshare-user", "--uid", String(SANDBOX_UID), "--gid", String(SANDBOX_UID));
    if (host) {
      args.push("--bind", `${m}/root`, "/usr");
      for (const [target, link] of HOST_ROOT_LINKS) if (existsSync(`/${target}`)) args.push("--symlink", target, link);
      args.push("--bind", `${m}/etc`, "/etc");
      for (const p of HOST_ETC_READ_ONLY) if (existsSync(p)) args.push("--ro-bind", p, p);
      args.push("--bind", `${m}/tmp`, "/tmp");
    } else {
      args.push("--bind", `${m}/root`, "/");
      for (const f of ["hosts", "passwd", "group", "nsswitch.conf", ...(this.resolvesNames ? ["resolv.conf"] : [])]) args.push("--ro-bind", `${m}/etc/${f}`, `/etc/${f}`);
    }
    // bwrap leaves /proc/sys of a new procfs writable; cover it with a read-only view.
    args.push("--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev", "--tmpfs", "/sys", "--remount-ro", "/sys");
    // Its own instance of devpts, which holds pseudo-terminals and nothing else (bwrap would mount it nodev).
    if (this.workspace) args.push("--dev-bind", `${m}/pts`, "/dev/pts");
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
    // Each would end one of bwrap's options early and start another.
    const fields = [cmd.cwd ?? "", this.spec.hostname ?? "", ...Object.entries({ ...this.spec.env, ...cmd.env }).flat()];
    if (fields.some((f) => f.includes("\0"))) throw new SandboxError("environment variables, the working directory and the host name may not contain NUL bytes");
    // A sandbox sharing another's network enters that one's first: its own uid could not.
    const nsenter = ["nsenter", "--preserve-credentials", `--target=${this.supervisorPid}`, "--user", "--mount", ...(this.peer ? [] : ["--net"]), "--ipc", "--uts", "--pid", "--cgroup", "--"];
    // bwrap reads its options from a pipe: on its command line, which every local user can read
    // in /proc, the variables of --setenv (secrets among them) would be in plain sight.
    // A builder's processes may hold its capabilities but never regain others (the bounding set).
    const bounded = this.builder ? ["setpriv", "--bounding-set", `-all,${BUILDER_CAPS.map((c) => `+${c.slice(4).toLowerCase()}`).join(",")}`, "--"] : [];
    const argv = [...(this.peer?.networkEntry() ?? []), ...this.identity(), ...nsenter, "bwrap", "--args", "4", "--", ...bounded, ...cmd.argv];
    const child = this.spawnGated(argv, ["pipe", "pipe", "pipe", "pipe", "pipe"]);
    this.running.add(child);
    (child.stdio[3] as Writable).end(this.filter);
    (child.stdio[4] as Writable).end(Buffer.from(this.bwrapArgs(cmd).map((a) => `${a}\0`).join("")));
    const stdout = io.stdout;
    if (stdout instanceof Writable) child.stdout!.pipe(stdout);
    else child.stdout!.on("data", (d: Buffer) => stdout?.(d));
    child.stderr!.on("data", (d: Buffer) => io.stderr?.(d));
    if (io.stdin instanceof Readable) io.stdin.pipe(child.stdin!);
    else child.stdin!.end(io.stdin);
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

  async connect(port: number): Promise<Duplex> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new SandboxError(`not a port: ${port}`);
    if (this.destroyed || this.supervisorPid === undefined) throw new SandboxError("the sandbox is gone");
    // A relay in the sandbox's network namespace, as its uid (it never sees the sandbox's files):
    // the host's own node, so that any image will do. It says "+" once connected.
    const enter = this.asRoot
      ? ["nsenter", `--target=${this.supervisorPid}`, "--net", "--", ...this.identity()]
      : ["nsenter", "--preserve-credentials", `--target=${this.supervisorPid}`, "--user", "--net", "--"];
    const relay = spawn(enter[0]!, [...enter.slice(1), process.execPath, "-e", RELAY, String(port)], { stdio: ["pipe", "pipe", "ignore"], env: { PATH: TOOL_PATH } });
    this.running.add(relay);
    relay.once("close", () => this.running.delete(relay));
    relay.stdin.on("error", () => undefined);
    const stdout = relay.stdout;
    await new Promise<void>((resolve, reject) => {
      const fail = () => reject(new SandboxError(`nothing listens on port ${port} in the sandbox`));
      relay.once("close", fail);
      stdout.once("readable", () => {
        relay.off("close", fail);
        if (stdout.read(1)?.toString() === "+") resolve();
        else fail();
      });
    });
    // One lifetime for both: the relay is killed when the connection closes; when the relay ends,
    // the connection ends too once what it sent has been read.
    const connection = Duplex.from({ readable: stdout, writable: relay.stdin });
    connection.once("close", () => relay.kill("SIGKILL"));
    relay.once("close", () => connection.end());
    // Torn down by either side before its end (an AbortError): the server has nothing to report.
    connection.on("error", () => undefined);
    return connection;
  }

  async addHosts(hosts: Record<string, string>): Promise<void> {
    const lines = Object.entries(hosts).map(([name, address]) => {
      if (!HOST_NAME.test(name) || isIP(address) === 0) throw new SandboxError(`not a hosts entry: ${JSON.stringify(name)} ${JSON.stringify(address)}`);
      return `${address} ${name}\n`;
    });
    if (this.destroyed || this.supervisorPid === undefined) throw new SandboxError("the sandbox is gone");
    // The file is in the sandbox's tmpfs, but steps of a host-image sandbox may have replaced it
    // (its /etc is theirs): never follow a link they planted there, never wait on a FIFO.
    const append = 'dd of="$1" oflag=append,nofollow,nonblock conv=notrunc status=none';
    await this.asSupervisor(["--mount"], ["/bin/sh", "-c", append, "add-hosts", path.join(this.mountDir, "etc", "hosts")], lines.join(""));
  }

  destroy(): Promise<void> {
    this.destroyed ??= this.teardown();
    return this.destroyed;
  }

  private async teardown(): Promise<void> {
    await Promise.all([...this.sharers].map((s) => s.destroy()));
    this.peer?.sharers.delete(this);
    // Each exec's first process lives outside the sandbox's pid namespace: wait until it is reaped too.
    const children = [...this.running, this.supervisor, this.slirp];
    for (const child of children) child?.kill("SIGKILL");
    for (const pid of this.cgroup?.pids() ?? []) killQuietly(pid);
    await Promise.all(children.map(exited));
    if (this.cgroup) await removeWhenEmpty(this.cgroup);
    rmSync(this.mountDir, { recursive: true, force: true });
    this.released();
  }
}

const usedUids = new Set<number>();

/** Claims of uid blocks, one file per block holding the claiming pid: shared by every runner process of this machine. */
const BLOCK_CLAIMS = path.join(RUN_DIR, "uid-blocks");

/** Claims a block for this process, taking over the claim of a process that died. */
function claimBlock(uid: number): boolean {
  const file = path.join(BLOCK_CLAIMS, String(uid));
  try {
    writeFileSync(file, String(process.pid), { flag: "wx", mode: 0o600 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    const owner = Number(readFileSync(file, "utf8"));
    if (owner === process.pid || isAlive(owner)) return false;
    rmSync(file, { force: true });
    return claimBlock(uid);
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

function exited(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Which hardening flags this slirp4netns supports; fails clearly when it (or nft) is missing. */
function detectSlirpFlags(): string[] {
  const version = (tool: string, hint: string): string => {
    try {
      return execFileSync(tool, ["--version"], { encoding: "utf8", env: { PATH: TOOL_PATH } });
    } catch {
      throw new SandboxError(`outbound networking needs ${tool} (Debian package ${hint})`);
    }
  };
  version("nft", "nftables");
  const slirp = version("slirp4netns", "slirp4netns");
  return ["--enable-sandbox", ...(/libseccomp: \d/.test(slirp) ? ["--enable-seccomp"] : [])];
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
  // The kernel usually lets go within a millisecond or two: look again soon, then every 10 ms, for about 2 s.
  for (let attempt = 0; attempt < 205; attempt++) {
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
    await new Promise((r) => setTimeout(r, Math.min(10, 2 ** attempt)));
  }
  throw new SandboxError("sandbox processes did not exit after SIGKILL");
}
