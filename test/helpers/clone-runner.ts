import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { SettingsInput } from "../../src/config/settings.js";
import { Runner, type RunnerOptions } from "../../src/runner/runner.js";
import { BwrapBackend } from "../../src/sandbox/bwrap-backend.js";
import { AUTHORIZED_KEY_OPTIONS, keyNeedle } from "./git-server.js";
import { buildWhen, hasEnded, type BuildSeen } from "./build-wait.js";
import { createUser, signIn, startHarness, type Client, type Harness } from "./harness.js";

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

export interface CloneWorld {
  h: Harness;
  owner: Client;
}

/**
 * A Slipway server on this namespace's loopback (on `port` if given, which its public URL then
 * names) and a Runner cloning over SSH, for `body` to use; both stop after.
 */
export async function withCloneServer<T>(body: (world: CloneWorld) => Promise<T>, opts: { settings?: SettingsInput; port?: number; runner?: Partial<RunnerOptions> } = {}): Promise<T> {
  const runtimeDir = mkdtempSync(path.join(tmpdir(), "slipway-clone-runner-"));
  const h = await startHarness(opts.settings);
  let runner: Runner | undefined;
  try {
    await h.app.listen({ host: "127.0.0.1", port: opts.port ?? 0 });
    const url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
    h.services.setPublicUrl(url);
    await createUser(h, "owner@example.com");
    const owner = await signIn(h, "owner@example.com");
    const { token } = await h.services.runners.register("clone test runner");
    runner = new Runner({ server: url, token, backend: new BwrapBackend({ runtimeDir }), network: { mode: "outbound" }, onError: (err) => console.error(err), ...opts.runner });
    runner.start(1);
    return await body({ h, owner });
  } finally {
    await runner?.stop();
    await h.close();
    rmSync(runtimeDir, { recursive: true, force: true });
  }
}

/** A project of the repository whose deploy key the git server lets in with `options` (git-shell by default). */
export async function projectAtGitServer(owner: Client, name: string, repositoryUrl: string, authorizedKeys: string, options = AUTHORIZED_KEY_OPTIONS): Promise<string> {
  const project = (await owner.post("/api/v1/projects", { name, repositoryUrl })).json().id as string;
  // Only the public half is needed to register the key at the git server, as an operator would.
  const registered = (await owner.get(`/api/v1/projects/${project}/deploy-key`)).json().publicKey as string;
  appendFileSync(authorizedKeys, `${options} ${registered}\n`);
  return project;
}

/** A build's whole log: every job's, in order. */
export async function buildLog(owner: Client, build: BuildSeen): Promise<string> {
  let log = "";
  for (const job of build.jobs) log += (await owner.get(`/api/v1/builds/${build.id}/jobs/${job.id}/log?format=text`)).body;
  return log;
}

export const main = (input: CloneRunInput): Promise<CloneRunOutput> =>
  withCloneServer(async ({ h, owner }) => {
    const project = await projectAtGitServer(owner, "app", input.repositoryUrl, input.authorizedKeys);
    const builds: CloneRunOutput["builds"] = [];
    for (const spec of input.builds) {
      if (spec.rotateKeyFirst) await owner.post(`/api/v1/projects/${project}/deploy-key`);
      const key = await h.services.deployKeys.revealDeployKey(project);
      // The step searches for a piece of the key; it gets it encoded, so that its config holds no copy.
      await owner.put(`/api/v1/projects/${project}/secrets/KEY_PART`, { value: Buffer.from(keyNeedle(key.privateKey)).toString("base64") });
      const created = (await owner.post(`/api/v1/projects/${project}/builds`, { branch: spec.branch, ...(spec.commit && { commit: spec.commit }) })).json();
      const build = await buildWhen(owner, created.id, hasEnded);
      builds.push({ status: build.status, reason: build.reason, log: await buildLog(owner, build), key });
    }
    return { builds };
  });
