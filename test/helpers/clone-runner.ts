import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Runner } from "../../src/runner/runner.js";
import { BwrapBackend } from "../../src/sandbox/bwrap-backend.js";
import { AUTHORIZED_KEY_OPTIONS, keyNeedle } from "./git-server.js";
import { createUser, signIn, startHarness, type Client } from "./harness.js";

// The entry point of a process run inside the test's "runner" network namespace (see
// runModuleInNetns): a real Slipway server on that namespace's loopback and a real Runner with its
// default checkout (git over SSH with the project's deploy key) and BwrapBackend sandboxes, whose
// only way out leads to the sshd in the "services" namespace.

export interface CloneRunInput {
  repositoryUrl: string;
  /** The git server's authorized_keys: the project's first deploy key is registered there. */
  authorizedKeys: string;
  builds: Array<{ branch: string; commit?: string; /** Replace the deploy key (the new one is not at the git server) before this build. */ rotateKeyFirst?: boolean }>;
}

export interface DeployKeyUsed {
  privateKey: string;
  publicKey: string;
  fingerprint: string;
}

export interface CloneRunOutput {
  builds: Array<{ status: string; reason: string | null; log: string; key: DeployKeyUsed }>;
}

const FINAL = ["success", "failed", "error", "canceled"];

async function finished(owner: Client, buildId: string): Promise<{ status: string; reason: string | null; jobs: Array<{ id: string }> }> {
  const until = Date.now() + 90_000;
  for (;;) {
    const b = (await owner.get(`/api/v1/builds/${buildId}`)).json();
    if (FINAL.includes(b.status)) return b;
    if (Date.now() > until) throw new Error(`build ${buildId} still ${b.status} after 90 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function main(input: CloneRunInput): Promise<CloneRunOutput> {
  const runtimeDir = mkdtempSync(path.join(tmpdir(), "slipway-clone-runner-"));
  const h = await startHarness();
  let runner: Runner | undefined;
  try {
    await h.app.listen({ host: "127.0.0.1", port: 0 });
    const url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
    await createUser(h, "owner@example.com");
    const owner = await signIn(h, "owner@example.com");
    const { token } = await h.services.runners.register("clone test runner");
    runner = new Runner({ server: url, token, backend: new BwrapBackend({ runtimeDir }), network: { mode: "outbound" }, onError: (err) => console.error(err) });
    runner.start(1);

    const project = (await owner.post("/api/v1/projects", { name: "app", repositoryUrl: input.repositoryUrl })).json().id as string;
    // Only the public half is needed to register the key at the git server, as an operator would.
    const registered = (await owner.get(`/api/v1/projects/${project}/deploy-key`)).json().publicKey as string;
    appendFileSync(input.authorizedKeys, `${AUTHORIZED_KEY_OPTIONS} ${registered}\n`);

    const builds: CloneRunOutput["builds"] = [];
    for (const spec of input.builds) {
      if (spec.rotateKeyFirst) await owner.post(`/api/v1/projects/${project}/deploy-key`);
      const key = await h.services.deployKeys.revealDeployKey(project);
      // The step searches for a piece of the key; it gets it encoded, so that its config holds no copy.
      await owner.put(`/api/v1/projects/${project}/secrets/KEY_PART`, { value: Buffer.from(keyNeedle(key.privateKey)).toString("base64") });
      const created = (await owner.post(`/api/v1/projects/${project}/builds`, { branch: spec.branch, ...(spec.commit && { commit: spec.commit }) })).json();
      const build = await finished(owner, created.id);
      let log = "";
      for (const job of build.jobs) log += (await owner.get(`/api/v1/builds/${created.id}/jobs/${job.id}/log?format=text`)).body;
      builds.push({ status: build.status, reason: build.reason, log, key });
    }
    return { builds };
  } finally {
    await runner?.stop();
    await h.close();
    rmSync(runtimeDir, { recursive: true, force: true });
  }
}
