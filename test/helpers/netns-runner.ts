import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { BwrapBackend, type BwrapSandbox } from "../../src/sandbox/bwrap-backend.js";
import type { NetworkPolicy } from "../../src/sandbox/network.js";
import { greet, probe, sh, type ProbeResults, type Target } from "./sandbox-network.js";

// The entry point of a runner process started inside a test network namespace (see runInNetns):
// a real BwrapBackend whose sandboxes' slirp4netns, and so all their traffic, live in that namespace.

export interface Scenario {
  network: NetworkPolicy;
  probes: Target[];
  /** A step run between two rounds of probes (e.g. one that attacks the firewall). */
  step?: string;
}

export interface ScenarioResult {
  probes: ProbeResults;
  rules: string;
  step?: { code: number | null; out: string };
  probesAfter?: ProbeResults;
  rulesAfter?: string;
}

export interface RunnerInput {
  denyCidrs?: string[];
  /** A service of the runner's own machine listening on all its addresses at this port. */
  hostService?: { port: number; controls: string[] };
  scenarios: Scenario[];
}

export interface RunnerOutput {
  results: ScenarioResult[];
  /** What the runner itself got from its own service at each control address. */
  hostControls: Record<string, string>;
  /** Connections that service received from anything but the controls. */
  hostServiceHitsFromSandboxes: number;
}

export async function main(input: RunnerInput): Promise<RunnerOutput> {
  const runtimeDir = mkdtempSync(path.join(tmpdir(), "slipway-netns-runner-"));
  const backend = new BwrapBackend({ runtimeDir, denyCidrs: input.denyCidrs });
  let hits = 0;
  const server = createServer((c) => {
    hits++;
    c.end("hello runner-host\n");
  });
  const open: BwrapSandbox[] = [];
  try {
    const hostControls: Record<string, string> = {};
    if (input.hostService) {
      await new Promise<void>((resolve) => server.listen(input.hostService!.port, "0.0.0.0", resolve));
      for (const address of input.hostService.controls) hostControls[address] = await greet(address, input.hostService.port).catch((e: Error) => `failed ${e.message}`);
    }
    const controlHits = hits;
    const results: ScenarioResult[] = [];
    for (const scenario of input.scenarios) {
      const s = await backend.create({ image: { kind: "host" }, network: scenario.network });
      open.push(s);
      const result: ScenarioResult = { rules: await s.firewallRules(), probes: await probe(s, scenario.probes) };
      if (scenario.step !== undefined) {
        result.step = await sh(s, scenario.step);
        result.probesAfter = await probe(s, scenario.probes);
        result.rulesAfter = await s.firewallRules();
      }
      results.push(result);
      await s.destroy();
    }
    return { results, hostControls, hostServiceHitsFromSandboxes: hits - controlHits };
  } finally {
    await Promise.all(open.map((s) => s.destroy()));
    server.close();
    rmSync(runtimeDir, { recursive: true, force: true });
  }
}
