import { spawn } from "node:child_process";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { fmt, percentile, printTable, ratio, timeRounds } from "./support.js";

const ROUNDS = 40;

/** The baseline: bubblewrap alone, with the same namespaces, starting `true` and exiting. */
function bareBwrap(): Promise<void> {
  const args = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "/bin/true"];
  return new Promise((resolve, reject) => spawn("bwrap", args, { stdio: "ignore" }).on("close", (code) => (code === 0 ? resolve() : reject(new Error(`bwrap exited ${code}`)))));
}

/** Sandbox create + exec `true` + destroy vs a bare `bwrap … true`, p50 and p95 over the same number of rounds. */
export async function sandboxBench(): Promise<void> {
  const backend = new BwrapBackend();
  const full = await timeRounds(ROUNDS, async () => {
    const s = await backend.create({ image: { kind: "host" } });
    await s.exec({ argv: ["true"] });
    await s.destroy();
  });
  const execOnly: number[] = [];
  const s = await backend.create({ image: { kind: "host" } });
  execOnly.push(...(await timeRounds(ROUNDS, async () => void (await s.exec({ argv: ["true"] })))));
  await s.destroy();
  const bare = await timeRounds(ROUNDS, bareBwrap);
  printTable(`${ROUNDS} rounds each, after one warm-up (ms)`, ["what", "p50", "p95", "p50 ratio to bare bwrap"], [
    ["sandbox create + exec true + destroy", fmt(percentile(full, 50), 1), fmt(percentile(full, 95), 1), ratio(percentile(full, 50), percentile(bare, 50))],
    ["exec true in a running sandbox", fmt(percentile(execOnly, 50), 1), fmt(percentile(execOnly, 95), 1), ratio(percentile(execOnly, 50), percentile(bare, 50))],
    ["bare bwrap … true (baseline)", fmt(percentile(bare, 50), 1), fmt(percentile(bare, 95), 1), "1.00x"],
  ]);
}
