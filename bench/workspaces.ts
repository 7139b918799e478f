import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { WORKSPACE, type Sandbox } from "../src/sandbox/backend.js";
import { BwrapBackend, type BwrapSandbox } from "../src/sandbox/bwrap-backend.js";
import { LocalArchiveStorage } from "../src/workspaces/archive-storage.js";
import { archiveName, restoreWorkspace, saveWorkspace } from "../src/workspaces/archive.js";
import { fmt, printTable, ratio } from "./support.js";

const ROUNDS = 3;
const MIB = 1024 * 1024;

/**
 * 100 MB of mixed files, as a project's /workspace holds them: source-like text that compresses
 * well, many small files, and incompressible binaries (images, a build's output).
 */
const FILL = `
set -e
cd /workspace
mkdir -p src assets deps
i=0; while [ $i -lt 400 ]; do seq 1 6000 | sed "s/^/line $i of a source file: /" > src/file$i.txt; i=$((i+1)); done
i=0; while [ $i -lt 4000 ]; do echo "module $i" > deps/m$i.js; i=$((i+1)); done
head -c 45000000 /dev/urandom > assets/blob.bin
`;

async function sh(sandbox: Sandbox, script: string): Promise<string> {
  let out = "";
  const status = await sandbox.exec({ argv: ["/bin/sh", "-c", script], timeoutMs: 300_000 }, { stdout: (d) => (out += d.toString()), stderr: (d) => (out += d.toString()) });
  if (status.code !== 0) throw new Error(`${script.slice(0, 60)}… failed: ${out}`);
  return out.trim();
}

const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;
const best = (xs: number[]) => Math.min(...xs);

/**
 * Stop and resume of a workspace holding ~100 MB: Slipway's archive (tar in the sandbox → zstd →
 * sealed AES-256-GCM chunks → file) and restore into a fresh sandbox up to its first command,
 * against the same tar | zstd | openssl pipeline run by the shell on the host. Then the memory an
 * idle workspace holds (its supervisor and namespaces) against a bare `sleep`.
 */
export async function workspacesBench(): Promise<void> {
  const backend = new BwrapBackend();
  const dir = mkdtempSync(path.join(tmpdir(), "slipway-bench-ws-"));
  const storage = new LocalArchiveStorage(path.join(dir, "archives"));
  const key = randomBytes(32);
  const source = await backend.create({ image: { kind: "host" }, profile: "workspace", limits: { tmpfsBytes: 1024 * MIB } });
  try {
    await sh(source, FILL);
    const bytes = Number(await sh(source, "du -sb /workspace | cut -f1"));
    const saves: number[] = [];
    const resumes: number[] = [];
    let stored = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const name = archiveName(`bench${round}`);
      let start = process.hrtime.bigint();
      stored = await saveWorkspace(source, key, storage, name);
      saves.push(ms(start));
      start = process.hrtime.bigint();
      const target = await backend.create({ image: { kind: "host" }, profile: "workspace", limits: { tmpfsBytes: 1024 * MIB } });
      await restoreWorkspace(target, key, storage, name);
      await target.exec({ argv: ["true"] });
      resumes.push(ms(start));
      if ((await sh(target, "du -sb /workspace | cut -f1")) !== String(bytes)) throw new Error("the restored /workspace differs");
      await target.destroy();
      await storage.delete(name);
    }

    // The same work by the shell on the host, from a copy of the same files.
    const plain = path.join(dir, "plain");
    mkdirSync(plain);
    const chunks: Buffer[] = [];
    await source.exec({ argv: ["tar", "-C", WORKSPACE, "-cf", "-", "."] }, { stdout: (d) => chunks.push(d) });
    execFileSync("tar", ["-C", plain, "-xf", "-"], { input: Buffer.concat(chunks), maxBuffer: 1024 * MIB });
    const pass = randomBytes(32).toString("hex");
    const shellSave: number[] = [];
    const shellRestore: number[] = [];
    const sealed = path.join(dir, "baseline.zst.enc");
    for (let round = 0; round < ROUNDS; round++) {
      let start = process.hrtime.bigint();
      execFileSync("/bin/sh", ["-c", `tar -C ${plain} -cf - . | zstd -q -c -3 -T0 | openssl enc -aes-256-ctr -pbkdf2 -iter 1 -pass pass:${pass} -out ${sealed}`]);
      shellSave.push(ms(start));
      const into = mkdtempSync(path.join(dir, "restore-"));
      start = process.hrtime.bigint();
      execFileSync("/bin/sh", ["-c", `openssl enc -d -aes-256-ctr -pbkdf2 -iter 1 -pass pass:${pass} -in ${sealed} | zstd -q -d -c | tar -C ${into} -xf -`]);
      shellRestore.push(ms(start));
      rmSync(into, { recursive: true, force: true });
    }
    const throughput = (t: number) => `${fmt(bytes / MIB / (t / 1000), 0)} MiB/s`;
    printTable(`/workspace of ${fmt(bytes / MIB, 1)} MiB (${fmt(stored / MIB, 1)} MiB stored); best of ${ROUNDS} (ms)`, ["what", "time", "throughput", "ratio to the shell pipeline (time)"], [
      ["stop: archive, compress, seal, store", fmt(best(saves)), throughput(best(saves)), ratio(best(saves), best(shellSave))],
      ["  tar | zstd | openssl enc (baseline)", fmt(best(shellSave)), throughput(best(shellSave)), "1.00x"],
      ["resume: new sandbox, restore, first exec", fmt(best(resumes)), throughput(best(resumes)), ratio(best(resumes), best(shellRestore))],
      ["  openssl -d | zstd -d | tar -x (baseline)", fmt(best(shellRestore)), throughput(best(shellRestore)), "1.00x"],
    ]);
  } finally {
    await source.destroy();
    rmSync(dir, { recursive: true, force: true });
  }

  // An idle workspace: what its sandbox holds while nobody uses it, against a bare sleep.
  const idle = (await backend.create({ image: { kind: "host" }, profile: "workspace" })) as BwrapSandbox;
  try {
    await new Promise((r) => setTimeout(r, 500));
    const rss = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
    const ofUid = (uid: number) =>
      execFileSync("ps", ["-o", "pid=", "-u", String(uid)], { encoding: "utf8" })
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
    const pids = idle.hostUid === process.getuid?.() ? [] : ofUid(idle.hostUid);
    const held = pids.reduce((sum, pid) => sum + rss(pid), 0);
    const sleeper = execFileSync("/bin/sh", ["-c", "sleep 30 & p=$!; sleep 0.2; grep VmRSS /proc/$p/status; kill $p"], { encoding: "utf8" });
    const bare = Number(/VmRSS:\s+(\d+)/.exec(sleeper)?.[1] ?? 0);
    printTable("An idle workspace's processes (resident memory, KiB)", ["what", "KiB", "ratio to a bare sleep"], [
      [`idle workspace sandbox (${pids.length} processes of its uid)`, fmt(held), ratio(held, bare)],
      ["bare sleep (baseline)", fmt(bare), "1.00x"],
    ]);
  } finally {
    await idle.destroy();
  }
}
