import { createMasker, maskText, type Masker } from "../crypto/masking.js";
import type { Command, Group, Pipeline, PipelineNode, Service, Step } from "../pipeline/model.js";
import { flattenSteps } from "../pipeline/refs.js";
import type { ImageBuildRun, ImageBuildSpec } from "../images/image-builder.js";
import type { ImageCache, ImageCacheAccess } from "../images/image-cache.js";
import { inMemoryImageStore, type ImageStore, type ResolvedImage } from "../images/image-store.js";
import { parseImageReference } from "../images/reference.js";
import { dockerfilePath } from "../pipeline/image-builds.js";
import { renderImageTag, type ImageTagField } from "../pipeline/image-tag.js";
import type { Sandbox, SandboxBackend, SandboxSpec } from "../sandbox/backend.js";
import { BUILT_PREFIX, imageOfService, JobServices, servicesBeside } from "./services.js";

export type StepStatus = "success" | "failed" | "skipped" | "error";

export type RunEvent =
  | { type: "step-start"; step: Step; job: number }
  | { type: "output"; step: Step; job: number; stream: "stdout" | "stderr"; data: Buffer }
  | { type: "step-end"; step: Step; job: number; result: StepResult }
  /** A service's output: masked, in whole lines, each starting with `[service] `. */
  | { type: "service-output"; service: string; job: number; stream: "stdout" | "stderr"; data: Buffer }
  /** A service started, became healthy or exited. */
  | { type: "service-status"; service: string; job: number; message: string };

export interface StepResult {
  id: string;
  name: string;
  status: StepStatus;
  exitCode: number | null;
  durationMs: number;
  /** Why it did not succeed, in words, when it did not. */
  reason?: string;
}

export interface RunOptions {
  backend: SandboxBackend;
  /** Turns a step's image reference into a root filesystem; without it only the `host` image runs. */
  images?: { resolve(ref: string, progress?: (message: string) => void): Promise<ResolvedImage> };
  /** Builds the images of services built from a Dockerfile; without it, steps that need one fail saying so. */
  builder?: { build(spec: ImageBuildSpec, run: ImageBuildRun): Promise<ResolvedImage> };
  /** By service name: the secret build args of a built service (see resolveServiceEnv). */
  buildArgs?: Record<string, Record<string, string>>;
  /**
   * What push steps (Codeship `type: push`) need: the build's fields for `image_tag`, registry
   * credentials, and a push function. Without it (`slipway run`, pull requests) they are skipped.
   */
  publish?: {
    fields: Omit<Record<ImageTagField, string>, "ServiceName" | "StepName">;
    dockercfg?: string;
    push(layout: string, imageName: string, tag: string, dockercfg?: string): Promise<string>;
  };
  /** The project's image cache, used by built services with `cached: true`; they fall back to their `default_cache_branch`, else main. */
  imageCache?: { cache: ImageCache; access: Omit<ImageCacheAccess, "fallbackBranch"> };
  pipeline: Pipeline;
  /** The steps that run for this ref (see selectSteps). */
  nodes: PipelineNode[];
  /** Puts the repository into /workspace of a fresh sandbox. */
  checkout(sandbox: Sandbox): Promise<void>;
  /** Environment for every step: CI variables and the secrets the config names. */
  env: Record<string, string>;
  /** Values replaced by *** in all output. */
  secrets: string[];
  /** By service name: the variables of its env files, plain and decrypted (see resolveServiceEnv). */
  serviceEnv?: Record<string, Record<string, string>>;
  /** Runs only steps with these names (and the groups around them). */
  only?: string[];
  /**
   * Ids of the approved manual steps and groups. When given, the run stops at any other manual one
   * and reports it in `waitingFor`; without it (`slipway run`), manual steps are skipped.
   */
  approvals?: ReadonlySet<string>;
  /** Runs only from this step or group on, in tree order: what comes before it ran in an earlier job. */
  resumeFrom?: string;
  onEvent(event: RunEvent): void;
  limits?: SandboxSpec["limits"];
  /** A sandbox that already holds the checkout: used for the top level (saves a start and a checkout), destroyed at the end. */
  initial?: Sandbox;
  /** Network of every sandbox of the run; none unless given. */
  network?: SandboxSpec["network"];
  defaultTimeoutMs?: number;
  idleTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface RunResult {
  status: "success" | "failed";
  steps: StepResult[];
  /** The manual step or group the run stopped at, waiting for an approval (only with `approvals`). */
  waitingFor?: { id: string; name: string };
}

/** Set when a manual node stops a serial run: nothing after it starts (parallel branches already running finish). */
interface Halt {
  halted: boolean;
}

const THREE_HOURS = 3 * 3600_000;
const TEN_MINUTES = 600_000;

const HOST_IMAGE = "host";

/**
 * The sandbox that consecutive steps share, so they see each other's files; a step that needs
 * another image gets a fresh sandbox of that image (with a fresh checkout) in its place.
 */
class SandboxSlot {
  private current?: { sandbox: Sandbox; image: string };

  constructor(
    private readonly open: (image: string, progress: (message: string) => void) => Promise<Sandbox>,
    private readonly close: (sandbox: Sandbox) => Promise<void>,
    ready?: Sandbox,
  ) {
    if (ready) this.current = { sandbox: ready, image: HOST_IMAGE };
  }

  async for(image: string, progress: (message: string) => void): Promise<Sandbox> {
    if (this.current?.image === image) return this.current.sandbox;
    await this.release();
    const sandbox = await this.open(image, progress);
    this.current = { sandbox, image };
    return sandbox;
  }

  async release(): Promise<void> {
    const current = this.current;
    this.current = undefined;
    if (current) await this.close(current.sandbox);
  }
}

/**
 * Runs a selected pipeline: the top level and every serial group in one sandbox (steps share
 * their files while they use the same image), each branch of a parallel group in a sandbox of its
 * own, concurrently. A failed step stops what follows unless it says `on_fail: continue`. Output
 * reaches `onEvent` masked.
 */
export class PipelineRunner {
  private readonly results: StepResult[] = [];
  private stopped = false;
  private waitingFor?: RunResult["waitingFor"];
  private jobs = 0;
  /** The services running beside each open sandbox. */
  private readonly services = new Map<Sandbox, JobServices>();
  /** Each built service's image, built once per run, by whichever step or service needs it first. */
  private readonly built = new Map<string, Promise<ResolvedImage>>();
  private builtStore?: ReturnType<typeof inMemoryImageStore>;

  constructor(private readonly opts: RunOptions) {}

  async run(): Promise<RunResult> {
    try {
      await this.inSandbox((s, job) => this.serial(this.opts.nodes, s, job, { halted: false }), this.opts.initial);
    } finally {
      // Every sandbox that used a built image is gone by now.
      this.builtStore?.dispose();
    }
    const failed = this.results.some((r) => r.status === "failed" || r.status === "error");
    return { status: failed ? "failed" : "success", steps: this.results, ...(this.waitingFor && { waitingFor: this.waitingFor }) };
  }

  private async inSandbox(body: (slot: SandboxSlot, job: number) => Promise<void>, ready?: Sandbox): Promise<void> {
    const job = this.jobs++;
    const slot = new SandboxSlot((image, progress) => this.openSandbox(image, progress), (sandbox) => this.closeSandbox(sandbox), ready);
    try {
      await body(slot, job);
    } finally {
      await slot.release();
    }
  }

  /** The root filesystem of an image, and the environment the image sets. */
  private async rootOf(image: string, progress: (message: string) => void): Promise<Pick<SandboxSpec, "image" | "env">> {
    if (image === HOST_IMAGE) return { image: { kind: "host" } };
    if (!this.opts.images) throw new Error(`image ${image}: this runner has no image store; use image: host`);
    const resolved = image.startsWith(BUILT_PREFIX) ? await this.build(image.slice(BUILT_PREFIX.length), progress) : await this.opts.images.resolve(image, progress);
    return { image: { kind: "rootfs", path: resolved.rootfs }, env: resolved.env };
  }

  /** The service whose `build.image` is this reference (`:latest` when it names no tag). */
  private serviceBuilding(ref: string): string | undefined {
    const key = (text: string) => {
      try {
        const r = parseImageReference(text);
        return `${r.registry ?? ""}/${r.name}:${r.tag ?? "latest"}`;
      } catch {
        return text;
      }
    };
    return Object.values(this.opts.pipeline.services).find((s) => s.build?.image !== undefined && key(s.build.image) === key(ref))?.name;
  }

  /**
   * The image of a service built from its Dockerfile; the build's output, masked, goes to whoever
   * asked first. A Dockerfile whose FROM names the image another service builds (its
   * `build.image`) has that one built first; `chain` holds the services waiting on this one.
   */
  private build(name: string, progress: (message: string) => void, chain: string[] = []): Promise<ResolvedImage> {
    const service = this.opts.pipeline.services[name]!;
    if (chain.includes(name)) return Promise.reject(new Error(`services ${[...chain, name].join(" → ")} build from each other's images`));
    let built = this.built.get(name);
    if (!built) {
      const builder = this.opts.builder;
      if (!builder || !service.build) return Promise.reject(new Error(`service ${name} is built from a Dockerfile, which this runner cannot do: it needs to run as root with buildah installed`));
      const secretArgs = this.opts.buildArgs?.[name] ?? {};
      const secrets = [...this.opts.secrets, ...Object.values(secretArgs)];
      const masker = createMasker(secrets);
      const spec = service.build;
      let into: ImageStore;
      try {
        into = (this.builtStore ??= inMemoryImageStore()).store;
      } catch (err) {
        return Promise.reject(err as Error);
      }
      progress(`building the image of service ${name} from ${dockerfilePath(spec)}\n`);
      built = builder
        .build(
          { dockerfile: dockerfilePath(spec), context: spec.context, args: spec.args, secretArgs, ...(spec.target !== undefined && { target: spec.target }) },
          {
            into,
            checkout: (sandbox) => this.opts.checkout(sandbox),
            output: (chunk) => progress(masker.write(chunk).toString()),
            ...(this.opts.network && { network: this.opts.network }),
            ...(this.opts.limits && { limits: this.opts.limits }),
            ...(this.opts.signal && { signal: this.opts.signal }),
            builtImage: (ref) => {
              const from = this.serviceBuilding(ref);
              return from === undefined ? undefined : this.build(from, progress, [...chain, name]);
            },
            ...(service.cached && this.opts.imageCache && { cache: { cache: this.opts.imageCache.cache, access: { ...this.opts.imageCache.access, fallbackBranch: service.defaultCacheBranch ?? "main" } } }),
          },
        )
        // The failure quotes the build's output, so it is masked like the output.
        .catch((err: Error) => {
          throw new Error(maskText(secrets, err.message));
        })
        .finally(() => {
          const rest = masker.end();
          if (rest.length > 0) progress(rest.toString());
        });
      this.built.set(name, built);
    }
    return built;
  }

  /** A new sandbox of the image, holding a fresh checkout. */
  private async openSandbox(image: string, progress: (message: string) => void): Promise<Sandbox> {
    const sandbox = await this.opts.backend.create({ ...(await this.rootOf(image, progress)), limits: this.opts.limits, network: this.opts.network });
    try {
      await this.opts.checkout(sandbox);
      return sandbox;
    } catch (err) {
      await sandbox.destroy();
      throw err;
    }
  }

  /** Stops the services beside a sandbox (so their end is not reported as a crash), then destroys it. */
  private async closeSandbox(sandbox: Sandbox): Promise<void> {
    const services = this.services.get(sandbox);
    this.services.delete(sandbox);
    try {
      await services?.stop();
    } finally {
      await sandbox.destroy();
    }
  }

  /** Starts, beside the step's sandbox, the services the step needs that are not running there yet; why not, when they cannot. */
  private async startServices(step: Step, sandbox: Sandbox, job: number): Promise<string | undefined> {
    const names = servicesBeside(step, this.opts.pipeline);
    if (typeof names === "string" || names.length === 0) return typeof names === "string" ? names : undefined;
    let services = this.services.get(sandbox);
    if (!services) {
      services = new JobServices({
        backend: this.opts.backend,
        pipeline: this.opts.pipeline,
        job: sandbox,
        root: (image, progress) => this.rootOf(image, progress),
        envOf: (service) => this.envOfService(service),
        secrets: this.opts.secrets,
        limits: this.opts.limits,
        signal: this.opts.signal,
        events: {
          output: (service, stream, data) => this.opts.onEvent({ type: "service-output", service, job, stream, data }),
          status: (service, message) => this.opts.onEvent({ type: "service-status", service, job, message }),
        },
      });
      this.services.set(sandbox, services);
    }
    return services.ensure(names);
  }

  private async serial(nodes: PipelineNode[], slot: SandboxSlot, job: number, halt: Halt): Promise<void> {
    for (const node of nodes) {
      if (halt.halted) return;
      if (this.beforeResume(node)) continue;
      if (this.waitsForApproval(node)) {
        this.waitingFor ??= { id: node.id, name: node.name ?? `group ${node.id}` };
        halt.halted = true;
        return;
      }
      if (node.kind === "step") await this.step(node, slot, job);
      else if (node.manual && !this.opts.approvals) this.skipAll(node, job, "manual group: needs an approval");
      else if (node.type === "serial") await this.serial(node.steps, slot, job, halt);
      else {
        const branches = node.steps.map((): Halt => ({ halted: false }));
        await Promise.all(node.steps.map((child, i) => this.inSandbox((s, j) => this.serial([child], s, j, branches[i]!))));
        halt.halted = branches.some((b) => b.halted);
      }
    }
  }

  /** True for a node wholly before `resumeFrom` in tree order (ids are positions: "2.1" is the first child of "2"). */
  private beforeResume(node: PipelineNode): boolean {
    if (this.opts.resumeFrom === undefined) return false;
    const here = node.id.split(".").map(Number);
    const from = this.opts.resumeFrom.split(".").map(Number);
    for (let i = 0; i < Math.min(here.length, from.length); i++) if (here[i] !== from[i]) return here[i]! < from[i]!;
    // An ancestor of the resume point, the point itself, or inside it.
    return false;
  }

  /** A manual node not approved yet stops the run, unless the run already ends for another reason. */
  private waitsForApproval(node: PipelineNode): boolean {
    if (!this.opts.approvals || this.opts.signal?.aborted || this.stopped) return false;
    const manual = node.kind === "step" ? node.type === "manual" : node.manual;
    return manual && !this.opts.approvals.has(node.id);
  }

  private skipAll(group: Group, job: number, reason: string): void {
    for (const step of flattenSteps(group.steps)) {
      if (!this.opts.only || this.opts.only.includes(step.name)) this.record(step, job, { status: "skipped", exitCode: null, durationMs: 0, reason });
    }
  }

  private record(step: Step, job: number, result: Omit<StepResult, "id" | "name">): void {
    const full = { id: step.id, name: step.name, ...result };
    this.results.push(full);
    this.opts.onEvent({ type: "step-end", step, job, result: full });
  }

  /** Publishes the image of the step's service (built, or pulled) under the rendered tag. */
  private async push(step: Step, job: number): Promise<void> {
    const publish = this.opts.publish!;
    const service = step.service === undefined ? undefined : this.opts.pipeline.services[step.service];
    this.opts.onEvent({ type: "step-start", step, job });
    const started = Date.now();
    const say = (message: string) => this.opts.onEvent({ type: "output", step, job, stream: "stderr", data: Buffer.from(message) });
    try {
      const image = service && imageOfService(service);
      if (!service || !image || !step.push) throw new Error("a push step publishes the image of its service, and this one has none");
      const tag = renderImageTag(step.push.imageTag ?? "latest", { ...publish.fields, ServiceName: service.name, StepName: step.name });
      const resolved = image.startsWith(BUILT_PREFIX) ? await this.build(service.name, say) : await this.opts.images?.resolve(image, say);
      if (!resolved?.layout) throw new Error(`the image of service ${service.name} is not at hand to push; run the build again`);
      say(`pushing the image of service ${service.name} to ${step.push.imageName}:${tag}\n`);
      const where = await publish.push(resolved.layout, step.push.imageName, tag, publish.dockercfg);
      say(`pushed ${where}\n`);
      this.record(step, job, { status: "success", exitCode: 0, durationMs: Date.now() - started });
    } catch (err) {
      this.stopped ||= step.onFail === "stop";
      this.record(step, job, { status: "failed", exitCode: null, durationMs: Date.now() - started, reason: (err as Error).message });
    }
  }

  private async step(step: Step, slot: SandboxSlot, job: number): Promise<void> {
    if (this.opts.only && !this.opts.only.includes(step.name)) return;
    const skip = this.reasonToSkip(step);
    if (skip) return this.record(step, job, { status: "skipped", exitCode: null, durationMs: 0, reason: skip });
    if (step.type === "push") return this.push(step, job);
    const command = this.commandOf(step);
    if (typeof command === "string") {
      this.stopped ||= step.onFail === "stop";
      return this.record(step, job, { status: "error", exitCode: null, durationMs: 0, reason: command });
    }
    this.opts.onEvent({ type: "step-start", step, job });
    const started = Date.now();
    let sandbox: Sandbox;
    try {
      sandbox = await slot.for(this.imageOf(step), (message) => this.opts.onEvent({ type: "output", step, job, stream: "stderr", data: Buffer.from(message) }));
    } catch (err) {
      this.stopped ||= step.onFail === "stop";
      return this.record(step, job, { status: "error", exitCode: null, durationMs: Date.now() - started, reason: (err as Error).message });
    }
    const unavailable = await this.startServices(step, sandbox, job);
    if (unavailable) {
      this.stopped ||= step.onFail === "stop";
      return this.record(step, job, { status: "failed", exitCode: null, durationMs: Date.now() - started, reason: unavailable });
    }
    const maskers: Record<"stdout" | "stderr", Masker> = { stdout: createMasker(this.opts.secrets), stderr: createMasker(this.opts.secrets) };
    const emit = (stream: "stdout" | "stderr", data: Buffer) => {
      if (data.length > 0) this.opts.onEvent({ type: "output", step, job, stream, data });
    };
    let idle: NodeJS.Timeout | undefined;
    let idleKilled = false;
    const controller = new AbortController();
    const armIdle = () => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        idleKilled = true;
        controller.abort();
      }, this.opts.idleTimeoutMs ?? TEN_MINUTES);
    };
    armIdle();
    const onAbort = () => controller.abort();
    this.opts.signal?.addEventListener("abort", onAbort);
    const output = (stream: "stdout" | "stderr") => (d: Buffer) => {
      armIdle();
      emit(stream, maskers[stream].write(d));
    };
    const env = this.envOf(step);
    const status = await sandbox.exec({ argv: command, env, timeoutMs: step.timeoutMs ?? this.opts.defaultTimeoutMs ?? THREE_HOURS, signal: controller.signal }, { stdout: output("stdout"), stderr: output("stderr") });
    clearTimeout(idle);
    this.opts.signal?.removeEventListener("abort", onAbort);
    for (const stream of ["stdout", "stderr"] as const) emit(stream, maskers[stream].end());
    const durationMs = Date.now() - started;
    const reason = status.timedOut
      ? `killed after the step's timeout of ${Math.round((step.timeoutMs ?? this.opts.defaultTimeoutMs ?? THREE_HOURS) / 1000)} s`
      : idleKilled
        ? `killed after ${Math.round((this.opts.idleTimeoutMs ?? TEN_MINUTES) / 1000)} s without output`
        : this.opts.signal?.aborted
          ? "canceled"
          : status.code !== 0
            ? status.code === null
              ? `killed by ${status.signal}`
              : `exited with code ${status.code}`
            : undefined;
    if (reason && step.onFail === "stop") this.stopped = true;
    this.record(step, job, { status: reason ? "failed" : "success", exitCode: status.code, durationMs, ...(reason && { reason }) });
  }

  /** Later sources win: CI variables and secrets, the pipeline's env, the service's env files, its `environment`, the step's env. */
  private envOf(step: Step): Record<string, string> {
    const service = step.service === undefined ? undefined : this.opts.pipeline.services[step.service];
    return { ...this.opts.env, ...this.opts.pipeline.env, ...(service && this.opts.serviceEnv?.[service.name]), ...service?.environment, ...step.env };
  }

  /** A service's environment: what every step gets, then its env files and its `environment`. */
  private envOfService(service: Service): Record<string, string> {
    return { ...this.opts.env, ...this.opts.pipeline.env, ...this.opts.serviceEnv?.[service.name], ...service.environment };
  }

  private reasonToSkip(step: Step): string | undefined {
    if (this.opts.signal?.aborted) return "canceled";
    if (this.stopped) return "an earlier step failed";
    if (step.type === "manual" && !this.opts.approvals?.has(step.id)) return "manual step: needs an approval";
    if (step.type === "push" && !this.opts.publish) return "this run publishes no images (a pull request, or slipway run)";
    return undefined;
  }

  private imageOf(step: Step): string {
    const service = step.service ? this.opts.pipeline.services[step.service] : undefined;
    return step.image ?? (service && imageOfService(service)) ?? this.opts.pipeline.image ?? HOST_IMAGE;
  }

  /** The argv to run, or why the step cannot run here. */
  private commandOf(step: Step): string[] | string {
    const service = step.service ? this.opts.pipeline.services[step.service] : undefined;
    const command: Command | undefined = step.command ?? service?.command;
    if (!command) return "the step has no command, and neither has its service";
    return command.kind === "shell" ? ["/bin/sh", "-c", command.script] : command.argv;
  }
}
