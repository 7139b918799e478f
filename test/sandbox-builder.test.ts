import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sandbox, SandboxSpec } from "../src/sandbox/backend.js";
import { BUILDER_UID_BLOCKS, BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { sh } from "./helpers/sandbox-shell.js";

// The builder profile: what rootless buildah gets. CI runs as root, which the profile needs.
let backend: BwrapBackend;
const open: Sandbox[] = [];
let scratch: string;

beforeAll(() => {
  backend = new BwrapBackend({ runtimeDir: mkdtempSync(path.join(tmpdir(), "slipway-sbx-test-")) });
  scratch = mkdtempSync(path.join(tmpdir(), "slipway-builder-scratch-"));
  chmodSync(scratch, 0o755);
});
afterAll(async () => {
  await Promise.all(open.map((s) => s.destroy()));
  rmSync(scratch, { recursive: true, force: true });
});

async function builder(spec: Partial<SandboxSpec> = {}): Promise<Sandbox> {
  const s = await backend.create({ image: { kind: "host" }, profile: "builder", ...spec });
  open.push(s);
  return s;
}


const syscall = (s: Sandbox, args: string) => sh(s, `python3 -c 'import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.syscall(${args}), ctypes.get_errno())'`);

/** Host uids (real, effective, saved, fs) of every process whose command line contains `marker`. */
function hostUidsOfProcessesWith(marker: string): number[][] {
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .flatMap((p) => {
      try {
        if (!readFileSync(`/proc/${p}/cmdline`, "utf8").includes(marker)) return [];
        const line = readFileSync(`/proc/${p}/status`, "utf8").split("\n").find((l) => l.startsWith("Uid:"))!;
        return [line.split(/\s+/).slice(1).map(Number)];
      } catch {
        return [];
      }
    });
}

describe("the builder profile", () => {
  it("runs only the host image, where buildah is installed", async () => {
    await expect(backend.create({ image: { kind: "rootfs", path: scratch }, profile: "builder" })).rejects.toThrow(/a builder sandbox runs the host image/);
  });
});

describe.runIf(process.getuid?.() === 0)("P26: an image builder holds no host privilege", () => {
  it("P26: every process, its steps' users too, runs as an unprivileged host uid of the builder's own block, disjoint from another builder's", async () => {
    const [a, b] = await Promise.all([builder(), builder()]);
    const marker = `4${randomBytes(3).readUIntBE(0, 3)}`;
    // As root inside and as a step's user (uid 1234), the way buildah runs a RUN after USER.
    const running = [sh(a, `sleep 3.${marker}1 & setpriv --reuid=1234 --regid=1234 --clear-groups sleep 3.${marker}2; wait`), sh(b, `sleep 3.${marker}3`)];
    await new Promise((r) => setTimeout(r, 500));
    const uidsOf = (n: number) => hostUidsOfProcessesWith(`sleep\0${"3."}${marker}${n}`);
    const [rootA, userA, rootB] = [uidsOf(1), uidsOf(2), uidsOf(3)];
    for (const seen of [rootA, userA, rootB]) expect(seen.length).toBeGreaterThan(0);
    const blockA = rootA[0]![0]!;
    const blockB = rootB[0]![0]!;
    for (const block of [blockA, blockB]) {
      expect(block).toBeGreaterThanOrEqual(BUILDER_UID_BLOCKS.first);
      expect((block - BUILDER_UID_BLOCKS.first) % BUILDER_UID_BLOCKS.size).toBe(0);
    }
    expect(Math.abs(blockA - blockB)).toBeGreaterThanOrEqual(BUILDER_UID_BLOCKS.size);
    expect(rootA.flat().every((u) => u === blockA)).toBe(true);
    expect(userA.flat().every((u) => u === blockA + 1234)).toBe(true);
    await Promise.all(running);
  });

  it("P26: root inside, with capabilities that count only in its own user namespace: host files stay out of reach", async () => {
    const secret = path.join(scratch, "root-only");
    writeFileSync(secret, "host secret", { mode: 0o600 });
    const s = await builder({ readOnlyBinds: [{ hostPath: secret, path: "/mnt/secret" }] });
    const status = (await sh(s, "grep -E '^(Uid|CapEff|Seccomp):' /proc/self/status")).out;
    expect(status).toMatch(/Uid:\s+0\s+0\s+0\s+0/);
    expect(status).toMatch(/Seccomp:\s+2/);
    expect(status).not.toMatch(/CapEff:\s+0+\n/);
    // No process of it can regain a capability beyond the builder's set.
    const bounding = BigInt(`0x${/CapBnd:\s+([0-9a-f]+)/.exec((await sh(s, "grep CapBnd /proc/self/status")).out)![1]}`);
    const CAP_SYS_MODULE = 16n;
    const CAP_NET_ADMIN = 12n;
    const CAP_SYS_ADMIN = 21n;
    expect(bounding & (1n << CAP_SYS_MODULE)).toBe(0n);
    expect(bounding & (1n << CAP_NET_ADMIN)).toBe(0n);
    expect(bounding & (1n << CAP_SYS_ADMIN)).not.toBe(0n);
    const map = /^\s*0\s+(\d+)\s+(\d+)\s*$/.exec((await sh(s, "cat /proc/self/uid_map")).out);
    expect(Number(map?.[1])).toBeGreaterThanOrEqual(BUILDER_UID_BLOCKS.first);
    expect(Number(map?.[2])).toBe(BUILDER_UID_BLOCKS.size);
    // CAP_DAC_OVERRIDE of the builder's namespace means nothing to a file of host root.
    const read = await sh(s, "cat /mnt/secret");
    expect(read.out).toMatch(/Permission denied/);
    expect(read.out).not.toContain("host secret");
    // It sees no host process, so cannot signal one.
    expect((await sh(s, `kill -0 ${process.pid}`)).out).toMatch(/No such process/);
  });

  it("P26: mounts it makes stay in its own mount namespace, and /proc/sys and kernel state stay read-only", async () => {
    const s = await builder();
    expect((await sh(s, "mount -t tmpfs none /usr/share && touch /usr/share/mounted-here && echo ok")).out.trim()).toBe("ok");
    expect(readdirSync("/usr/share")).not.toContain("mounted-here");
    expect((await sh(s, "echo '|/tmp/x' > /proc/sys/kernel/core_pattern")).code).not.toBe(0);
    expect((await sh(s, "mount -o remount,rw /proc/sys 2>&1; echo 1 > /proc/sys/kernel/sysrq")).code).not.toBe(0);
    expect(readFileSync("/proc/sys/kernel/core_pattern", "utf8")).not.toContain("/tmp/x");
  });

  it("P26: a nested user namespace is refused (unshare and clone), so its steps never get a fresh set of capabilities", async () => {
    const s = await builder();
    expect((await sh(s, "unshare -U true")).out).toMatch(/Operation not permitted/);
    expect((await syscall(s, "272, 0x10000000")).out.trim()).toBe("-1 1");
    expect((await syscall(s, "56, 0x10000000 | 17, 0, 0, 0, 0")).out.trim()).toBe("-1 1");
    // Control: a mount namespace, which buildah's chroot isolation makes, is allowed.
    expect((await sh(s, "unshare -m true && echo ok")).out.trim()).toBe("ok");
  });

  it("P26: the escape calls stay refused with EPERM: setns, ptrace, keyctl, bpf, module loading, the new mount API, io_uring", async () => {
    const s = await builder();
    const calls: Record<string, string> = {
      setns: "308, 0, 0",
      ptrace: "101, 16, 1, 0, 0",
      keyctl: "250, 0, 0, 0, 0",
      bpf: "321, 0, 0, 0",
      init_module: "175, 0, 0, 0",
      finit_module: "313, 0, 0, 0",
      open_tree: "428, -100, 0, 0",
      fsopen: "430, 0, 0",
      io_uring_setup: "425, 1, 0",
    };
    for (const [name, args] of Object.entries(calls)) expect((await syscall(s, args)).out.trim(), name).toBe("-1 1");
    expect(Number((await sh(s, "python3 -c 'import ctypes; print(ctypes.CDLL(None).syscall(39))'")).out.trim())).toBeGreaterThan(0);
  });
});
