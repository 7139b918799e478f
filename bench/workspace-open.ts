import { fileURLToPath } from "node:url";
import { runModuleInNetns } from "../test/helpers/sandbox-network.js";
import { withGitLab } from "./git-lab.js";
import type { OpenInput, OpenOutput } from "./workspace-open-netns.js";
import { fmt, percentile, printTable, ratio } from "./support.js";

const ROUNDS = 8;
const NETNS_MODULE = fileURLToPath(import.meta.url).replace(/workspace-open\.(ts|js)$/, "workspace-open-netns.$1");
const CONFIG = 'image: host\nsteps:\n  - command: "true"\nworkspace:\n  tasks:\n    - command: echo ready\n';

/**
 * Cold open of a small repository: asking for a workspace → cloned over SSH with the project's
 * deploy key from a real sshd, its task started → the first byte of a new shell. Against the same
 * clone by plain git in the same namespace, with no server or sandbox.
 */
export async function workspaceOpenBench(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log("skipped: needs root, to make network namespaces, a system user and an sshd (as the workspace tests do)");
    return;
  }
  await withGitLab(CONFIG, async (lab) => {
    const input: OpenInput = { repositoryUrl: lab.repositoryUrl, authorizedKeys: lab.authorizedKeys, rounds: ROUNDS, workDir: lab.workDir, keyDir: lab.keyDir };
    const out = await runModuleInNetns<OpenInput, OpenOutput>(lab.runner, NETNS_MODULE, input, { timeoutMs: 900_000 });
    const row = (label: string, ms: number[], vs: string) => [label, fmt(percentile(ms, 50), 1), fmt(percentile(ms, 95), 1), ms.length, vs];
    printTable("cold open of a small repository → first byte of a shell in the workspace (ms)", ["", "p50", "p95", "runs", "p50 vs baseline"], [
      row("open: clone over SSH in a new sandbox, task started, shell opened", out.open, ratio(percentile(out.open, 50), percentile(out.gitClone, 50))),
      row("baseline: the same git clone, no sandbox", out.gitClone, ""),
    ]);
  });
}
