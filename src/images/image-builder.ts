import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { formatProblem, limits, type Problem } from "../pipeline/problems.js";
import { defaultLimits, WORKSPACE, type Exec, type ExecIO, type ExitStatus, type Sandbox, type SandboxBackend, type SandboxSpec } from "../sandbox/backend.js";
import { parseDockerfile, stagesFor, type Stage } from "./dockerfile.js";
import type { ImageCache, ImageCacheAccess } from "./image-cache.js";
import type { ImageStore, ResolvedImage } from "./image-store.js";
import { parseImageReference } from "./reference.js";

/** What to build: paths are inside the repository, as the config names them. */
export interface ImageBuildSpec {
  dockerfile: string;
  context: string;
  /** Build args, as `--build-arg`: they stay in the image's history, as under Docker. */
  args?: Record<string, string>;
  /**
   * Build args whose values are secret (Codeship `encrypted_args_file`): each is also a secret
   * a RUN step can mount (`--mount=type=secret,id=<name>`). Neither way do they reach a layer or
   * the history, which a build with secret args leaves out.
   */
  secretArgs?: Record<string, string>;
  /** The stage to build (`--target`); the last one when unset. */
  target?: string;
}

export interface ImageBuildRun {
  /** Where the built image goes: in memory (see inMemoryImageStore), as it holds the project's code. */
  into: ImageStore;
  /** Puts the repository into /workspace of the builder's sandbox. */
  checkout(sandbox: Sandbox): Promise<void>;
  /** The builder's output as it comes: the caller masks it before anyone sees it. */
  output(chunk: Buffer): void;
  network?: SandboxSpec["network"];
  limits?: SandboxSpec["limits"];
  timeoutMs?: number;
  signal?: AbortSignal;
  /** The project's image cache, for a service that opts in: a build with the same inputs is taken from it. */
  cache?: { cache: ImageCache; access: ImageCacheAccess };
  /** An image built earlier in the run that a FROM names (Codeship's `build.image`), or undefined for one of a registry. */
  builtImage?(ref: string): Promise<ResolvedImage> | undefined;
}

/** A build that failed: the message names the Dockerfile line when the failure belongs to one, and what to do. */
export class ImageBuildError extends Error {}

const WORK = "/tmp/slipway-build";
const MAX_OUTPUT_TAIL = 64 * 1024;
const DEFAULT_TIMEOUT_MS = 60 * 60_000;
const digestSchema = z.string().regex(/^sha256:[a-f0-9]{64}$/);
const indexSchema = z.object({ manifests: z.array(z.object({ digest: digestSchema, annotations: z.record(z.string(), z.string()).optional() })) });
const descriptorSchema = z.object({ digest: digestSchema, size: z.number().int().min(0) });
const manifestSchema = z.object({ mediaType: z.literal("application/vnd.oci.image.manifest.v1+json"), config: descriptorSchema, layers: z.array(descriptorSchema).max(1000) });

// Runs in the builder sandbox as root of its user namespace. Arguments: the number of base images
// (each in $WORK/base-<i>, an OCI layout tagged `image`), their names as the Dockerfile writes
// them, then the arguments of `buildah bud`. Bases are never pulled from anywhere else.
const BUILD_SCRIPT = String.raw`
set -eu
w=/tmp/slipway-build
mkdir -p "$w/tmp"
printf '{"default":[{"type":"insecureAcceptAnything"}]}' > "$w/policy.json"
b() { buildah --root "$w/storage" --runroot "$w/run" --storage-driver overlay "$@"; }
n="$1"; shift
i=0
while [ "$i" -lt "$n" ]; do
  id=$(b pull --quiet --signature-policy "$w/policy.json" "oci:$w/base-$i:image")
  b tag "$id" "$1"
  shift; i=$((i + 1))
done
b bud --pull-never --signature-policy "$w/policy.json" --iidfile "$w/iid" "$@"
echo "slipway: writing the image"
b push --quiet --signature-policy "$w/policy.json" "$(cat "$w/iid")" "oci:$w/out:image"
`;

/**
 * Builds OCI images from Dockerfiles with rootless buildah in a builder sandbox (see
 * SandboxSpec.profile): the sandbox gets the checkout and the base images (through the image
 * store, which pulls and checks them), buildah runs the Dockerfile, and the result is copied out
 * blob by blob, each checked against its digest, into the run's in-memory store. The sandbox and
 * everything in it are gone afterwards, whatever happened.
 */
export class ImageBuilder {
  constructor(
    private readonly backend: SandboxBackend,
    private readonly images: ImageStore,
  ) {}

  async build(spec: ImageBuildSpec, run: ImageBuildRun): Promise<ResolvedImage> {
    const secretArgs = spec.secretArgs ?? {};
    const timeoutMs = run.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    // One deadline for everything the build runs in its sandbox: whatever the build's own code
    // does to a later command (it owns the sandbox by then), nothing waits past it or a cancel.
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), timeoutMs);
    const cancel = () => stop.abort();
    run.signal?.addEventListener("abort", cancel);
    if (run.signal?.aborted) cancel();
    const sandbox = await this.backend.create({
      image: { kind: "host" },
      profile: "builder",
      ...(run.network && { network: run.network }),
      ...(run.limits && { limits: run.limits }),
    });
    const exec = (cmd: Exec, io?: ExecIO) => sandbox.exec({ ...cmd, signal: stop.signal }, io);
    try {
      await run.checkout(sandbox);
      const { stages, text } = await this.read(exec, spec, secretArgs);
      // Each base is looked up once: the cache entry and the build both use the digest found now.
      const bases = await Promise.all(externalImages(stages).map((ref) => this.baseOf(ref, run)));
      const inputs = run.cache && (await this.inputsOf(exec, spec, text, stages, bases));
      if (run.cache && inputs) {
        const cached = await run.cache.cache.restore(run.cache.access, inputs, run.into);
        if (cached) {
          run.output(Buffer.from(`slipway: the same Dockerfile, context and args were built before: using the cached image ${cached.digest.slice(0, 19)}\n`));
          return cached;
        }
      }
      for (const [i, base] of bases.entries()) await this.sendBase(exec, base, `${WORK}/base-${i}`, run);
      const secretIds = new Set(stages.flatMap((s) => s.instructions.flatMap((i) => (i.kind === "RUN" ? i.secrets.map((m) => m.id) : []))));
      for (const id of secretIds) if (id in secretArgs) await sandbox.writeFile(`${WORK}/secret-${id}`, secretArgs[id]!, 0o600);
      const bud = [
        "--file",
        `${WORKSPACE}/${spec.dockerfile}`,
        ...(spec.target ? ["--target", spec.target] : []),
        ...Object.entries(spec.args ?? {}).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]),
        // Without a value buildah reads the variable from its environment: the value is on no command line.
        ...Object.keys(secretArgs).flatMap((k) => ["--build-arg", k]),
        // type=file, or buildah reads a variable of the same name (the secret arg's) instead of the file.
        ...[...secretIds].filter((id) => id in secretArgs).flatMap((id) => ["--secret", `id=${id},type=file,src=${WORK}/secret-${id}`]),
        ...(Object.keys(secretArgs).length ? ["--omit-history"] : []),
        `${WORKSPACE}/${spec.context}`,
      ];
      const tail = new OutputTail();
      run.output(Buffer.from("slipway: building\n"));
      const status = await exec(
        {
          // buildah tags no digest; a FROM pinned by one finds the image by its digest instead.
          argv: ["/bin/sh", "-c", BUILD_SCRIPT, "build", String(bases.length), ...bases.map((b) => b.ref.replace(/@sha256:[a-f0-9]{64}$/, "")), ...bud],
          env: { ...secretArgs, HOME: `${WORK}/tmp`, TMPDIR: `${WORK}/tmp`, _BUILDAH_STARTED_IN_USERNS: "1", BUILDAH_ISOLATION: "chroot" },
        },
        { stdout: (d) => (tail.add(d), run.output(d)), stderr: (d) => (tail.add(d), run.output(d)) },
      );
      if (stop.signal.aborted) throw this.stopped(run, timeoutMs);
      if (status.code !== 0) throw new ImageBuildError(failureOf(tail.text(), stages, spec.dockerfile, status.code));
      const image = await run.into.importLayout((layout) => copyLayoutOut(exec, `${WORK}/out`, layout, run.limits?.tmpfsBytes ?? defaultLimits.tmpfsBytes));
      if (run.cache && inputs && run.cache.access.write && image.layout) {
        // A cache that cannot be written costs the next build time, not this one its result.
        await run.cache.cache.save(run.cache.access, inputs, image.layout).catch((err: Error) => run.output(Buffer.from(`slipway: the image was not cached: ${err.message}\n`)));
      }
      return image;
    } catch (err) {
      throw stop.signal.aborted ? this.stopped(run, timeoutMs) : err;
    } finally {
      clearTimeout(timer);
      run.signal?.removeEventListener("abort", cancel);
      await sandbox.destroy();
    }
  }

  private stopped(run: ImageBuildRun, timeoutMs: number): ImageBuildError {
    return new ImageBuildError(run.signal?.aborted ? "the image build was cancelled" : `the image build took longer than ${Math.round(timeoutMs / 60_000)} minutes and was stopped`);
  }

  /**
   * What decides the image: the Dockerfile, the context files its COPY and ADD instructions read
   * (names, modes, links and contents; the checkout's times do not count) and .dockerignore, the
   * args, the secret args (hashed) and the digests of the base images. A Dockerfile that copies
   * only its dependency manifests keeps its cached image while the code changes. Sources a shell
   * could not name exactly (blanks, quotes) make the whole context count.
   */
  private async inputsOf(exec: ExecFn, spec: ImageBuildSpec, dockerfile: string, stages: Stage[], bases: Base[]): Promise<string> {
    const sources = stages.flatMap((stage) => stage.instructions.flatMap((i) => ((i.kind === "COPY" || i.kind === "ADD") && i.from === undefined ? i.sources : [])));
    const local = sources.filter((src) => !/^https?:\/\//.test(src)).map((src) => src.replace(/^\/+/, "") || ".");
    const exact = local.every((src) => /^[A-Za-z0-9_.\/*?[\]@+=,:%-]+$/.test(src) && !src.startsWith("-"));
    const paths = exact ? [".dockerignore", ...local] : ["."];
    const context = createHash("sha256");
    // Globs are expanded by the shell as buildah would; a name that matches nothing is skipped (buildah fails on it anyway).
    const tar = 'cd "$1" && shift && set -- $@ && exec tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --ignore-failed-read -cf - -- "$@" 2>/dev/null';
    const status = await exec({ argv: ["/bin/sh", "-c", tar, "context", `${WORKSPACE}/${spec.context}`, ...paths] }, { stdout: (d) => context.update(d) });
    if (status.code !== 0) throw new ImageBuildError(`could not read the build context ${spec.context}`);
    const sorted = (record: Record<string, string> = {}) => Object.entries(record).sort(([a], [b]) => a.localeCompare(b));
    const secrets = createHash("sha256").update(JSON.stringify(sorted(spec.secretArgs))).digest("hex");
    const inputs = { v: 1, dockerfile: spec.dockerfile, text: dockerfile, paths, context: context.digest("hex"), target: spec.target ?? null, args: sorted(spec.args), secrets, bases: bases.map((b) => [b.ref, b.digest]) };
    return createHash("sha256").update(JSON.stringify(inputs)).digest("hex");
  }

  /** Reads and checks the Dockerfile as the checkout has it: its errors stop the build before buildah starts. */
  private async read(exec: ExecFn, spec: ImageBuildSpec, secretArgs: Record<string, string>): Promise<{ stages: Stage[]; text: string }> {
    // A regular file of bounded size: a link to /dev/zero, a FIFO or a huge file is refused, not read.
    const chunks: Buffer[] = [];
    const read = 'test -f "$1" && exec head -c "$2" -- "$1"';
    const status = await exec({ argv: ["/bin/sh", "-c", read, "read", `${WORKSPACE}/${spec.dockerfile}`, String(limits.fileBytes + 1)] }, { stdout: (d) => chunks.push(d) });
    const text = Buffer.concat(chunks);
    if (status.code !== 0) throw new ImageBuildError(`${spec.dockerfile}: the Dockerfile does not exist in this commit (or is not a file); check build.dockerfile and build.context`);
    if (text.length > limits.fileBytes) throw new ImageBuildError(`${spec.dockerfile}: the Dockerfile is larger than ${limits.fileBytes / 1024} KiB`);
    const dockerfile = parseDockerfile(text.toString("utf8"), spec.dockerfile, { ...spec.args, ...secretArgs });
    const error = dockerfile.problems.find((p) => p.severity === "error");
    if (error) throw new ImageBuildError(formatProblem(error));
    const stages = stagesFor(dockerfile, spec.dockerfile, spec.target);
    if (!Array.isArray(stages)) throw new ImageBuildError(formatProblem(stages as Problem));
    for (const stage of stages) {
      for (const i of stage.instructions) {
        if (i.kind !== "RUN") continue;
        const missing = i.secrets.find((m) => m.required && !(m.id in secretArgs));
        if (missing) throw new ImageBuildError(`${spec.dockerfile}:${i.at.line}:${i.at.col}: the build secret "${missing.id}" is required but the build has none by that name (add it to the encrypted args)`);
      }
    }
    return { stages, text: text.toString("utf8") };
  }

  /** A base image: one built earlier in the run, or one of a registry at the digest its reference names now. */
  private async baseOf(text: string, run: ImageBuildRun): Promise<Base> {
    const built = run.builtImage?.(text);
    if (built) {
      const image = await built;
      if (!image.layout) throw new ImageBuildError(`the image built for ${text} is not at hand to build on`);
      return { ref: text, digest: image.digest, layout: async () => image.layout! };
    }
    const digest = await this.images.currentDigest(text);
    const ref = parseImageReference(text);
    const pinned = `${ref.registry ? `${ref.registry}/` : ""}${ref.name}${ref.tag ? `:${ref.tag}` : ""}@${digest}`;
    return { ref: text, digest, layout: () => this.images.layoutOf(pinned, (m) => run.output(Buffer.from(m))) };
  }

  /** Streams a base image's layout into the sandbox. */
  private async sendBase(exec: ExecFn, base: Base, target: string, run: ImageBuildRun): Promise<void> {
    const layout = await base.layout();
    run.output(Buffer.from(`slipway: handing the base image ${base.ref} to the build\n`));
    const tar = spawn("tar", ["-C", layout, "-cf", "-", "."], { stdio: ["ignore", "pipe", "ignore"] });
    try {
      const status = await exec({ argv: ["/bin/sh", "-c", 'mkdir -p "$1" && tar -xf - -C "$1"', "receive", target] }, { stdin: tar.stdout });
      if (status.code !== 0) throw new ImageBuildError(`could not hand the base image ${base.ref} to the build (tar exited with ${status.code}); the sandbox may be out of space: raise its tmpfs size`);
    } finally {
      tar.kill();
    }
  }
}

type ExecFn = (cmd: Exec, io?: ExecIO) => Promise<ExitStatus>;

/** An image a stage starts from or copies from: the name the Dockerfile gives, its digest, and where its layout is. */
interface Base {
  ref: string;
  digest: string;
  layout(): Promise<string>;
}

/** The images the stages start from or copy from (COPY --from=<image>) that are not stages of the Dockerfile. */
function externalImages(stages: Stage[]): string[] {
  const isStage = (name: string) => /^\d+$/.test(name) || stages.some((s) => s.name === name.toLowerCase());
  const refs = stages.flatMap((stage) => [
    ...(stage.base.kind === "image" ? [stage.base.ref] : []),
    ...stage.instructions.flatMap((i) => ((i.kind === "COPY" || i.kind === "ADD") && i.from !== undefined && !isStage(i.from) ? [i.from] : [])),
  ]);
  return [...new Set(refs)];
}

/** The end of the build's output, for finding the step that failed and why. */
class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;

  add(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - this.chunks[0]!.length > MAX_OUTPUT_TAIL) this.size -= this.chunks.shift()!.length;
  }

  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}

/**
 * Turns buildah's last words into a message at the Dockerfile line that failed. buildah numbers
 * the steps of each stage it runs (`[2/3] STEP 4/5: …`, or `STEP 4/5: …` for one stage), FROM
 * being step 1 of its stage.
 */
function failureOf(output: string, stages: Stage[], dockerfile: string, code: number | null): string {
  const lines = output.split(/\r?\n/);
  const reason = lines.filter((l) => /^Error: /.test(l)).pop()?.replace(/^Error: (building at STEP ".*": )?/, "") ?? lines.filter((l) => l.trim()).pop() ?? `exit status ${code}`;
  const what = /(?:no space left on device)/i.test(output) ? `${reason} (the build's filesystem is full: raise its tmpfs size)` : /exit status 137|signal: killed/i.test(reason) ? `${reason} (killed: most likely out of memory)` : reason;
  let step: { stage: number; stages: number; step: number } | undefined;
  for (const line of lines) {
    const m = /^(?:\[(\d+)\/(\d+)\] )?STEP (\d+)\/\d+: /.exec(line);
    if (m) step = { stage: Number(m[1] ?? 1), stages: Number(m[2] ?? 1), step: Number(m[3]) };
  }
  if (!step || output.includes("slipway: writing the image")) return `the image build failed: ${what}`;
  const stage = (step.stages === stages.length ? stages : undefined)?.[step.stage - 1];
  const at = stage && (step.step === 1 ? stage.at : stage.instructions[step.step - 2]?.at);
  if (!at) return `the image build failed: ${what}`;
  return `${dockerfile}:${at.line}:${at.col}: ${what}`;
}

/**
 * Copies the layout buildah wrote out of the sandbox: index, manifest, config and layers, each
 * by the digest that names it, no larger than its descriptor says (and all within `maxBytes`),
 * checked against its digest, so nothing but the image (and no path of the build's choosing)
 * reaches the host. The build's code owns the sandbox by now: every read is bounded.
 */
async function copyLayoutOut(exec: ExecFn, from: string, to: string, maxBytes: number): Promise<void> {
  const budget = { left: maxBytes };
  const blobs = path.join(to, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true, mode: 0o700 });
  const indexText = await readBounded(exec, `${from}/index.json`, METADATA_BYTES);
  const index = indexSchema.safeParse(parseJson(indexText.toString("utf8")));
  const entry = index.success ? index.data.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === "image") : undefined;
  if (!entry) throw new ImageBuildError("the builder wrote no image");
  const manifestBlob = await copyBlob(exec, from, { digest: entry.digest, size: METADATA_BYTES }, blobs, budget, true);
  const manifest = manifestSchema.safeParse(parseJson(manifestBlob.toString("utf8")));
  if (!manifest.success) throw new ImageBuildError("the builder wrote an image manifest Slipway cannot read");
  const copied = new Set([entry.digest]);
  for (const blob of [manifest.data.config, ...manifest.data.layers]) {
    if (copied.has(blob.digest)) continue;
    copied.add(blob.digest);
    await copyBlob(exec, from, blob, blobs, budget, false);
  }
  writeFileSync(path.join(to, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  const descriptor = { mediaType: manifest.data.mediaType, digest: entry.digest, size: manifestBlob.length, annotations: { "org.opencontainers.image.ref.name": "image" } };
  writeFileSync(path.join(to, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [descriptor] }));
}

const METADATA_BYTES = 4 * 1024 * 1024;

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

/** Up to `max` bytes of a regular file in the sandbox; more is an error. */
async function readBounded(exec: ExecFn, file: string, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  const status = await exec({ argv: ["/bin/sh", "-c", 'test -f "$1" && exec head -c "$2" -- "$1"', "read", file, String(max + 1)] }, { stdout: (d) => (chunks.push(d), (size += d.length)) });
  if (status.code !== 0) throw new ImageBuildError(`the builder's ${path.posix.basename(file)} is missing`);
  if (size > max) throw new ImageBuildError(`the builder's ${path.posix.basename(file)} is too large`);
  return Buffer.concat(chunks);
}

/** Streams one blob to the host, at most its descriptor's size; returns it when `keep` (manifests are small). */
async function copyBlob(exec: ExecFn, layout: string, blob: { digest: string; size: number }, blobs: string, budget: { left: number }, keep: boolean): Promise<Buffer> {
  const hex = blob.digest.slice("sha256:".length);
  const max = Math.min(blob.size, budget.left);
  const hash = createHash("sha256");
  const kept: Buffer[] = [];
  let size = 0;
  const fd = openSync(path.join(blobs, hex), "wx", 0o600);
  try {
    const status = await exec({ argv: ["/bin/sh", "-c", 'test -f "$1" && exec head -c "$2" -- "$1"', "blob", `${layout}/blobs/sha256/${hex}`, String(max + 1)] }, {
      stdout: (d) => {
        size += d.length;
        if (size > max) return;
        hash.update(d);
        writeSync(fd, d);
        if (keep) kept.push(d);
      },
    });
    if (status.code !== 0) throw new ImageBuildError(`the builder's image is missing the blob ${blob.digest}`);
  } finally {
    closeSync(fd);
  }
  if (size > max) throw new ImageBuildError(`the builder's blob ${blob.digest} is larger than its manifest says, or than the build's filesystem`);
  budget.left -= size;
  if (`sha256:${hash.digest("hex")}` !== blob.digest) throw new ImageBuildError(`the builder's blob ${blob.digest} does not match its digest`);
  return Buffer.concat(kept);
}
