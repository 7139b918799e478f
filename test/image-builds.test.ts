import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImageBuilder, ImageBuildError, type ImageBuildRun } from "../src/images/image-builder.js";
import { ImageStore, type ResolvedImage } from "../src/images/image-store.js";
import type { Sandbox } from "../src/sandbox/backend.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { selectSteps } from "../src/pipeline/index.js";
import { PipelineRunner } from "../src/runner/pipeline-runner.js";
import { lines, validPipeline } from "./helpers/pipeline.js";
import { testLayoutsDir } from "./helpers/test-image.js";

// Real builds: rootless buildah in a builder sandbox, on top of the offline Debian test image.
let backend: BwrapBackend;
/** Runs the built images, in a runtime dir of its own, so that the builder's can be seen to be left empty. */
let runBackend: BwrapBackend;
let runtimeDir: string;
let layouts: string;
let cacheDir: string;
let store: ImageStore;
let builder: ImageBuilder;
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
afterAll(async () => {
  await Promise.all(open.map((s) => s.destroy()));
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
  const image = await builder.build({ dockerfile: "Dockerfile", context: ".", ...spec }, { checkout: files(tree), output: (d) => (output += d.toString()), ...run });
  return { image, output };
}

async function buildFails(tree: Record<string, string>, spec: Partial<Parameters<ImageBuilder["build"]>[0]> = {}, run: Partial<ImageBuildRun> = {}): Promise<string> {
  let output = "";
  const err = await builder.build({ dockerfile: "Dockerfile", context: ".", ...spec }, { checkout: files(tree), output: (d) => (output += d.toString()), ...run }).then(
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

const cacheEntries = () => readdirSync(cacheDir).sort();

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

  it("a link in the context that points outside it copies the link, never the host file", async () => {
    const { image } = await build({ Dockerfile: "FROM debian:bookworm\nCOPY . /ctx/\n" }, {}, {
      checkout: async (sandbox) => {
        await sandbox.exec({ argv: ["/bin/sh", "-c", "printf 'FROM debian:bookworm\\nCOPY . /ctx/\\n' > /workspace/Dockerfile && ln -s /etc/shadow /workspace/shadow && ln -s ../../../../etc/passwd /workspace/up"] });
      },
    });
    const s = await sandboxOf(image);
    expect(await sh(s, "readlink /ctx/shadow /ctx/up")).toBe("/etc/shadow\n../../../../etc/passwd\n");
  });

  it("a build that fills its filesystem fails with what to do, and leaves nothing behind", async () => {
    const before = cacheEntries();
    const message = await buildFails({ Dockerfile: "FROM debian:bookworm\nRUN head -c 400M /dev/zero > /big\n" }, {}, { limits: { tmpfsBytes: 600 * 1024 ** 2 } });
    expect(message).toMatch(/raise its tmpfs size|no space left/i);
    expect(cacheEntries()).toEqual(before);
    expect(readdirSync(runtimeDir)).toEqual([]);
  });
});

describe("built services in a pipeline", () => {
  it("a Codeship service with build: runs its steps in the image built from its Dockerfile, built once, with its secret args masked", async () => {
    const token = `tok-${randomBytes(10).toString("hex")}`;
    const tree = {
      "codeship-services.yml": lines("app:", "  build:", "    context: app", "    dockerfile: Dockerfile.ci", "    args:", "      FLAVOUR: plain"),
      "codeship-steps.yml": lines("- type: parallel", "  service: app", "  steps:", "    - name: one", "      command: cat /flavour", "    - name: two", "      command: cat /flavour"),
      "app/Dockerfile.ci": lines("FROM debian:bookworm", "ARG FLAVOUR", "ARG TOKEN", 'RUN echo "$FLAVOUR" > /flavour && echo "token is $TOKEN"'),
    };
    const pipeline = validPipeline(tree);
    let output = "";
    let builds = 0;
    const counting = { build: (...args: Parameters<ImageBuilder["build"]>) => (builds++, builder.build(...args)) };
    const result = await new PipelineRunner({
      backend: runBackend,
      images: store,
      builder: counting,
      buildArgs: { app: { TOKEN: token } },
      pipeline,
      nodes: selectSteps(pipeline, { branch: "main" }),
      checkout: files(tree),
      env: {},
      secrets: [token],
      onEvent: (e) => {
        if (e.type === "output") output += e.data.toString();
      },
    }).run();
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

  it("a build that fails fails the steps that need it, at the Dockerfile's line", async () => {
    const tree = {
      ".slipway.yml": lines("services:", "  app:", "    build: .", "steps:", "  - name: uses-app", "    service: app", "    command: exit 0"),
      Dockerfile: lines("FROM debian:bookworm", "RUN exit 7"),
    };
    const pipeline = validPipeline(tree);
    const result = await new PipelineRunner({ backend: runBackend, images: store, builder, pipeline, nodes: selectSteps(pipeline, { branch: "main" }), checkout: files(tree), env: {}, secrets: [], onEvent: () => undefined }).run();
    expect(result.steps).toMatchObject([{ name: "uses-app", status: "error", reason: expect.stringMatching(/^Dockerfile:2:1: .*exit status 7/) }]);
  });
});
