import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createGitUser, makeRepos, startSshd } from "../test/helpers/git-server.js";
import { createLab, LAB } from "../test/helpers/sandbox-network.js";

/** A repository served over SSH by a real sshd, reached from a network namespace made for the bench. */
export interface BenchGitLab {
  /** The namespace to run the bench's server in: its only way out leads to the sshd. */
  runner: string;
  repositoryUrl: string;
  /** The head of main in the served repository. */
  commit: string;
  /** The sshd's authorized_keys: a project's deploy key is added to it by the bench. */
  authorizedKeys: string;
  /** For the namespace side's files; removed afterwards, even should that process be killed. */
  workDir: string;
  /** The same, on a tmpfs: for private keys, never on disk. */
  keyDir: string;
}

/**
 * Runs `fn` with a repository holding `pipeline` as its .slipway.yml, served over SSH in a second
 * network namespace, as the clone tests do (sandboxes cannot reach the host's loopback, P09).
 * Everything made is undone in reverse order, whatever fails.
 */
export async function withGitLab(pipeline: string, fn: (lab: BenchGitLab) => Promise<void>): Promise<void> {
  const undo: Array<() => unknown> = [];
  try {
    const lab = createLab();
    undo.push(() => lab.destroy());
    const root = mkdtempSync(path.join(tmpdir(), "slipway-bench-git-"));
    undo.push(() => rmSync(root, { recursive: true, force: true }));
    chmodSync(root, 0o755);
    const user = createGitUser(root);
    undo.push(() => user.remove());
    const urlOf = (repo: string) => `ssh://${user.name}@${LAB.allowed}:22${repo}`;
    const repos = makeRepos(root, pipeline, urlOf(path.join(root, "srv", "lib.git")), user);
    const authorizedKeys = path.join(root, "authorized_keys");
    writeFileSync(authorizedKeys, "");
    const sshd = await startSshd(lab.services, LAB.allowed, root, user, authorizedKeys);
    undo.push(() => sshd.stop());
    const keyDir = mkdtempSync("/dev/shm/slipway-bench-");
    undo.push(() => rmSync(keyDir, { recursive: true, force: true }));
    const workDir = path.join(root, "work");
    mkdirSync(workDir);
    await fn({ runner: lab.runner, repositoryUrl: urlOf(repos.app), commit: repos.commits.main, authorizedKeys, workDir, keyDir });
  } finally {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (err) {
        console.error("bench git lab cleanup:", err);
      }
    }
  }
}
