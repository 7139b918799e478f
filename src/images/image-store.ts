import { execFile, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { z } from "zod";
import { ImageCache } from "./image-cache.js";
import { pushImage } from "./image-push.js";
import { memoryDir, removeMemoryDir } from "./memory-dir.js";
import type { Settings } from "../config/settings.js";
import { ImageError, parseImageReference, registryLocation, type ImageReference } from "./reference.js";

/** A root filesystem ready to be a sandbox's read-only lower layer. */
export interface ResolvedImage {
  /** `sha256:…` of the manifest the reference pointed to when it was pulled. */
  digest: string;
  rootfs: string;
  /** The image as an OCI layout (tag `image`), which builds start from; missing for images unpacked by older versions. */
  layout?: string;
  /** The image's own environment (PATH and the like), from its config. */
  env: Record<string, string>;
}

export interface ImageStoreOptions {
  /** Where unpacked images live, one folder per digest. */
  cacheDir: string;
  /**
   * A folder of OCI layouts the operator provides (`<name>/oci-layout`, tags as
   * `org.opencontainers.image.ref.name`); a reference whose name is found here is read from it,
   * any other is pulled from its registry.
   */
  layoutsDir?: string;
  /** CA certificates (`*.crt`) that registries' TLS certificates may chain to, beside the system's. */
  registryCertDir?: string;
}

const TOOL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";
const PULL_TIMEOUT_MS = 30 * 60_000;

const indexSchema = z.object({
  manifests: z.array(z.object({ mediaType: z.string().optional(), digest: z.string().regex(/^sha256:[a-f0-9]{64}$/), annotations: z.record(z.string(), z.string()).optional() })),
});

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

/** The marker that an unpacked image is complete: on disk before the folder is renamed into place. */
function writeDurably(file: string, text: string): void {
  const fd = openSync(file, "wx", 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
const bundleConfigSchema = z.object({ process: z.object({ env: z.array(z.string()).optional() }).optional() });
const imageFileSchema = z.object({ digest: z.string(), env: z.record(z.string(), z.string()) });

/**
 * OCI images as read-only root filesystems: copied with skopeo (which checks every blob against
 * its digest), unpacked once with umoci into a folder named by the manifest digest, and reused
 * from there by every sandbox. A reference pinned by digest is refused when the image found has
 * another.
 */
export class ImageStore {
  private readonly pulling = new Map<string, Promise<ResolvedImage>>();
  private readonly rootless = process.getuid?.() !== 0;

  /** Projects' caches of built images (services with `cached: true`) live beside the images. */
  readonly projectCaches: ImageCache;

  constructor(private readonly opts: ImageStoreOptions) {
    this.projectCaches = new ImageCache(path.join(opts.cacheDir, "projects"));
    // Private: unpacked images keep their setuid programs and device nodes, harmless only where
    // no one else can reach them (sandboxes see them nosuid and nodev).
    mkdirSync(opts.cacheDir, { recursive: true, mode: 0o700 });
    chmodSync(opts.cacheDir, 0o700);
    for (const entry of readdirSync(opts.cacheDir)) {
      const leftover = path.join(opts.cacheDir, entry);
      // What a pull that crashed left behind; a pull still running is younger.
      if (/^\.(pull|import)-/.test(entry) && Date.now() - statSync(leftover).mtimeMs > PULL_TIMEOUT_MS) rmSync(leftover, { recursive: true, force: true });
    }
  }

  async resolve(text: string, progress?: (message: string) => void): Promise<ResolvedImage> {
    const ref = parseImageReference(text);
    // A digest names its content: a pinned image already here needs no registry at all.
    const pinned = ref.digest && this.cached(ref.digest);
    if (pinned) return pinned;
    const source = this.sourceOf(ref);
    const digest = await this.digestOf(ref, source);
    if (ref.digest && ref.digest !== digest) throw new ImageError(`image ${text}: found digest ${digest}, not the one the config pins; the image was changed or replaced`);
    const cached = this.cached(digest);
    if (cached) return cached;
    let pull = this.pulling.get(digest);
    if (!pull) {
      pull = this.pull(ref, source, digest, progress).finally(() => this.pulling.delete(digest));
      this.pulling.set(digest, pull);
    }
    return pull;
  }

  /** Publishes an image's layout to a registry (see pushImage), trusting the same CA certificates as pulls. */
  push(layout: string, imageName: string, tag: string, dockercfg?: string): Promise<string> {
    return pushImage(layout, { imageName, tag, ...(dockercfg !== undefined && { dockercfg }), ...(this.opts.registryCertDir && { certDir: this.opts.registryCertDir }) });
  }

  /** The manifest digest the reference names now (asks its registry unless it is pinned). */
  async currentDigest(text: string): Promise<string> {
    const ref = parseImageReference(text);
    return ref.digest ?? (await this.digestOf(ref, this.sourceOf(ref)));
  }

  private folderOf(digest: string): string {
    return path.join(this.opts.cacheDir, digest.replace(":", "-"));
  }

  private cached(digest: string): ResolvedImage | undefined {
    const folder = this.folderOf(digest);
    const file = path.join(folder, "image.json");
    if (!existsSync(file)) return undefined;
    const image = imageFileSchema.safeParse(parseJson(readFileSync(file, "utf8")));
    if (!image.success) throw new ImageError(`the cached image ${digest} is damaged: remove ${folder} and run the build again`);
    const layout = path.join(folder, "layout");
    return { ...image.data, rootfs: path.join(folder, "rootfs"), ...(existsSync(path.join(layout, "index.json")) && { layout }) };
  }

  /** The image as an OCI layout, for a build that starts from it; copied again if an older version unpacked it without one. */
  async layoutOf(text: string, progress?: (message: string) => void): Promise<string> {
    const image = await this.resolve(text, progress);
    if (image.layout) return image.layout;
    const ref = parseImageReference(text);
    const work = this.workDir("pull");
    try {
      await this.copy(ref, this.sourceOf(ref), image.digest, work, progress);
      renameSync(path.join(work, "layout"), path.join(this.folderOf(image.digest), "layout"));
    } catch (err) {
      if (!this.cached(image.digest)?.layout) throw err;
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    return this.cached(image.digest)!.layout!;
  }

  /**
   * Takes in an image a build writes: `write` fills the folder it is given with an OCI layout
   * (tag `image`, every blob checked against its digest), which is then unpacked like a pulled
   * image and named by its manifest digest. Nothing of a failed import stays behind.
   */
  async importLayout(write: (layout: string) => Promise<void>): Promise<ResolvedImage> {
    const work = this.workDir("import");
    try {
      const layout = path.join(work, "layout");
      mkdirSync(layout, { mode: 0o700 });
      await write(layout);
      const digest = tagged(layout, "image");
      if (!digest) throw new ImageError("the built image has no manifest tagged image");
      const cached = this.cached(digest);
      if (cached?.layout) return cached;
      return await this.unpack(work, digest, "the built image");
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  private workDir(kind: string): string {
    const work = path.join(this.opts.cacheDir, `.${kind}-${randomBytes(6).toString("hex")}`);
    mkdirSync(work, { mode: 0o700 });
    return work;
  }

  /** skopeo's name for where the image comes from: a local layout when the operator has one by that name. */
  private sourceOf(ref: ImageReference): string {
    const layout = this.opts.layoutsDir && !ref.registry ? path.join(this.opts.layoutsDir, ref.name) : undefined;
    if (layout && existsSync(path.join(layout, "oci-layout"))) return `oci:${layout}:${ref.tag ?? "latest"}`;
    return registryLocation(ref);
  }

  private async digestOf(ref: ImageReference, source: string): Promise<string> {
    if (source.startsWith("oci:")) {
      const tag = ref.tag ?? "latest";
      const found = tagged(source.slice(4, source.lastIndexOf(":")), tag, ref);
      if (!found) throw new ImageError(`image ${ref.text} does not exist: the local layout ${ref.name} has no tag ${tag}`);
      return found;
    }
    const raw = await run("skopeo", ["inspect", "--raw", "--retry-times", "2", ...this.certFlag("--cert-dir"), source], ref.text, 120_000);
    return `sha256:${createHash("sha256").update(raw).digest("hex")}`;
  }

  private certFlag(flag: string): string[] {
    return this.opts.registryCertDir ? [flag, this.opts.registryCertDir] : [];
  }

  private async pull(ref: ImageReference, source: string, digest: string, progress?: (message: string) => void): Promise<ResolvedImage> {
    const work = this.workDir("pull");
    try {
      await this.copy(ref, source, digest, work, progress);
      progress?.(`unpacking image ${ref.text}\n`);
      return await this.unpack(work, digest, ref.text);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  /** Copies the image into <work>/layout, tagged `image`. */
  private async copy(ref: ImageReference, source: string, digest: string, work: string, progress?: (message: string) => void): Promise<void> {
    progress?.(`pulling image ${ref.text} (${digest.slice(0, 19)})\n`);
    const pinned = source.startsWith("oci:") ? source : registryLocation({ ...ref, digest });
    await run("skopeo", ["copy", "--quiet", "--retry-times", "2", ...this.certFlag("--src-cert-dir"), pinned, `oci:${work}/layout:image`], ref.text, PULL_TIMEOUT_MS);
  }

  /** Unpacks <work>/layout and moves the result, layout included, into its place in the cache. */
  private async unpack(work: string, digest: string, name: string): Promise<ResolvedImage> {
    const bundle = path.join(work, "bundle");
    await run("umoci", ["unpack", ...(this.rootless ? ["--rootless"] : []), "--image", `${work}/layout:image`, bundle], name, PULL_TIMEOUT_MS);
    const config = bundleConfigSchema.parse(parseJson(readFileSync(path.join(bundle, "config.json"), "utf8")));
    const env = Object.fromEntries((config.process?.env ?? []).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]).filter(([k]) => k));
    const done = path.join(work, "done");
    mkdirSync(done, { mode: 0o700 });
    renameSync(path.join(bundle, "rootfs"), path.join(done, "rootfs"));
    renameSync(path.join(work, "layout"), path.join(done, "layout"));
    writeDurably(path.join(done, "image.json"), JSON.stringify({ digest, env }));
    try {
      renameSync(done, this.folderOf(digest));
    } catch (err) {
      // Another process unpacked the same image first: theirs is as good as ours.
      if (!this.cached(digest)) throw err;
    }
    return this.cached(digest)!;
  }
}

/** The manifest digest a layout tags `tag`, if any. */
function tagged(layout: string, tag: string, ref?: ImageReference): string | undefined {
  const index = indexSchema.safeParse(parseJson(readFileSync(path.join(layout, "index.json"), "utf8")));
  if (!index.success) throw new ImageError(ref ? `image ${ref.text}: the local layout ${ref.name} has no valid index.json` : `the OCI layout ${layout} has no valid index.json`);
  return index.data.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === tag)?.digest;
}

/** Runs an image tool, turning its failure into an error that names the image and says what went wrong. */
function run(tool: string, args: string[], image: string, timeout: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { encoding: "buffer", timeout, maxBuffer: 64 * 1024 * 1024, env: { PATH: TOOL_PATH, HOME: process.env.HOME ?? "/root" } }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return reject(new ImageError(`images need ${tool} (Debian package ${tool}); install it on the runner`));
      // skopeo logs `time=… level=fatal msg="…"`: the quoted message is what matters.
      const last = stderr.toString().trim().split("\n").pop() ?? "";
      const quoted = /msg="((?:[^"\\]|\\.)*)"/.exec(last)?.[1]?.replace(/\\(.)/g, "$1");
      const message = (quoted ?? last).replace(/^Error parsing image name "[^"]*": /, "") || err.message;
      if (/no space left on device/i.test(message)) return reject(new ImageError(`image ${image} does not fit: no space left on device while unpacking it; free space where images are kept (or, for a built image, make it smaller)`));
      const missing = /manifest unknown|not found|no such|does not exist|unauthorized|name unknown/i.test(message);
      reject(new ImageError(`image ${image} ${missing ? "does not exist or is not accessible" : "could not be pulled"}: ${message}; check the name and that this runner can reach its registry`));
    });
  });
}

/**
 * A store for the images a run builds, in memory: they hold the project's code, which never
 * reaches the runner's disk (P03). A root runner gives it a tmpfs of its own of `maxBytes`, so a
 * build's image cannot unpack into more memory than that. `dispose` removes it with everything in it.
 */
export function inMemoryImageStore(maxBytes = 4 * 1024 ** 3): { store: ImageStore; dir: string; dispose(): void } {
  const dir = memoryDir("slipway-built");
  if (process.getuid?.() === 0) {
    const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${maxBytes},mode=0700,nodev,nosuid`, "slipway-built", dir], { encoding: "utf8" });
    if (mounted.status !== 0) {
      removeMemoryDir(dir);
      throw new ImageError(`cannot mount a tmpfs for built images: ${mounted.stderr.trim()}`);
    }
  }
  return { store: new ImageStore({ cacheDir: dir }), dir, dispose: () => removeMemoryDir(dir) };
}

/**
 * The image store of a runner outside `slipway serve` (`slipway runner`, `slipway run`): unpacked
 * images in SLIPWAY_IMAGE_CACHE (default ~/.cache/slipway/images), local layouts in
 * SLIPWAY_IMAGE_LAYOUTS and registry CA certificates in SLIPWAY_REGISTRY_CERTS when set.
 */
/** The image store of `slipway serve` (its embedded runner and its workspaces), as the settings place it. */
export function serverImageStore(settings: Pick<Settings, "dataDir" | "imageCacheDir" | "imageLayoutsDir" | "imageRegistryCertDir">): ImageStore {
  const { imageCacheDir, imageLayoutsDir, imageRegistryCertDir } = settings;
  return new ImageStore({ cacheDir: imageCacheDir ?? path.join(settings.dataDir, "images"), ...(imageLayoutsDir && { layoutsDir: imageLayoutsDir }), ...(imageRegistryCertDir && { registryCertDir: imageRegistryCertDir }) });
}

export function imageStoreFromEnv(env: NodeJS.ProcessEnv = process.env): ImageStore {
  const cache = env.SLIPWAY_IMAGE_CACHE || path.join(env.XDG_CACHE_HOME || path.join(homedir(), ".cache"), "slipway", "images");
  return new ImageStore({ cacheDir: cache, ...(env.SLIPWAY_IMAGE_LAYOUTS && { layoutsDir: env.SLIPWAY_IMAGE_LAYOUTS }), ...(env.SLIPWAY_REGISTRY_CERTS && { registryCertDir: env.SLIPWAY_REGISTRY_CERTS }) });
}
