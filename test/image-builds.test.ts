import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ImageBuilder, ImageBuildError, type ImageBuildRun } from "../src/images/image-builder.js";
import { ImageCache, type ImageCacheAccess } from "../src/images/image-cache.js";
import { ImageStore, inMemoryImageStore, type ResolvedImage } from "../src/images/image-store.js";
import type { Sandbox } from "../src/sandbox/backend.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { selectSteps } from "../src/pipeline/index.js";
import { PipelineRunner, type RunEvent, type RunOptions, type RunResult } from "../src/runner/pipeline-runner.js";
import { lines, validPipeline } from "./helpers/pipeline.js";
import { startTestRegistry } from "./helpers/oci-registry.js";
import { pushImage } from "../src/images/image-push.js";
import { testImageLayout, testLayoutsDir } from "./helpers/test-image.js";

// Real builds: rootless buildah in a builder sandbox, on top of the offline Debian test image.
let backend: BwrapBackend;
/** Runs the built images, in a runtime dir of its own, so that the builder's can be seen to be left empty. */
let runBackend: BwrapBackend;
let runtimeDir: string;
let layouts: string;
let cacheDir: string;
let store: ImageStore;
let builder: ImageBuilder;
let built: ReturnType<typeof inMemoryImageStore>;
const open: Sandbox[] = [];

beforeAll(() => {
  runtimeDir = mkdtempSync(path.join(tmpdir(), "slipway-build-sbx-"));
  backend = new BwrapBackend({ runtimeDir });
  runBackend = new BwrapBackend({ runtimeDir: mkdtempSync(path.join(tmpdir(), "slipway-build-run-")) });
  layouts = testLayoutsDir();
  cacheDir = mkdtempSync(path.join(tmpdir(), "slipway-build-cache-"));
  store = new ImageStore({ cacheDir, layoutsDir: layouts });
  builder = new ImageBuilder(backend, store);
});
// Each test's built images in memory of their own, gone with the sandboxes that ran them.
beforeEach(() => {
  built = inMemoryImageStore();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.destroy()));
  built.dispose();
});
afterAll(() => {
  for (const dir of [layouts, cacheDir, runtimeDir]) rmSync(dir, { recursive: true, force: true });
});

/** A checkout that writes these files (path → content) into /workspace. */
function files(tree: Record<string, string>): ImageBuildRun["checkout"] {
  return async (sandbox) => {
    for (const [file, content] of Object.entries(tree)) {
      const status = await sandbox.exec({ argv: ["mkdir", "-p", path.posix.dirname(`/workspace/${file}`)] });
      expect(status.code).toBe(0);
      await sandbox.writeFile(`/workspace/${file}`, content);
    }
  };
}

interface Built {
  image: ResolvedImage;
  output: string;
}

async function build(tree: Record<string, string>, spec: Partial<Parameters<ImageBuilder["build"]>[0]> = {}, run: Partial<ImageBuildRun> = {}): Promise<Built> {
  let output = "";
  const image = await builder.build({ dockerfile: "Dockerfile", context: ".", ...spec }, { into: built.store, checkout: files(tree), output: (d) => (output += d.toString()), ...run });
  return { image, output };
}

async function buildFails(tree: Record<string, string>, spec: Partial<Parameters<ImageBuilder["build"]>[0]> = {}, run: Partial<ImageBuildRun> = {}): Promise<string> {
  let output = "";
  const err = await builder.build({ dockerfile: "Dockerfile", context: ".", ...spec }, { into: built.store, checkout: files(tree), output: (d) => (output += d.toString()), ...run }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, output).toBeInstanceOf(ImageBuildError);
  return (err as Error).message;
}

async function sandboxOf(image: ResolvedImage): Promise<Sandbox> {
  const s = await runBackend.create({ image: { kind: "rootfs", path: image.rootfs }, env: image.env });
  open.push(s);
  return s;
}

async function sh(s: Sandbox, script: string): Promise<string> {
  let out = "";
  await s.exec({ argv: ["/bin/sh", "-c", script] }, { stdout: (d) => (out += d), stderr: (d) => (out += d) });
  return out;
}

/** Every blob of the image's layout as bytes a search can read: layers decompressed. */
function blobsOf(image: ResolvedImage): Buffer[] {
  const dir = path.join(image.layout!, "blobs", "sha256");
  return readdirSync(dir).map((name) => {
    const blob = readFileSync(path.join(dir, name));
    return blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : blob;
  });
}

const cacheEntries = () => [...readdirSync(cacheDir), ...readdirSync(built.dir)].sort();

describe("image builds", () => {
  it("builds a multi-stage Dockerfile with args, .dockerignore, ENV, WORKDIR and USER, and the image runs as a step's image", async () => {
    const { image, output } = await build(
      {
        Dockerfile: [
          "ARG GREETING=hello",
          "FROM debian:bookworm AS tools",
          "ARG GREETING",
          'RUN echo "$GREETING from the first stage" > /greeting',
          "",
          "FROM debian:bookworm",
          "ENV APP_HOME=/app",
          "WORKDIR $APP_HOME",
          "COPY --from=tools /greeting ./greeting",
          "COPY . ./src/",
          "RUN useradd -u 1234 app && touch owned && chown app owned",
          "USER app",
          "RUN id -u > /tmp/whoami-at-build",
          'CMD ["cat", "/app/greeting"]',
        ].join("\n"),
        ".dockerignore": "secret.txt\nnotes/**\n!notes/keep.md\n",
        "secret.txt": "must not be copied",
        "notes/drop.md": "dropped",
        "notes/keep.md": "kept",
        "app.txt": "application",
      },
      { args: { GREETING: "bonjour" } },
    );
    expect(output).toMatch(/STEP \d+\/\d+: RUN useradd/);
    expect(image.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(image.env.APP_HOME).toBe("/app");
    const s = await sandboxOf(image);
    expect(await sh(s, "cat /app/greeting")).toBe("bonjour from the first stage\n");
    expect(await sh(s, "cat /app/src/app.txt /app/src/notes/keep.md")).toBe("applicationkept");
    expect(await sh(s, "ls /app/src")).not.toMatch(/secret\.txt/);
    expect(await sh(s, "ls /app/src/notes")).toBe("keep.md\n");
    expect(await sh(s, "cat /tmp/whoami-at-build")).toBe("1234\n");
    // Steps see every owner but root as nobody; the image itself keeps the owner.
    expect(statSync(path.join(image.rootfs, "app", "owned")).uid).toBe(1234);
  });

  it("P17: a secret build arg and secret mount reach the build but no layer, config or history of the image", async () => {
    const marker = `secret-${randomBytes(12).toString("hex")}`;
    const { image, output } = await build(
      {
        Dockerfile: [
          "FROM debian:bookworm",
          "ARG TOKEN",
          'RUN test "$TOKEN" = "' + marker.slice(0, 7) + '$(echo ' + marker.slice(7) + ')" && echo arg-seen',
          'RUN --mount=type=secret,id=TOKEN test "$(cat /run/secrets/TOKEN)" = "$TOKEN" && echo mount-seen > /mount-seen',
        ].join("\n"),
      },
      { secretArgs: { TOKEN: marker } },
    );
    expect(output).toContain("arg-seen");
    expect(output).not.toContain(marker);
    const blobs = blobsOf(image);
    expect(blobs.length).toBeGreaterThanOrEqual(3);
    for (const blob of blobs) expect(blob.includes(marker)).toBe(false);
    // Control: the search reads the layers, as the marker of the secret mount's step is found.
    expect(blobs.some((b) => b.includes("mount-seen"))).toBe(true);
    expect(await sh(await sandboxOf(image), "cat /mount-seen; cat /run/secrets/TOKEN 2>&1")).toMatch(/^mount-seen\n.*No such file/);
  });
});

describe("pinned base images", () => {
  it("a FROM pinned by digest builds from exactly that image; another digest is refused, naming both", async () => {
    const index = JSON.parse(readFileSync(path.join(testImageLayout(), "index.json"), "utf8")) as { manifests: Array<{ digest: string }> };
    const digest = index.manifests[0]!.digest;
    const { image } = await build({ Dockerfile: `FROM debian:bookworm@${digest}\nRUN echo pinned > /pinned\n` });
    expect(await sh(await sandboxOf(image), "cat /pinned")).toBe("pinned\n");
    const other = `sha256:${"0".repeat(64)}`;
    await expect(build({ Dockerfile: `FROM debian:bookworm@${other}\n` })).rejects.toThrow(new RegExp(`found digest ${digest}, not the one the config pins`));
  });
});

describe("image builds that fail", () => {
  it("a failing RUN fails at its Dockerfile line; nothing is left in the image store and the sandbox is gone", async () => {
    const before = cacheEntries();
    const message = await buildFails({ Dockerfile: "FROM debian:bookworm\nRUN true\n  RUN exit 3\nRUN true\n" });
    expect(message).toMatch(/^Dockerfile:3:3: .*exit status 3/);
    expect(cacheEntries()).toEqual(before);
    expect(readdirSync(runtimeDir)).toEqual([]);
  });

  it("the line of a failing step is found in a multi-stage build", async () => {
    const message = await buildFails({ Dockerfile: "FROM debian:bookworm AS a\nRUN true\nFROM debian:bookworm\nCOPY --from=a /etc/hostname /x\nRUN false\n" });
    expect(message).toMatch(/^Dockerfile:5:1: .*exit status 1/);
  });

  it("an unsupported instruction, a COPY from outside the context and a missing Dockerfile fail before anything runs", async () => {
    expect(await buildFails({ Dockerfile: "FROM debian:bookworm\nONBUILD RUN true\n" })).toMatch(/^Dockerfile:2:1: error: .*ONBUILD/);
    expect(await buildFails({ Dockerfile: "FROM debian:bookworm\nCOPY ../etc/passwd /x\n" })).toMatch(/^Dockerfile:2:\d+: error: .*outside the build context/);
    expect(await buildFails({ "app/Dockerfile": "FROM debian:bookworm\n" }, { dockerfile: "Dockerfile" })).toMatch(/Dockerfile: the Dockerfile does not exist/);
  });

  it("a Dockerfile that is a link to /dev/zero (or any other non-file) is refused at once, not read forever", async () => {
    const message = await buildFails({}, {}, { checkout: async (sandbox) => void (await sandbox.exec({ argv: ["ln", "-s", "/dev/zero", "/workspace/Dockerfile"] })) });
    expect(message).toMatch(/^Dockerfile: the Dockerfile does not exist in this commit \(or is not a file\)/);
  });

  it("a link in the context that points outside it copies the link, never the host file", async () => {
    const { image } = await build({ Dockerfile: "FROM debian:bookworm\nCOPY . /ctx/\n" }, {}, {
      checkout: async (sandbox) => {
        await sandbox.exec({ argv: ["/bin/sh", "-c", "printf 'FROM debian:bookworm\\nCOPY . /ctx/\\n' > /workspace/Dockerfile && ln -s /etc/shadow /workspace/shadow && ln -s ../../../../etc/passwd /workspace/up"] });
      },
    });
    const s = await sandboxOf(image);
    expect(await sh(s, "readlink /ctx/shadow /ctx/up")).toBe("/etc/shadow\n../../../../etc/passwd\n");
  });

  it("a build that exhausts its memory fails at its line with what happened", async () => {
    const message = await buildFails({ Dockerfile: "FROM debian:bookworm\nRUN true\nRUN head -c 900M /dev/zero | tail -c 800M > /dev/null\n" }, {}, { limits: { memoryBytes: 512 * 1024 ** 2 } });
    expect(message).toMatch(/^Dockerfile:3:1: exit status 137 \(killed: most likely out of memory\)/);
  });

  it("a build that fills its filesystem fails with what to do, and leaves nothing behind", async () => {
    const before = cacheEntries();
    const message = await buildFails({ Dockerfile: "FROM debian:bookworm\nRUN head -c 400M /dev/zero > /big\n" }, {}, { limits: { tmpfsBytes: 600 * 1024 ** 2 } });
    expect(message).toMatch(/raise its tmpfs size|no space left/i);
    expect(cacheEntries()).toEqual(before);
    expect(readdirSync(runtimeDir)).toEqual([]);
  });
});

describe("P10: the image cache of a project", () => {
  const access = (over: Partial<ImageCacheAccess> = {}): ImageCacheAccess => ({ key: projectKey, project: "project-a", branch: "feature", fallbackBranch: "main", write: true, maxAgeMs: 90 * 86_400_000, ...over });
  let cache: ImageCache;
  let cacheRoot: string;
  let projectKey: Buffer;
  beforeAll(() => {
    cacheRoot = mkdtempSync(path.join(tmpdir(), "slipway-project-caches-"));
    cache = new ImageCache(cacheRoot);
    projectKey = randomBytes(32);
  });
  afterAll(() => rmSync(cacheRoot, { recursive: true, force: true }));

  const marker = `p10-${randomBytes(8).toString("hex")}`;
  const tree = (version: string) => ({ Dockerfile: lines("FROM debian:bookworm", "COPY code.txt /code.txt", `RUN sleep 1 && echo ${version} > /version`), "code.txt": `${marker}\n` });
  const cachedBuild = async (version: string, over: Partial<ImageCacheAccess> = {}, extra: Record<string, string> = {}) => {
    const started = Date.now();
    const result = await build({ ...tree(version), ...extra }, {}, { cache: { cache, access: access(over) } });
    return { ...result, ms: Date.now() - started, hit: result.output.includes("using the cached image") };
  };
  const entries = () => spawnSync("find", [cacheRoot, "-type", "f"], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);

  it("P10: a second build with the same inputs comes from the cache, saving time; a changed Dockerfile builds again; entries are ciphertext", async () => {
    const cold = await cachedBuild("one");
    expect(cold.hit).toBe(false);
    expect(entries()).toHaveLength(1);
    const warm = await cachedBuild("one");
    expect(warm.hit).toBe(true);
    expect(warm.image.digest).toBe(cold.image.digest);
    console.log(`image cache: cold build ${cold.ms} ms, warm ${warm.ms} ms`);
    expect(await sh(await sandboxOf(warm.image), "cat /version /code.txt")).toBe(`one\n${marker}\n`);
    const changed = await cachedBuild("two");
    expect(changed.hit).toBe(false);
    expect(entries()).toHaveLength(2);
    const found = spawnSync("grep", ["-rl", "--binary-files=text", marker, cacheRoot], { encoding: "utf8" });
    expect(found.stdout).toBe("");
    // Control: the marker is in the image's own (unsealed) layers.
    expect(blobsOf(warm.image).some((b) => b.includes(marker))).toBe(true);
  }, 300_000);

  it("P10: a pull request reads the cache but never writes it; another branch falls back to main; another project sees nothing", async () => {
    const before = entries();
    const pr = await cachedBuild("three", { write: false });
    expect(pr.hit).toBe(false);
    expect(entries()).toEqual(before);
    // What the pull request built was not kept: the branch builds it afresh.
    expect((await cachedBuild("three")).hit).toBe(false);
    // The pull request reads what its branch has.
    expect((await cachedBuild("three", { write: false })).hit).toBe(true);
    // A branch with nothing of its own reads main's entries, not another branch's.
    await cachedBuild("four", { branch: "main" });
    expect((await cachedBuild("four", { branch: "other", write: false })).hit).toBe(true);
    expect((await cachedBuild("three", { branch: "other", fallbackBranch: "release", write: false })).hit).toBe(false);
    // Same inputs, another project (its own key): a miss, and its entry is apart.
    const count = entries().length;
    expect((await cachedBuild("four", { branch: "main", project: "project-b", key: randomBytes(32) })).hit).toBe(false);
    expect(entries()).toHaveLength(count + 1);
  }, 300_000);

  it("P10: a file the Dockerfile does not copy does not count; a copied one, or .dockerignore, does", async () => {
    expect((await cachedBuild("six", {}, { "README.md": "first" })).hit).toBe(false);
    expect((await cachedBuild("six", {}, { "README.md": "second" })).hit).toBe(true);
    expect((await cachedBuild("six", {}, { "README.md": "second", "code.txt": "changed" })).hit).toBe(false);
    expect((await cachedBuild("six", {}, { "README.md": "second", "code.txt": "changed", ".dockerignore": "README.md" })).hit).toBe(false);
  }, 300_000);

  it("P10: a damaged, moved or expired entry is a miss (and goes), never a wrong image", async () => {
    await cachedBuild("five");
    const [file] = entries().filter((f) => Date.now() - statSync(f).mtimeMs < 60_000).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
    const bytes = readFileSync(file!);
    bytes[bytes.length - 100]! ^= 1;
    writeFileSync(file!, bytes);
    expect((await cachedBuild("five")).hit).toBe(false);
    expect((await cachedBuild("five")).hit).toBe(true);
    const old = new Date(Date.now() - 100 * 86_400_000);
    for (const f of entries()) utimesSync(f, old, old);
    expect((await cachedBuild("five")).hit).toBe(false);
  }, 300_000);
});

/** Runs a repository's pipeline for a branch with the real builder; its output, and each event to `seen`. */
async function runPipeline(tree: Record<string, string>, options: Partial<RunOptions> & { branch?: string; seen?: (e: RunEvent) => void } = {}): Promise<{ result: RunResult; output: string }> {
  const { branch = "main", seen, ...rest } = options;
  const pipeline = validPipeline(tree);
  let output = "";
  const result = await new PipelineRunner({
    backend: runBackend,
    images: store,
    builder,
    pipeline,
    nodes: selectSteps(pipeline, { branch }),
    checkout: files(tree),
    env: {},
    secrets: [],
    onEvent: (e) => {
      if (e.type === "output") output += e.data.toString();
      seen?.(e);
    },
    ...rest,
  }).run();
  return { result, output };
}

describe("built services in a pipeline", () => {
  it("a Codeship service with build: runs its steps in the image built from its Dockerfile, built once, with its secret args masked", async () => {
    const token = `tok-${randomBytes(10).toString("hex")}`;
    const tree = {
      "codeship-services.yml": lines("app:", "  build:", "    context: app", "    dockerfile: Dockerfile.ci", "    args:", "      FLAVOUR: plain"),
      "codeship-steps.yml": lines("- type: parallel", "  service: app", "  steps:", "    - name: one", "      command: cat /flavour", "    - name: two", "      command: cat /flavour"),
      "app/Dockerfile.ci": lines("FROM debian:bookworm", "ARG FLAVOUR", "ARG TOKEN", 'RUN echo "$FLAVOUR" > /flavour && echo "token is $TOKEN"'),
    };
    let builds = 0;
    const counting = { build: (...args: Parameters<ImageBuilder["build"]>) => (builds++, builder.build(...args)) };
    const { result, output } = await runPipeline(tree, { builder: counting, buildArgs: { app: { TOKEN: token } }, secrets: [token] });
    expect(result.steps.map((s) => [s.name, s.status, s.reason]).sort()).toEqual([
      ["one", "success", undefined],
      ["two", "success", undefined],
    ]);
    expect(builds).toBe(1);
    expect(output.match(/^plain$/gm)).toHaveLength(2);
    expect(output).toContain("building the image of service app from app/Dockerfile.ci");
    expect(output).toContain("token is ***");
    expect(output).not.toContain(token);
  });

  it("P03: a built image holds the project's code, so it lives in memory for the run only: nothing of it reaches the runner's disk", async () => {
    const marker = `p03-built-${randomBytes(12).toString("hex")}`;
    const tree = {
      ".slipway.yml": lines("services:", "  app:", "    build: .", "steps:", "  - name: uses-app", "    service: app", "    command: cat /code/source.txt /generated"),
      Dockerfile: lines("FROM debian:bookworm", "COPY source.txt /code/", `RUN echo ${marker}-generated > /generated`),
      "source.txt": `${marker}-source\n`,
    };
    const inMemory = () => readdirSync("/dev/shm").filter((n) => n.startsWith("slipway-built-")).sort();
    const before = inMemory();
    let during: string[] = [];
    const { result, output } = await runPipeline(tree, { seen: (e) => e.type === "step-end" && (during = inMemory()) });
    expect(result.status, output).toBe("success");
    expect(output).toContain(`${marker}-source\n${marker}-generated`);
    expect(during.length).toBe(before.length + 1);
    expect(inMemory()).toEqual(before);
    const places = [cacheDir, tmpdir(), "/var/tmp", "/run/slipway"].filter((p) => existsSync(p));
    const found = spawnSync("grep", ["-rl", "--binary-files=text", "--no-messages", "-s", marker, ...places], { encoding: "utf8", timeout: 120_000 });
    expect(found.stdout.trim()).toBe("");
  });

  it("a push step publishes the built image under its rendered tag with the project's registry credentials; wrong ones fail it with what to do", async () => {
    const pushDir = mkdtempSync(path.join(tmpdir(), "slipway-pushed-"));
    const registry = await startTestRegistry({}, { pushDir, auth: { username: "ci", password: "s3cret-pass" } });
    try {
      const tree = {
        "codeship-services.yml": lines("app:", "  build: ."),
        "codeship-steps.yml": lines(
          "- service: app",
          "  command: cat /built",
          "- service: app",
          "  type: push",
          `  image_name: ${registry.host}/acme/app`,
          '  image_tag: \'{{ .Branch }}-{{ printf "%.7s" .CommitID }}\'',
        ),
        Dockerfile: lines("FROM debian:bookworm", "RUN echo built-for-push > /built"),
      };
      const fields = { Branch: "feature/x", CommitID: "0123456789abcdef0123456789abcdef01234567", CommitMessage: "m", CommitDescription: "", CommitterName: "n", CommitterEmail: "e@x", CommitterUsername: "n", BuildID: "b1", BuildNumber: "1", RepoName: "app", ProjectID: "p1", Timestamp: "1764700000", Ref: "feature/x" };
      const dockercfg = (password: string) => JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`ci:${password}`).toString("base64") } } });
      const push = (layout: string, name: string, tag: string, cfg?: string) => pushImage(layout, { imageName: name, tag, ...(cfg && { dockercfg: cfg }), certDir: registry.certDir });
      const runWith = (password: string) => runPipeline(tree, { branch: "feature/x", secrets: [dockercfg(password)], publish: { fields, dockercfg: dockercfg(password), push } });
      const ok = await runWith("s3cret-pass");
      expect(ok.result.steps.map((st) => st.status), ok.output).toEqual(["success", "success"]);
      expect(ok.output).toContain(`pushed ${registry.host}/acme/app:feature-x-0123456`);
      const index = JSON.parse(readFileSync(path.join(pushDir, "acme/app/index.json"), "utf8")) as { manifests: Array<{ annotations: Record<string, string> }> };
      expect(index.manifests.map((m) => m.annotations["org.opencontainers.image.ref.name"])).toEqual(["feature-x-0123456"]);
      const pushedBlobs = readdirSync(path.join(pushDir, "acme/app/blobs/sha256")).map((b) => readFileSync(path.join(pushDir, "acme/app/blobs/sha256", b)));
      expect(pushedBlobs.some((b) => b[0] === 0x1f && gunzipSync(b).includes("built-for-push"))).toBe(true);
      const refused = await runWith("wrong");
      expect(refused.result.steps[1]).toMatchObject({ status: "failed", reason: expect.stringMatching(/could not push .*check the registry credentials in the project secret DOCKERCFG/) });
      expect(refused.output).not.toContain("wrong");
    } finally {
      await registry.close();
      rmSync(pushDir, { recursive: true, force: true });
    }
  });

  it("a Dockerfile can start from the image another service builds (its build.image), built first; services building from each other fail clearly", async () => {
    const tree = {
      "codeship-services.yml": lines("base:", "  build:", "    context: base", "    image: acme/base", "app:", "  build:", "    context: app", "    image: acme/app"),
      "codeship-steps.yml": lines("- service: app", "  command: cat /from-base /from-app"),
      "base/Dockerfile": lines("FROM debian:bookworm", "RUN echo from base > /from-base"),
      "app/Dockerfile": lines("FROM acme/base:latest", "RUN echo from app > /from-app"),
    };
    const { result, output } = await runPipeline(tree);
    expect(result.status, output).toBe("success");
    expect(output).toContain("from base\nfrom app\n");
    const cyclic = { ...tree, "base/Dockerfile": lines("FROM acme/app", "RUN true") };
    const failed = await runPipeline(cyclic);
    expect(failed.result.steps[0]).toMatchObject({ status: "error", reason: expect.stringMatching(/services app → base → app build from each other's images/) });
  });

  it("a build that fails fails the steps that need it, at the Dockerfile's line", async () => {
    const tree = {
      ".slipway.yml": lines("services:", "  app:", "    build: .", "steps:", "  - name: uses-app", "    service: app", "    command: exit 0"),
      Dockerfile: lines("FROM debian:bookworm", "RUN exit 7"),
    };
    const { result } = await runPipeline(tree);
    expect(result.steps).toMatchObject([{ name: "uses-app", status: "error", reason: expect.stringMatching(/^Dockerfile:2:1: .*exit status 7/) }]);
  });
});
