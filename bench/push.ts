import { fileURLToPath } from "node:url";
import { runModuleInNetns } from "../test/helpers/sandbox-network.js";
import { withGitLab } from "./git-lab.js";
import { PIPELINE, type PushInput, type PushOutput } from "./push-netns.js";
import { fmt, percentile, printTable, ratio } from "./support.js";

const BUILDS = 15;
// Compiled or not, the namespace's side sits next to this file.
const NETNS_MODULE = fileURLToPath(import.meta.url).replace(/push\.(ts|js)$/, "push-netns.$1");

/**
 * A signed push to the webhook, over HTTP → the first byte of the step's output stored, with the
 * embedded runner: (a) with a local checkout, (b) cloning over SSH with the project's deploy key
 * from a real sshd. Sandboxes cannot reach the host's loopback (P09), so, as in the clone tests,
 * the server and runner run in a network namespace made here whose only way out leads to the sshd
 * in a second one. Baseline of (b): the same clone by plain git in the runner's namespace.
 */
export async function pushBench(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log("skipped: needs root, to make network namespaces, a system user and an sshd (as the clone tests do)");
    return;
  }
  await withGitLab(PIPELINE, async (lab) => {
    const input: PushInput = { repositoryUrl: lab.repositoryUrl, authorizedKeys: lab.authorizedKeys, commit: lab.commit, builds: BUILDS, workDir: lab.workDir, keyDir: lab.keyDir };
    const out = await runModuleInNetns<PushInput, PushOutput>(lab.runner, NETNS_MODULE, input, { timeoutMs: 900_000 });
    const row = (label: string, ms: number[], vs: string) => [label, fmt(percentile(ms, 50), 1), fmt(percentile(ms, 95), 1), ms.length, vs];
    printTable("signed push (HTTP) → first byte of the step's output stored, embedded runner with outbound sandbox network (ms; goal for (a): p50 ≤ 30)", ["", "p50", "p95", "runs", "p50 vs baseline"], [
      row("(a) no clone (local tar checkout)", out.noClone, ""),
      row("(b) clone of a small repository over SSH", out.clone, ratio(percentile(out.clone, 50), percentile(out.gitClone, 50))),
      row("baseline of (b): the same git clone, no sandbox", out.gitClone, ""),
    ]);
  });
}
