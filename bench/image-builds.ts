import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ImageBuilder, type ImageBuildRun } from "../src/images/image-builder.js";
import { ImageCache, type ImageCacheAccess } from "../src/images/image-cache.js";
import { ImageStore, inMemoryImageStore, type ResolvedImage } from "../src/images/image-store.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { testImageLayout, testLayoutsDir } from "../test/helpers/test-image.js";
import { fmt, percentile, printTable, ratio, timeRounds } from "./support.js";

const ROUNDS = 3;
const DOCKERFILE = "FROM debian:bookworm\nCOPY app /app\nRUN useradd -u 1234 app && chown -R app /app\nUSER app\nRUN ls -l /app > /tmp/listing\n";

/** Median wall time of `ROUNDS` runs of `once`, after one warm-up run. */
const median = async (once: () => unknown): Promise<number> => percentile(await timeRounds(ROUNDS, once), 50);

/**
 * A small Dockerfile built cold (no cache) and again with a warm project cache, against buildah
 * run directly by root on the host with the same base; then a built image's unpack and first
 * exec against a sandbox of the host image.
 */
export async function imageBuildsBench(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log("skipped: image builds need root (run npm run bench as root)");
    return;
  }
  const work = mkdtempSync(path.join(tmpdir(), "slipway-bench-build-"));
  const layouts = testLayoutsDir();
  const built = inMemoryImageStore();
  try {
    const context = path.join(work, "context");
    mkdirSync(path.join(context, "app"), { recursive: true });
    writeFileSync(path.join(context, "Dockerfile"), DOCKERFILE);
    for (let i = 0; i < 50; i++) writeFileSync(path.join(context, "app", `file-${i}.txt`), randomBytes(2048).toString("hex"));
    const archive = execFileSync("tar", ["-C", context, "-cf", "-", "."]);
    const backend = new BwrapBackend();
    const store = new ImageStore({ cacheDir: path.join(work, "images"), layoutsDir: layouts });
    const builder = new ImageBuilder(backend, store);
    const cache = new ImageCache(path.join(work, "cache"));
    const access: ImageCacheAccess = { key: randomBytes(32), project: "bench", branch: "main", write: true, maxAgeMs: 86_400_000 };
    const run = (extra: Partial<ImageBuildRun> = {}): ImageBuildRun => ({
      into: built.store,
      checkout: async (sandbox) => void (await sandbox.exec({ argv: ["tar", "-xf", "-", "-C", "/workspace"] }, { stdin: archive })),
      output: () => undefined,
      ...extra,
    });
    const spec = { dockerfile: "Dockerfile", context: "." };
    let image: ResolvedImage | undefined;
    const cold = await median(async () => void (image = await builder.build(spec, run())));
    const warm = await median(async () => void (await builder.build(spec, run({ cache: { cache, access } }))));
    // buildah names a pulled layout after its path, which must be a valid (lowercase) reference.
    const base = path.join(tmpdir(), `slipway-bench-base-${process.pid}`);
    cpSync(testImageLayout(), base, { recursive: true });
    let host: number;
    try {
      host = await hostBuildah(work, context, base);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }

    const firstExec = async (rootfs?: string) => {
      const sandbox = await backend.create({ image: rootfs ? { kind: "rootfs", path: rootfs } : { kind: "host" } });
      await sandbox.exec({ argv: ["true"] });
      await sandbox.destroy();
    };
    const unpackAndExec = await median(async () => {
      const fresh = inMemoryImageStore();
      try {
        const copy = await fresh.store.importLayout(async (layout) => cpSync(image!.layout!, layout, { recursive: true }));
        await firstExec(copy.rootfs);
      } finally {
        fresh.dispose();
      }
    });
    const hostExec = await median(() => firstExec());
    printTable(`median of ${ROUNDS} rounds after one warm-up (ms); base image already in the store`, ["what", "ms", "ratio"], [
      ["build, cold (builder sandbox, rootless buildah)", fmt(cold), ratio(cold, host)],
      ["rebuild, warm project cache", fmt(warm), ratio(warm, host)],
      ["buildah bud as host root, same base (baseline)", fmt(host), "1.00x"],
      ["unpack the built image + first exec", fmt(unpackAndExec), ratio(unpackAndExec, hostExec)],
      ["host image sandbox + first exec (baseline)", fmt(hostExec), "1.00x"],
    ]);
    console.log(`warm cache vs cold build: ${ratio(warm, cold)}`);
  } finally {
    built.dispose();
    rmSync(work, { recursive: true, force: true });
    rmSync(layouts, { recursive: true, force: true });
  }
}

/** The same build by buildah run directly as root on the host (overlay storage, chroot isolation), base pulled from the same layout each time. */
async function hostBuildah(work: string, context: string, base: string): Promise<number> {
  const root = path.join(work, "host-buildah");
  const policy = path.join(work, "policy.json");
  writeFileSync(policy, '{"default":[{"type":"insecureAcceptAnything"}]}');
  const buildah = (...args: string[]) => {
    const r = spawnSync("buildah", ["--root", path.join(root, "storage"), "--runroot", path.join(root, "run"), "--storage-driver", "overlay", ...args], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`buildah ${args[0]}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const once = () => {
    rmSync(root, { recursive: true, force: true });
    const id = buildah("pull", "--quiet", "--signature-policy", policy, `oci:${base}:bookworm`);
    buildah("tag", id, "debian:bookworm");
    buildah("bud", "--quiet", "--pull-never", "--isolation", "chroot", "--signature-policy", policy, "-f", path.join(context, "Dockerfile"), context);
  };
  const time = await median(once);
  try {
    spawnSync("buildah", ["--root", path.join(root, "storage"), "--runroot", path.join(root, "run"), "--storage-driver", "overlay", "rm", "--all"]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return time;
}
