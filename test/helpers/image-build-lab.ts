import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, afterEach, beforeAll, beforeEach, expect } from "vitest";
import { ImageBuilder, ImageBuildError, type ImageBuildRun } from "../../src/images/image-builder.js";
import { ImageStore, inMemoryImageStore, type ResolvedImage } from "../../src/images/image-store.js";
import type { Sandbox } from "../../src/sandbox/backend.js";
import { BwrapBackend } from "../../src/sandbox/bwrap-backend.js";
import { testLayoutsDir } from "./test-image.js";

// Real builds: rootless buildah in a builder sandbox, on top of the offline Debian test image.
// The image build tests are in three files, so that test workers share them.

export interface ImageBuildLab {
  backend: BwrapBackend;
  /** Runs the built images, in a runtime dir of its own, so that the builder's can be seen to be left empty. */
  runBackend: BwrapBackend;
  runtimeDir: string;
  cacheDir: string;
  store: ImageStore;
  builder: ImageBuilder;
  /** This test's built images, in memory, gone with the sandboxes that ran them. */
  built: ReturnType<typeof inMemoryImageStore>;
}

export interface Built {
  image: ResolvedImage;
  output: string;
}

/** Sets up the builder for the test file that calls it (in its hooks), with what its tests use. */
export function useImageBuildLab() {
  const lab = {} as ImageBuildLab;
  let layouts = "";
  const open: Sandbox[] = [];
  beforeAll(() => {
    lab.runtimeDir = mkdtempSync(path.join(tmpdir(), "slipway-build-sbx-"));
    lab.backend = new BwrapBackend({ runtimeDir: lab.runtimeDir });
    lab.runBackend = new BwrapBackend({ runtimeDir: mkdtempSync(path.join(tmpdir(), "slipway-build-run-")) });
    layouts = testLayoutsDir();
    lab.cacheDir = mkdtempSync(path.join(tmpdir(), "slipway-build-cache-"));
    lab.store = new ImageStore({ cacheDir: lab.cacheDir, layoutsDir: layouts });
    lab.builder = new ImageBuilder(lab.backend, lab.store);
  });
  beforeEach(() => {
    lab.built = inMemoryImageStore();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.destroy()));
    lab.built.dispose();
  });
  afterAll(() => {
    for (const dir of [layouts, lab.cacheDir, lab.runtimeDir]) rmSync(dir, { recursive: true, force: true });
  });

  /** A checkout that writes these files (path → content) into /workspace. */
  const files = (tree: Record<string, string>): ImageBuildRun["checkout"] => async (sandbox) => {
    for (const [file, content] of Object.entries(tree)) {
      const status = await sandbox.exec({ argv: ["mkdir", "-p", path.posix.dirname(`/workspace/${file}`)] });
      expect(status.code).toBe(0);
      await sandbox.writeFile(`/workspace/${file}`, content);
    }
  };

  const build = async (tree: Record<string, string>, spec: Partial<Parameters<ImageBuilder["build"]>[0]> = {}, run: Partial<ImageBuildRun> = {}): Promise<Built> => {
    let output = "";
    const image = await lab.builder.build({ dockerfile: "Dockerfile", context: ".", ...spec }, { into: lab.built.store, checkout: files(tree), output: (d) => (output += d.toString()), ...run });
    return { image, output };
  };

  const buildFails = async (tree: Record<string, string>, spec: Partial<Parameters<ImageBuilder["build"]>[0]> = {}, run: Partial<ImageBuildRun> = {}): Promise<string> => {
    let output = "";
    const err = await lab.builder.build({ dockerfile: "Dockerfile", context: ".", ...spec }, { into: lab.built.store, checkout: files(tree), output: (d) => (output += d.toString()), ...run }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, output).toBeInstanceOf(ImageBuildError);
    return (err as Error).message;
  };

  const sandboxOf = async (image: ResolvedImage): Promise<Sandbox> => {
    const s = await lab.runBackend.create({ image: { kind: "rootfs", path: image.rootfs }, env: image.env });
    open.push(s);
    return s;
  };

  const cacheEntries = () => [...readdirSync(lab.cacheDir), ...readdirSync(lab.built.dir)].sort();

  return { lab, files, build, buildFails, sandboxOf, cacheEntries };
}

export async function sh(s: Sandbox, script: string): Promise<string> {
  let out = "";
  await s.exec({ argv: ["/bin/sh", "-c", script] }, { stdout: (d) => (out += d), stderr: (d) => (out += d) });
  return out;
}

/** Every blob of the image's layout as bytes a search can read: layers decompressed. */
export function blobsOf(image: ResolvedImage): Buffer[] {
  const dir = path.join(image.layout!, "blobs", "sha256");
  return readdirSync(dir).map((name) => {
    const blob = readFileSync(path.join(dir, name));
    return blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : blob;
  });
}
