import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sandbox, SandboxSpec } from "../src/sandbox/backend.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { sh } from "./helpers/sandbox-shell.js";

// Real bubblewrap sandboxes on this machine; CI runs them as root, where each sandbox gets its own uid.
let backend: BwrapBackend;
const open: Sandbox[] = [];
let scratch: string;

beforeAll(() => {
  backend = new BwrapBackend({ runtimeDir: mkdtempSync(path.join(tmpdir(), "slipway-sbx-test-")) });
  scratch = mkdtempSync(path.join(tmpdir(), "slipway-sbx-scratch-"));
  chmodSync(scratch, 0o755);
});
afterAll(async () => {
  await Promise.all(open.map((s) => s.destroy()));
  rmSync(scratch, { recursive: true, force: true });
});

async function sandbox(spec: Partial<SandboxSpec> = {}): Promise<Sandbox> {
  const s = await backend.create({ image: { kind: "host" }, ...spec });
  open.push(s);
  return s;
}


const py = (s: Sandbox, code: string) => sh(s, `python3 -c '${code}'`);

/** Host pids whose command line contains `marker`. */
function hostPidsWith(marker: string): number[] {
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(marker);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function hostUidsOf(pid: number): number[] {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("Uid:"))!;
  return line.split(/\s+/).slice(1).map(Number);
}

describe("the sandbox itself", () => {
  it("runs commands with exact exit codes, streams output, and shares files between execs", async () => {
    const s = await sandbox();
    expect((await sh(s, "exit 7")).code).toBe(7);
    expect((await sh(s, "echo out; echo err >&2")).out).toMatch(/out[\s\S]*err|err[\s\S]*out/);
    await sh(s, "echo kept > /workspace/file");
    expect((await s.readFile("/workspace/file")).toString()).toBe("kept\n");
    await s.writeFile("/workspace/key", "secret", 0o400);
    expect((await sh(s, "stat -c %a /workspace/key; cat /workspace/key")).out).toBe("400\nsecret");
    const status = await s.exec({ argv: ["sleep", "30"], timeoutMs: 200 });
    expect(status.timedOut).toBe(true);
    await s.destroy();
    await s.destroy();
    await expect(sh(s, "true")).rejects.toThrow(/gone/);
  });
});

describe("P26: code in a sandbox never holds host privileges", () => {
  it("P26: every process of a sandbox runs, seen from the host, as an unprivileged uid of its own", async () => {
    const [a, b] = await Promise.all([sandbox(), sandbox()]);
    const markers = [`31.${randomBytes(3).readUIntBE(0, 3)}`, `32.${randomBytes(3).readUIntBE(0, 3)}`];
    const running = [sh(a, `sleep ${markers[0]}`), sh(b, `sleep ${markers[1]}`)];
    await new Promise((r) => setTimeout(r, 300));
    const uids = markers.map((m) => {
      const pids = hostPidsWith(`sleep${"\0"}${m}`);
      expect(pids.length).toBeGreaterThan(0);
      const all = pids.flatMap(hostUidsOf);
      expect(new Set(all).size).toBe(1);
      return all[0]!;
    });
    if (backend.isRoot) {
      expect(uids.every((u) => u !== 0)).toBe(true);
      expect(uids[0]).not.toBe(uids[1]);
    } else {
      expect(uids).toEqual([process.getuid!(), process.getuid!()]);
    }
    await Promise.all([a.destroy(), b.destroy()]);
    await Promise.all(running);
  });

  it("P26: inside, no capabilities, no new privileges, a seccomp filter", async () => {
    const s = await sandbox();
    const { out } = await sh(s, "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status");
    expect(out).toMatch(/CapEff:\s+0000000000000000/);
    expect(out).toMatch(/CapPrm:\s+0000000000000000/);
    expect(out).toMatch(/NoNewPrivs:\s+1/);
    expect(out).toMatch(/Seccomp:\s+2/);
  });

  it("P26: TIOCSTI is refused by the filter (EPERM), not merely by the terminal", async () => {
    const s = await sandbox();
    const res = await py(s, "import os, fcntl, termios\nm, t = os.openpty()\ntry:\n  fcntl.ioctl(t, termios.TIOCSTI, b\"x\"); print(\"allowed\")\nexcept OSError as e: print(\"errno\", e.errno)");
    expect(res.out.trim()).toBe("errno 1");
    // Control: another ioctl on the same terminal works, so the refusal is the filter's.
    expect((await py(s, "import os, fcntl, termios, struct\nm, t = os.openpty()\nprint(len(fcntl.ioctl(t, termios.TIOCGWINSZ, b\"\\0\" * 8)))")).out.trim()).toBe("8");
  });

  it("P26: a root-only host file bound in cannot be read; a world-readable one can", async () => {
    const secret = path.join(scratch, "root-only");
    const open_ = path.join(scratch, "world-readable");
    writeFileSync(secret, "host secret", { mode: 0o600 });
    writeFileSync(open_, "public", { mode: 0o644 });
    const s = await sandbox({ readOnlyBinds: [{ hostPath: secret, path: "/mnt/secret" }, { hostPath: open_, path: "/mnt/public" }] });
    expect((await sh(s, "cat /mnt/public")).out).toBe("public");
    const res = await sh(s, "cat /mnt/secret");
    if (backend.isRoot) {
      expect(res.code).not.toBe(0);
      expect(res.out).toMatch(/Permission denied/);
      expect(res.out).not.toContain("host secret");
    }
  });

  it("P26: in a workspace sandbox, an exec sees no process but its own (the supervisor's /proc/<pid>/root would be the host's files)", async () => {
    const s = await sandbox({ profile: "workspace" });
    const marker = `33.${randomBytes(3).readUIntBE(0, 3)}`;
    const running = sh(s, `sleep ${marker}`);
    await new Promise((r) => setTimeout(r, 300));
    const seen = await sh(s, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '");
    expect(seen.out).not.toContain(marker);
    expect(seen.out).not.toContain("sleep infinity");
    // Control: the exec sees its own processes.
    expect(seen.out).toContain("cat /proc/");
    await s.destroy();
    await running;
  });

  it("its own host name resolves from /etc/hosts, without asking DNS (git looks it up for every clone)", async () => {
    const s = await sandbox({ hostname: "workspace" });
    expect((await sh(s, "hostname; getent hosts \"$(hostname)\"")).out.split(/\s+/).filter(Boolean)).toEqual(["workspace", "127.0.0.1", "localhost", "workspace"]);
    await s.destroy();
  });

  it("P26: /proc/sys and /sys are read-only", async () => {
    const s = await sandbox();
    const mounts = (await sh(s, "cat /proc/self/mountinfo")).out.split("\n");
    for (const mountPoint of ["/proc/sys", "/sys"]) {
      const line = mounts.find((l) => l.split(" ")[4] === mountPoint);
      expect(line, mountPoint).toBeDefined();
      expect(line!.split(" ")[5]!.split(",")).toContain("ro");
    }
    expect((await sh(s, "echo '|/tmp/x' > /proc/sys/kernel/core_pattern")).code).not.toBe(0);
    expect((await sh(s, "touch /sys/x")).out).toMatch(/Read-only file system/);
  });
});

describe("P17: secrets handed to a sandbox", () => {
  it("P17: a secret in a command's environment is on no host process's command line, which any local user can read", async () => {
    const secret = `p17-${randomBytes(12).toString("hex")}`;
    const s = await sandbox({ env: { SPEC_SECRET: `${secret}-spec` } });
    const running = s.exec({ argv: ["/bin/sh", "-c", 'test "$STEP_SECRET" = "$1-step" && test "$SPEC_SECRET" = "$1-spec" && sleep 2 && echo seen', "sh", secret], env: { STEP_SECRET: `${secret}-step` } });
    await new Promise((r) => setTimeout(r, 700));
    expect(hostPidsWith(`${secret}-`)).toEqual([]);
    expect((await running).code).toBe(0);
  });

  it("a NUL byte in a variable cannot smuggle in options of bwrap (they are read NUL-separated)", async () => {
    const s = await sandbox();
    await expect(s.exec({ argv: ["true"], env: { X: "a\0--bind\0/\0/host" } })).rejects.toThrow(/NUL bytes/);
    await expect(s.exec({ argv: ["true"], cwd: "/tmp\0--bind" })).rejects.toThrow(/NUL bytes/);
  });
});

describe("sandbox escapes fail closed", () => {
  let s: Sandbox;
  beforeAll(async () => {
    s = await sandbox();
  });

  it("mount, unshare and setns are refused", async () => {
    expect((await sh(s, "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m")).code).not.toBe(0);
    expect((await sh(s, "unshare -U true")).out).toMatch(/Operation not permitted/);
    expect((await sh(s, "unshare -r -m true")).code).not.toBe(0);
    expect((await py(s, "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nfd = os.open(\"/proc/1/ns/mnt\", os.O_RDONLY)\nprint(libc.setns(fd, 0), ctypes.get_errno())")).out.trim()).toBe("-1 1");
  });

  it("namespace flags to clone are refused; plain clone (fork) works", async () => {
    const res = await py(s, "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0), ctypes.get_errno())");
    expect(res.out.trim()).toBe("-1 1");
    expect((await sh(s, "(true) && echo forked")).out.trim()).toBe("forked");
  });

  it("ptrace, process_vm_readv, keyctl, bpf, userfaultfd, perf_event_open and open_by_handle_at are refused with EPERM", async () => {
    // syscall numbers are x86_64's, as the filter is.
    const calls: Record<string, string> = {
      ptrace: "101, 16, 1, 0, 0",
      process_vm_readv: "310, 1, 0, 0, 0, 0, 0",
      keyctl: "250, 0, 0, 0, 0",
      add_key: "248, 0, 0, 0, 0, 0",
      bpf: "321, 0, 0, 0",
      userfaultfd: "323, 0",
      perf_event_open: "298, 0, 0, -1, -1, 0",
      open_by_handle_at: "304, 0, 0, 0",
      io_uring_setup: "425, 1, 0",
    };
    for (const [name, args] of Object.entries(calls)) {
      const res = await py(s, `import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.syscall(${args}), ctypes.get_errno())`);
      expect(res.out.trim(), name).toBe("-1 1");
    }
    // Control: an ordinary syscall through the same path succeeds (getpid = 39).
    expect(Number((await py(s, "import ctypes\nprint(ctypes.CDLL(None).syscall(39))")).out.trim())).toBeGreaterThan(0);
  });

  it("sees none of the host's processes, so their memory and environment are out of reach", async () => {
    const { out } = await sh(s, "ls /proc | grep -E '^[0-9]+$'");
    const pids = out.split("\n").filter(Boolean).map(Number);
    expect(pids.length).toBeLessThan(10);
    expect(pids).not.toContain(process.pid);
    expect((await sh(s, `cat /proc/${process.pid}/environ`)).code).not.toBe(0);
  });

  it("has no container engine sockets and no cgroup release_agent to write", async () => {
    const res = await sh(s, "ls /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock /run/podman/podman.sock 2>&1; ls /sys/fs/cgroup 2>&1");
    expect(res.out).not.toMatch(/^\/(var\/)?run\/[a-z/]+\.sock$/m);
    expect(res.out).toMatch(/No such file or directory/);
    expect((await sh(s, "echo /tmp/x > /sys/fs/cgroup/release_agent")).code).not.toBe(0);
  });

  it("a symlink planted inside is followed only inside the sandbox by writeFile and readFile", async () => {
    const hostFile = path.join(scratch, "host-target");
    writeFileSync(hostFile, "untouched", { mode: 0o666 });
    chmodSync(hostFile, 0o666);
    await sh(s, `ln -sf ${hostFile} /workspace/planted`);
    await s.writeFile("/workspace/planted", "overwritten").catch(() => undefined);
    expect(readFileSync(hostFile, "utf8")).toBe("untouched");
    await expect(s.readFile("/workspace/planted")).rejects.toThrow(/No such file/);
  });

  it("a symlink or FIFO planted at /etc/hosts is not followed or waited on when the runner adds service names", async () => {
    const own = await sandbox();
    await own.addHosts({ first: "127.0.0.1" });
    expect((await sh(own, "cat /etc/hosts")).out).toContain("127.0.0.1 first\n");
    const hostFile = path.join(scratch, `hosts-target-${randomBytes(4).toString("hex")}`);
    expect((await sh(own, `rm /etc/hosts && ln -s ${hostFile} /etc/hosts`)).code).toBe(0);
    await expect(own.addHosts({ db: "127.0.0.1" })).rejects.toThrow(/add-hosts|failed/);
    expect(existsSync(hostFile)).toBe(false);
    expect((await sh(own, "rm /etc/hosts && mkfifo /etc/hosts")).code).toBe(0);
    await expect(own.addHosts({ db: "127.0.0.1" })).rejects.toThrow(/failed/);
  });
});

describe("limits", () => {
  it("a fork bomb is contained by the process limit and the sandbox stays usable", async () => {
    const s = await sandbox({ limits: { pids: 64 } });
    const tag = `40.${randomBytes(2).readUInt16BE(0)}`;
    const bomb = await sh(s, `i=0; while [ $i -lt 300 ]; do sleep ${tag} & i=$((i+1)); done; echo spawned`, 20_000);
    expect(bomb.out).toMatch(/fork|Resource temporarily unavailable/i);
    expect(hostPidsWith(`sleep\0${tag}`).length).toBeLessThanOrEqual(64);
    await s.destroy();
    expect(hostPidsWith(`sleep\0${tag}`)).toEqual([]);
    expect((await sh(await sandbox(), "echo alive")).out.trim()).toBe("alive");
  });

  it("a memory hog is killed at the memory limit", async () => {
    if (backend.cgroupMode === "none") return;
    const s = await sandbox({ limits: { memoryBytes: 64 * 1024 ** 2 } });
    const res = await py(s, "b = bytearray(256 * 1024 * 1024)\nprint(\"allocated\")");
    expect(res.out).not.toContain("allocated");
    expect(res.code === 137 || res.signal === "SIGKILL" || /MemoryError|Killed/.test(res.out)).toBe(true);
    // Control: below the limit the same program runs.
    expect((await py(s, "b = bytearray(8 * 1024 * 1024)\nprint(\"allocated\")")).out.trim()).toBe("allocated");
  });

  it.runIf(process.getuid?.() === 0)("every process of a sandbox carries its process limit as a hard RLIMIT_NPROC of its own uid", async () => {
    const limited = await sandbox({ limits: { pids: 77 } });
    const other = await sandbox({ limits: { pids: 99 } });
    const maxProcesses = async (s: Sandbox) => (await sh(s, "grep 'Max processes' /proc/self/limits")).out.trim().split(/\s+/).slice(2, 4);
    expect(await maxProcesses(limited)).toEqual(["77", "77"]);
    expect(await maxProcesses(other)).toEqual(["99", "99"]);
    // Hard: a process inside cannot raise it.
    expect((await sh(limited, "ulimit -p 200 2>&1 || ulimit -u 200 2>&1; echo rc=$?")).out).toMatch(/rc=[1-9]/);
  });

  it("filling the filesystem stops at the tmpfs size", async () => {
    const s = await sandbox({ limits: { tmpfsBytes: 16 * 1024 ** 2 } });
    const res = await sh(s, "dd if=/dev/zero of=/workspace/fill bs=1M count=64 2>&1; stat -c %s /workspace/fill");
    expect(res.out).toMatch(/No space left on device/);
    expect(Number(res.out.trim().split("\n").pop())).toBeLessThanOrEqual(16 * 1024 ** 2);
  });
});

describe("P02 / P03: clean, in-memory, and gone afterwards", () => {
  it("P02: a file written by one sandbox is not visible to the next, and its processes do not outlive it", async () => {
    const first = await sandbox();
    const marker = `p02-${randomBytes(6).toString("hex")}`;
    await sh(first, `echo ${marker} > /workspace/left; echo ${marker} > /tmp/left; echo ${marker} > $HOME/left`);
    const daemon = `600.${randomBytes(2).readUInt16BE(0)}`;
    const running = sh(first, `setsid nohup sleep ${daemon} >/dev/null 2>&1 & sleep 60`);
    await new Promise((r) => setTimeout(r, 300));
    expect(hostPidsWith(`sleep\0${daemon}`).length).toBe(1);
    await first.destroy();
    await running;
    expect(hostPidsWith(`sleep\0${daemon}`)).toEqual([]);
    const second = await sandbox();
    expect((await sh(second, "cat /workspace/left /tmp/left $HOME/left 2>&1")).out).not.toContain(marker);
  });

  it("P03: writes live in memory only: a marker written everywhere in a build is found nowhere on the runner's disk", async () => {
    const marker = `p03-${randomBytes(12).toString("hex")}`;
    const s = await sandbox();
    const res = await sh(s, `for d in /workspace /tmp $HOME /usr; do echo ${marker} > $d/marker-file || exit 1; done; echo written`);
    expect(res.out.trim()).toBe("written");
    const places = [tmpdir(), "/run/slipway", "/var/tmp"].filter((p) => {
      try {
        readdirSync(p);
        return true;
      } catch {
        return false;
      }
    });
    const search = () => {
      try {
        return execFileSync("grep", ["-rl", "--binary-files=text", "--no-messages", "-s", marker, ...places], { encoding: "utf8", timeout: 60_000 }).trim();
      } catch (err) {
        return ((err as { stdout?: string }).stdout ?? "").trim();
      }
    };
    expect(search()).toBe("");
    // The image's /usr is only the overlay's read-only lower layer.
    expect(existsSync("/usr/marker-file")).toBe(false);
    await s.destroy();
    expect(search()).toBe("");
    // Control: the same search finds the marker in a file on disk.
    const control = path.join(scratch, "control");
    writeFileSync(control, marker);
    expect(search()).toContain(control);
    rmSync(control);
  });
});
