import { setTimeout as sleep } from "node:timers/promises";
import { createMasker, type Masker } from "../crypto/masking.js";
import type { Command, Healthcheck, Pipeline, PipelineNode, Service, Step } from "../pipeline/model.js";
import { HOST_NAME, type ExitStatus, type Sandbox, type SandboxBackend, type SandboxSpec } from "../sandbox/backend.js";

/** What the services of a job say, for its log: masked, in whole lines, each prefixed with `[name] `. */
export interface ServiceEvents {
  output(service: string, stream: "stdout" | "stderr", data: Buffer): void;
  /** Started, healthy, exited: one line each, without the prefix. */
  status(service: string, message: string): void;
}

export interface JobServicesOptions {
  backend: SandboxBackend;
  pipeline: Pipeline;
  /** The job's sandbox: every service joins its network namespace. */
  job: Sandbox;
  /** The root filesystem of an image and the environment it sets (`host`: the runner's own /usr). */
  root(image: string, progress: (message: string) => void): Promise<Pick<SandboxSpec, "image" | "env">>;
  /** What a service's command and health check see, on top of its image's environment. */
  envOf(service: Service): Record<string, string>;
  /** Values replaced by *** in the services' output and in failure reasons. */
  secrets: string[];
  limits?: SandboxSpec["limits"];
  signal?: AbortSignal;
  events: ServiceEvents;
}

/** Longest line kept back waiting for its end; a longer one is cut so a service cannot grow memory without bound. */
const MAX_LINE = 64 * 1024;
/** How much of a failed health check's output a failure reason quotes. */
const MAX_CHECK_OUTPUT = 2000;

/**
 * The services that run beside a step, dependencies first. A step that names a `service` runs in
 * it (as in Codeship), with what that service `depends_on` beside it; a `.slipway.yml` step that
 * names none has beside it every service that no step runs in. Returns why not, for a `depends_on`
 * the loaders would have refused (unknown service, cycle).
 */
export function servicesBeside(step: Step, pipeline: Pipeline): string[] | string {
  if (step.service !== undefined) return startOrder(pipeline.services, Object.hasOwn(pipeline.services, step.service) ? pipeline.services[step.service]!.dependsOn : []);
  if (pipeline.format !== "slipway") return [];
  const runIn = new Set<string>();
  const collect = (nodes: readonly PipelineNode[]): void => {
    for (const node of nodes) {
      if (node.service !== undefined) runIn.add(node.service);
      if (node.kind === "group") collect(node.steps);
    }
  };
  collect(pipeline.steps);
  return startOrder(pipeline.services, Object.keys(pipeline.services).filter((name) => !runIn.has(name)));
}

/** `roots` and everything they depend on, each after its dependencies. */
function startOrder(services: Record<string, Service>, roots: readonly string[]): string[] | string {
  const order: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string): string | undefined => {
    if (state.get(name) === "done") return undefined;
    if (state.get(name) === "visiting") return `the services' depends_on has a cycle through ${name}`;
    if (!Object.hasOwn(services, name)) return `unknown service ${name}`;
    state.set(name, "visiting");
    for (const dep of services[name]!.dependsOn) {
      const problem = visit(dep);
      if (problem) return problem;
    }
    state.set(name, "done");
    order.push(name);
    return undefined;
  };
  for (const root of roots) {
    const problem = visit(root);
    if (problem) return problem;
  }
  return order;
}

const argvOf = (command: Command): string[] => (command.kind === "shell" ? ["/bin/sh", "-c", command.script] : command.argv);

function describeExit(status: ExitStatus): string {
  if (status.timedOut) return "after its timeout";
  return status.code === null ? `killed by ${status.signal}` : `with code ${status.code}`;
}

/**
 * The services of one job: each in a sandbox of its own (own root filesystem, uid and limits)
 * that shares the job sandbox's network namespace, so steps and services talk over loopback and
 * reach each other by name (every service name maps to 127.0.0.1 in every one of their
 * /etc/hosts). Started on demand in dependency order, each waited for until healthy; a service
 * that fails stays failed for the rest of the job. `stop` ends them all.
 */
export class JobServices {
  /** Per service: undefined once healthy, or why it is not. */
  private readonly state = new Map<string, Promise<string | undefined>>();
  private readonly sandboxes: Sandbox[] = [];
  /** Each service's command, until it exits. */
  private readonly running: Array<Promise<unknown>> = [];
  private named?: Promise<void>;
  private stopping = false;

  constructor(private readonly opts: JobServicesOptions) {}

  /** Starts those of `names` (in start order) not started yet; resolves with the first failure, if any. */
  async ensure(names: readonly string[]): Promise<string | undefined> {
    for (const name of names) {
      if (!this.state.has(name)) this.state.set(name, this.start(this.opts.pipeline.services[name]!));
      const problem = await this.state.get(name);
      if (problem) return problem;
    }
    return undefined;
  }

  /** Kills every service, and returns once their last output is out; their end is not reported as an early exit. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.sandboxes.map((s) => s.destroy()));
    await Promise.all(this.running);
  }

  /** Every service name resolves to the shared loopback, whether that service runs in this job or not. */
  private hosts(): Record<string, string> {
    return Object.fromEntries(Object.keys(this.opts.pipeline.services).filter((n) => HOST_NAME.test(n)).map((n) => [n, "127.0.0.1"]));
  }

  private async start(service: Service): Promise<string | undefined> {
    const image = imageOfService(service);
    if (image === undefined) return `service ${service.name} has no image`;
    if (!service.command) return `service ${service.name} has no command; Slipway does not run an image's own command yet`;
    if (this.opts.signal?.aborted) return "canceled";
    let sandbox: Sandbox;
    try {
      await (this.named ??= this.opts.job.addHosts(this.hosts()));
      const root = await this.opts.root(image, (message) => this.opts.events.status(service.name, message.trim()));
      sandbox = await this.opts.backend.create({
        ...root,
        limits: this.opts.limits,
        shareNetworkWith: this.opts.job,
        ...(HOST_NAME.test(service.name) && { hostname: service.name }),
      });
      this.sandboxes.push(sandbox);
      await sandbox.addHosts(this.hosts());
    } catch (err) {
      return `service ${service.name} could not start: ${(err as Error).message}`;
    }
    const env = this.opts.envOf(service);
    const print = (stream: "stdout" | "stderr") => new PrefixedLines(service.name, this.opts.secrets, (data) => this.opts.events.output(service.name, stream, data));
    const streams = { stdout: print("stdout"), stderr: print("stderr") };
    this.opts.events.status(service.name, "started");
    const done = sandbox
      .exec({ argv: argvOf(service.command), env, cwd: service.workingDir }, { stdout: (d) => streams.stdout.write(d), stderr: (d) => streams.stderr.write(d) })
      // Only a sandbox destroyed under it (the job ending) refuses the exec.
      .catch((): ExitStatus => ({ code: null, signal: "SIGKILL", timedOut: false }));
    this.running.push(
      done.then((status) => {
        streams.stdout.end();
        streams.stderr.end();
        this.exited(service.name, status);
      }),
    );
    if (!service.healthcheck) return undefined;
    const problem = await this.waitUntilHealthy(service, service.healthcheck, sandbox, env, done);
    if (!problem) this.opts.events.status(service.name, "healthy");
    return problem;
  }

  private exited(name: string, status: ExitStatus): void {
    if (this.stopping) return;
    this.opts.events.status(name, `exited ${describeExit(status)}`);
    this.state.set(name, Promise.resolve(`service ${name} exited ${describeExit(status)}`));
  }

  /**
   * Runs the health check at once and then every interval until it passes. Failures within the
   * start period do not count; after `retries` counted failures in a row (at least one) the
   * service is unhealthy. A service that exits meanwhile has failed.
   */
  private async waitUntilHealthy(service: Service, check: Healthcheck, sandbox: Sandbox, env: Record<string, string>, done: Promise<ExitStatus>): Promise<string | undefined> {
    let exit: ExitStatus | undefined;
    void done.then((status) => (exit = status));
    const since = Date.now();
    let failures = 0;
    for (;;) {
      // Masked as it arrives, so that keeping only the end cannot cut a secret into an unmasked part.
      const masker = createMasker(this.opts.secrets);
      let said = Buffer.alloc(0);
      const collect = (d: Buffer) => (said = Buffer.concat([said, masker.write(d)]).subarray(-MAX_CHECK_OUTPUT));
      const status = await sandbox.exec({ argv: argvOf(check.command), env, cwd: service.workingDir, timeoutMs: check.timeoutMs, signal: this.opts.signal }, { stdout: collect, stderr: collect }).catch(() => undefined);
      if (this.opts.signal?.aborted) return "canceled";
      if (!status) return `service ${service.name} was stopped before it was healthy`;
      if (exit) return `service ${service.name} exited ${describeExit(exit)} before it was healthy`;
      if (status.code === 0 && !status.timedOut) return undefined;
      if (Date.now() - since >= check.startPeriodMs) failures++;
      if (failures >= Math.max(1, check.retries)) {
        const output = Buffer.concat([said, masker.end()]).subarray(-MAX_CHECK_OUTPUT).toString("utf8").trim();
        const how = status.timedOut ? `timed out after ${check.timeoutMs / 1000} s` : `exited ${describeExit(status)}`;
        return `service ${service.name} is unhealthy: its health check failed ${failures} times in a row, the last one ${how}${output ? `, saying: ${output}` : " with no output"}`;
      }
      await pause(check.intervalMs, done, this.opts.signal);
    }
  }
}

/** One output stream of a service: masked, then cut into lines, each prefixed with the service's name. */
class PrefixedLines {
  private readonly masker: Masker;
  private readonly prefix: Buffer;
  private rest = Buffer.alloc(0);

  constructor(name: string, secrets: string[], private readonly emit: (data: Buffer) => void) {
    this.masker = createMasker(secrets);
    this.prefix = Buffer.from(`[${name}] `);
  }

  write(chunk: Buffer): void {
    this.push(this.masker.write(chunk), false);
  }

  end(): void {
    this.push(this.masker.end(), true);
  }

  private push(data: Buffer, end: boolean): void {
    let rest = this.rest.length > 0 ? Buffer.concat([this.rest, data]) : data;
    const out: Buffer[] = [];
    for (let nl = rest.indexOf(10); nl !== -1; nl = rest.indexOf(10)) {
      out.push(this.prefix, rest.subarray(0, nl + 1));
      rest = rest.subarray(nl + 1);
    }
    if (rest.length > 0 && (end || rest.length >= MAX_LINE)) {
      out.push(this.prefix, rest, Buffer.from("\n"));
      rest = Buffer.alloc(0);
    }
    // A copy: the masker may hand back the caller's chunk, which must not be kept.
    this.rest = Buffer.from(rest);
    if (out.length > 0) this.emit(Buffer.concat(out));
  }
}

/** Waits `ms`, or less when `until` settles or `signal` aborts. */
async function pause(ms: number, until: Promise<unknown>, signal?: AbortSignal): Promise<void> {
  const timer = new AbortController();
  try {
    await Promise.race([sleep(ms, undefined, { signal: signal ? AbortSignal.any([signal, timer.signal]) : timer.signal }).catch(() => undefined), until]);
  } finally {
    timer.abort();
  }
}

/** What a service runs in: its image, or the image built from its Dockerfile (a name no image reference can have). */
export function imageOfService(service: Service): string | undefined {
  return service.build ? `${BUILT_PREFIX}${service.name}` : service.image;
}

export const BUILT_PREFIX = "the image built for service ";
