import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LeasedJob } from "../src/builds/builds.js";
import { ImageBuilder } from "../src/images/image-builder.js";
import { ImageStore } from "../src/images/image-store.js";
import { Runner } from "../src/runner/runner.js";
import type { Sandbox } from "../src/sandbox/backend.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { buildWhen, hasEnded } from "./helpers/build-wait.js";
import { Client, createUser, signIn, startHarness, type Harness } from "./helpers/harness.js";
import { startTestRegistry } from "./helpers/oci-registry.js";
import { testLayoutsDir } from "./helpers/test-image.js";

// P10 through the server and a real runner: the cache key comes from the server with the job,
// and pull requests get read-only access.
let h: Harness;
let owner: Client;
let runner: Runner;
let store: ImageStore;
let layouts: string;
let cacheDir: string;
const repos = new Map<string, string>();

async function localCheckout(job: LeasedJob, sandbox: Sandbox): Promise<void> {
  const archive = execFileSync("tar", ["-C", repos.get(job.projectId)!, "-cf", "-", "."]);
  const status = await sandbox.exec({ argv: ["tar", "-xf", "-", "-C", "/workspace"] }, { stdin: archive });
  if (status.code !== 0) throw new Error("checkout failed");
}

function writeRepo(projectId: string, version: string): void {
  const dir = repos.get(projectId) ?? mkdtempSync(path.join(tmpdir(), "slipway-cache-repo-"));
  repos.set(projectId, dir);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, ".slipway.yml"), "services:\n  app:\n    build: .\n    cached: true\nsteps:\n  - name: show\n    service: app\n    command: cat /version\n");
  writeFileSync(path.join(dir, "Dockerfile"), `FROM debian:bookworm\nRUN echo ${version} > /version\n`);
}

async function runBuild(projectId: string, opts: { pullRequest?: number } = {}): Promise<string> {
  const created = await h.services.builds.create(projectId, { branch: "main", trigger: "api", ...opts });
  const build = await buildWhen(owner, created.id, hasEnded, 180_000);
  const log = (await owner.get(`/api/v1/builds/${created.id}/jobs/${build.jobs[0]!.id}/log?format=text`)).body;
  expect(build.status, log).toBe("success");
  return log;
}

const cacheEntries = () => spawnSync("find", [path.join(cacheDir, "projects"), "-type", "f"], { encoding: "utf8" }).stdout.split("\n").filter(Boolean).length;

beforeAll(async () => {
  h = await startHarness();
  await h.app.listen({ host: "127.0.0.1", port: 0 });
  await createUser(h, "cache@example.com");
  owner = await signIn(h, "cache@example.com");
  layouts = testLayoutsDir();
  cacheDir = mkdtempSync(path.join(tmpdir(), "slipway-cache-images-"));
  store = new ImageStore({ cacheDir, layoutsDir: layouts });
  const backend = new BwrapBackend();
  const { token } = await h.services.runners.register("cache runner");
  const url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  runner = new Runner({ server: url, token, backend, images: store, builder: new ImageBuilder(backend, store), imageCache: store.projectCaches, checkout: localCheckout });
  runner.start(1);
});

afterAll(async () => {
  await runner?.stop();
  await h?.close();
  for (const dir of [layouts, cacheDir, ...repos.values()]) rmSync(dir, { recursive: true, force: true });
});

describe("push steps through the server", () => {
  it("a branch build pushes with the project's DOCKERCFG secret and the build's fields in the tag; a pull request skips the push", async () => {
    const pushDir = mkdtempSync(path.join(tmpdir(), "slipway-pushed-"));
    const registry = await startTestRegistry({}, { pushDir, auth: { username: "ci", password: "registry-pass" } });
    const certStore = new ImageStore({ cacheDir, layoutsDir: layouts, registryCertDir: registry.certDir });
    const backend = new BwrapBackend();
    const { token } = await h.services.runners.register("push runner");
    const url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
    await runner.stop();
    runner = new Runner({ server: url, token, backend, images: certStore, builder: new ImageBuilder(backend, certStore), imageCache: certStore.projectCaches, push: (...args) => certStore.push(...args), checkout: localCheckout });
    runner.start(1);
    try {
      const projectId = (await owner.post("/api/v1/projects", { name: "pushed" })).json().id as string;
      const dir = mkdtempSync(path.join(tmpdir(), "slipway-push-repo-"));
      repos.set(projectId, dir);
      writeFileSync(path.join(dir, "codeship-services.yml"), "app:\n  build: .\n");
      writeFileSync(path.join(dir, "codeship-steps.yml"), `- service: app\n  type: push\n  image_name: ${registry.host}/acme/app\n  image_tag: "{{ .Branch }}-{{ .BuildNumber }}"\n`);
      writeFileSync(path.join(dir, "Dockerfile"), "FROM debian:bookworm\nRUN echo pushed > /pushed\n");
      const dockercfg = JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from("ci:registry-pass").toString("base64") } } });
      expect((await owner.put(`/api/v1/projects/${projectId}/secrets/DOCKERCFG`, { value: dockercfg })).statusCode).toBe(201);
      const log = await runBuild(projectId);
      expect(log).toContain(`pushed ${registry.host}/acme/app:main-1`);
      expect(log).not.toContain("registry-pass");
      const pr = await runBuild(projectId, { pullRequest: 3 });
      expect(pr).not.toContain("pushed ");
      const tags = (JSON.parse(readFileSync(path.join(pushDir, "acme/app/index.json"), "utf8")) as { manifests: Array<{ annotations: Record<string, string> }> }).manifests.map((m) => m.annotations["org.opencontainers.image.ref.name"]);
      expect(tags).toEqual(["main-1"]);
    } finally {
      await registry.close();
      rmSync(pushDir, { recursive: true, force: true });
    }
  });
});

describe("P10: image caches through the server", () => {
  it("P10: the runner gets the project's cache key with the job; a branch build writes, the next reuses, a pull request never writes", async () => {
    const projectId = (await owner.post("/api/v1/projects", { name: "cached" })).json().id as string;
    writeRepo(projectId, "one");
    expect(await runBuild(projectId)).toMatch(/^one$/m);
    expect(cacheEntries()).toBe(1);
    const again = await runBuild(projectId);
    expect(again).toContain("using the cached image");
    expect(again).toMatch(/^one$/m);
    writeRepo(projectId, "two");
    const pr = await runBuild(projectId, { pullRequest: 4 });
    expect(pr).toMatch(/^two$/m);
    expect(pr).not.toContain("using the cached image");
    expect(cacheEntries()).toBe(1);
    // The pull request still reads: back at "one", its image comes from the cache.
    writeRepo(projectId, "one");
    expect(await runBuild(projectId, { pullRequest: 5 })).toContain("using the cached image");
  });

  it("P10: the key is the project's own, only for the runner holding the job, and pull requests are told they may not write", async () => {
    const keyOf = async (projectId: string, pullRequest?: number) => {
      const { id: runnerId, token } = await h.services.runners.register(`r-${Math.random()}`);
      const client = new Client(h.app, { bearer: token });
      await h.services.builds.create(projectId, { branch: "main", trigger: "api", ...(pullRequest !== undefined && { pullRequest }) });
      const { jobId } = (await h.services.builds.lease(runnerId, 0))!;
      const stranger = new Client(h.app, { bearer: (await h.services.runners.register(`s-${Math.random()}`)).token });
      expect((await stranger.post(`/api/v1/runner/jobs/${jobId}/image-cache`, {})).statusCode).toBe(409);
      expect((await owner.post(`/api/v1/runner/jobs/${jobId}/image-cache`, {})).statusCode).toBe(401);
      const res = await client.post(`/api/v1/runner/jobs/${jobId}/image-cache`, {});
      expect(res.statusCode, res.body).toBe(200);
      await h.services.builds.finish(runnerId, jobId, { status: "success", reason: null });
      return res.json() as { key: string; write: boolean; maxAgeDays: number };
    };
    await runner.stop();
    const a = (await owner.post("/api/v1/projects", { name: "a" })).json().id as string;
    const b = (await owner.post("/api/v1/projects", { name: "b" })).json().id as string;
    const first = await keyOf(a);
    expect(first).toMatchObject({ write: true, maxAgeDays: 90 });
    expect(Buffer.from(first.key, "base64")).toHaveLength(32);
    expect((await keyOf(a)).key).toBe(first.key);
    expect((await keyOf(a, 9)).write).toBe(false);
    expect((await keyOf(b)).key).not.toBe(first.key);
  });
});
