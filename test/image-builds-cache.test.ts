import { randomBytes } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImageCache, type ImageCacheAccess } from "../src/images/image-cache.js";
import { lines } from "./helpers/pipeline.js";
import { blobsOf, sh, useImageBuildLab } from "./helpers/image-build-lab.js";

// P10: real image builds through a project's image cache.
const { build, sandboxOf } = useImageBuildLab();

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
