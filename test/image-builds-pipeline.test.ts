import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { ImageBuilder } from "../src/images/image-builder.js";
import { selectSteps } from "../src/pipeline/index.js";
import { PipelineRunner, type RunEvent, type RunOptions, type RunResult } from "../src/runner/pipeline-runner.js";
import { lines, validPipeline } from "./helpers/pipeline.js";
import { startTestRegistry } from "./helpers/oci-registry.js";
import { pushImage } from "../src/images/image-push.js";
import { useImageBuildLab } from "./helpers/image-build-lab.js";

// Real image builds as a pipeline runs them: built services, push steps.
const { lab, files } = useImageBuildLab();

/** Runs a repository's pipeline for a branch with the real builder; its output, and each event to `seen`. */
async function runPipeline(tree: Record<string, string>, options: Partial<RunOptions> & { branch?: string; seen?: (e: RunEvent) => void } = {}): Promise<{ result: RunResult; output: string }> {
  const { branch = "main", seen, ...rest } = options;
  const pipeline = validPipeline(tree);
  let output = "";
  const result = await new PipelineRunner({
    backend: lab.runBackend,
    images: lab.store,
    builder: lab.builder,
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
    const counting = { build: (...args: Parameters<ImageBuilder["build"]>) => (builds++, lab.builder.build(...args)) };
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
    // Other test files build at the same time: this run's image is the new in-memory dir holding the marker.
    const inMemory = () => readdirSync("/dev/shm").filter((n) => n.startsWith("slipway-built-"));
    const before = inMemory();
    let holding: string[] = [];
    const { result, output } = await runPipeline(tree, {
      seen: (e) => {
        if (e.type !== "step-end") return;
        const appeared = inMemory().filter((n) => !before.includes(n));
        holding = appeared.filter((n) => spawnSync("grep", ["-rlq", "--binary-files=text", marker, `/dev/shm/${n}`]).status === 0);
      },
    });
    expect(result.status, output).toBe("success");
    expect(output).toContain(`${marker}-source\n${marker}-generated`);
    expect(holding).toHaveLength(1);
    expect(existsSync(`/dev/shm/${holding[0]}`)).toBe(false);
    const places = [lab.cacheDir, tmpdir(), "/var/tmp", "/run/slipway"].filter((p) => existsSync(p));
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
