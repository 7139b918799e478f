import { execFile } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { cloneArgv } from "../src/runner/git-checkout.js";

const execFileAsync = promisify(execFile);

/**
 * A baseline for benchmarks that clone: the very clone a runner or a workspace runs (same flags,
 * same URL, same deploy key), by this machine's git, with no server or sandbox around it.
 * `rounds` clones after one warm-up, ascending milliseconds.
 */
export async function plainClones(where: { repositoryUrl: string; keyDir: string; workDir: string }, privateKey: string, rounds: number): Promise<number[]> {
  const key = path.join(where.keyDir, "deploy_key");
  writeFileSync(key, privateKey.endsWith("\n") ? privateKey : `${privateKey}\n`, { mode: 0o600 });
  const env = {
    ...process.env,
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    // -F /dev/null: no ssh config of this machine's root user takes part.
    GIT_SSH_COMMAND: `ssh -F /dev/null -i ${key} -o IdentitiesOnly=yes -o UserKnownHostsFile=${path.join(where.keyDir, "known_hosts")} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=accept-new -o BatchMode=yes`,
  };
  const clones = path.join(where.workDir, "clones");
  mkdirSync(clones, { recursive: true });
  const argv = cloneArgv({ repositoryUrl: where.repositoryUrl, branch: "main", tag: null }).slice(0, -1);
  const cloneOnce = async (i: number) => {
    const dest = path.join(clones, String(i));
    const started = performance.now();
    await execFileAsync(argv[0]!, [...argv.slice(1), dest], { env, timeout: 60_000 });
    const ms = performance.now() - started;
    rmSync(dest, { recursive: true, force: true });
    return ms;
  };
  try {
    await cloneOnce(-1);
    const times: number[] = [];
    for (let i = 0; i < rounds; i++) times.push(await cloneOnce(i));
    return times.sort((a, b) => a - b);
  } finally {
    rmSync(key, { force: true });
  }
}
