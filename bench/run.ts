import { cpus, totalmem } from "node:os";
import { apiBench } from "./api.js";
import { imageBuildsBench } from "./image-builds.js";
import { maskingBench } from "./masking.js";
import { sandboxBench } from "./sandbox.js";
import { liveLogBench } from "./live-log.js";
import { pushBench } from "./push.js";
import { secretBoxBench } from "./secret-box.js";
import { workspaceOpenBench } from "./workspace-open.js";
import { workspacesBench } from "./workspaces.js";

const benchmarks = [
  { name: "secret-box", title: "SecretBox seal+open vs raw node:crypto AES-256-GCM", run: secretBoxBench },
  { name: "api", title: "Authenticated API read vs bare Fastify route", run: apiBench },
  { name: "masking", title: "Log masking with 100 secrets vs unmasked pass-through", run: maskingBench },
  { name: "sandbox", title: "Sandbox create + exec + destroy vs bare bubblewrap", run: sandboxBench },
  { name: "live-log", title: "Live log latency: a line printed by a step → an SSE client", run: liveLogBench },
  { name: "image-builds", title: "Image build cold vs warm cache vs buildah as host root; built image unpack + first exec vs the host image", run: imageBuildsBench },
  { name: "workspace-open", title: "Cold open of a small repository to a running shell vs the same git clone", run: workspaceOpenBench },
  { name: "workspaces", title: "Workspace stop and resume with ~100 MB vs tar | zstd | openssl; an idle workspace's memory vs a bare sleep", run: workspacesBench },
  { name: "push", title: "Push (signed webhook) → first byte of the step's output, without and with a clone over SSH", run: pushBench },
];

/** `npm run bench` runs every benchmark; `npm run bench -- api` runs only the named ones. */
async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !benchmarks.some((b) => b.name === w));
  if (unknown.length > 0) {
    console.error(`unknown benchmark ${unknown.join(", ")}; known: ${benchmarks.map((b) => b.name).join(", ")}`);
    process.exitCode = 2;
    return;
  }
  const selected = wanted.length > 0 ? benchmarks.filter((b) => wanted.includes(b.name)) : benchmarks;

  console.log("Slipway benchmarks");
  console.log(`node ${process.version} ${process.platform}/${process.arch}, ${cpus().length} x ${cpus()[0]?.model.trim() ?? "unknown CPU"}, ${Math.round(totalmem() / 2 ** 30)} GiB`);
  console.log(`started ${new Date().toISOString()}; figures are for comparison on this machine only, not thresholds`);
  for (const bench of selected) {
    console.log(`\n=== ${bench.name}: ${bench.title} ===`);
    const start = Date.now();
    await bench.run();
    console.log(`(${((Date.now() - start) / 1000).toFixed(1)} s)`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
