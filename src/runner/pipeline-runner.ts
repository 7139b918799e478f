import { createMasker, type Masker } from "../crypto/masking.js";
import type { Command, Pipeline, PipelineNode, Step } from "../pipeline/model.js";
import type { Sandbox, SandboxBackend, SandboxSpec } from "../sandbox/backend.js";

export type StepStatus = "success" | "failed" | "skipped" | "error";

export type RunEvent =
  | { type: "step-start"; step: Step; job: number }
  | { type: "output"; step: Step; job: number; stream: "stdout" | "stderr"; data: Buffer }
  | { type: "step-end"; step: Step; job: number; result: StepResult };

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
  pipeline: Pipeline;
  /** The steps that run for this ref (see selectSteps). */
  nodes: PipelineNode[];
  /** Puts the repository into /workspace of a fresh sandbox. */
  checkout(sandbox: Sandbox): Promise<void>;
  /** Environment for every step: CI variables and the secrets the config names. */
  env: Record<string, string>;
  /** Values replaced by *** in all output. */
  secrets: string[];
  /** Runs only steps with these names (and the groups around them). */
  only?: string[];
  /** Manual steps run only when approved; `slipway run` approves none. */
  approved?(step: Step): boolean;
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
}

const THREE_HOURS = 3 * 3600_000;
const TEN_MINUTES = 600_000;

/**
 * Runs a selected pipeline: the top level and every serial group in one sandbox (steps share
 * their files), each branch of a parallel group in a sandbox of its own, concurrently. A failed
 * step stops what follows unless it says `on_fail: continue`. Output reaches `onEvent` masked.
 */
export class PipelineRunner {
  private readonly results: StepResult[] = [];
  private stopped = false;
  private jobs = 0;

  constructor(private readonly opts: RunOptions) {}

  async run(): Promise<RunResult> {
    await this.inSandbox((s, job) => this.serial(this.opts.nodes, s, job), this.opts.initial);
    const failed = this.results.some((r) => r.status === "failed" || r.status === "error");
    return { status: failed ? "failed" : "success", steps: this.results };
  }

  private async inSandbox(body: (sandbox: Sandbox, job: number) => Promise<void>, ready?: Sandbox): Promise<void> {
    const job = this.jobs++;
    const sandbox = ready ?? (await this.opts.backend.create({ image: { kind: "host" }, limits: this.opts.limits, network: this.opts.network }));
    try {
      if (!ready) await this.opts.checkout(sandbox);
      await body(sandbox, job);
    } finally {
      await sandbox.destroy();
    }
  }

  private async serial(nodes: PipelineNode[], sandbox: Sandbox, job: number): Promise<void> {
    for (const node of nodes) {
      if (node.kind === "step") await this.step(node, sandbox, job);
      else if (node.type === "serial") await this.serial(node.steps, sandbox, job);
      else await Promise.all(node.steps.map((child) => this.inSandbox((s, j) => this.serial([child], s, j))));
    }
  }

  private record(step: Step, job: number, result: Omit<StepResult, "id" | "name">): void {
    const full = { id: step.id, name: step.name, ...result };
    this.results.push(full);
    this.opts.onEvent({ type: "step-end", step, job, result: full });
  }

  private async step(step: Step, sandbox: Sandbox, job: number): Promise<void> {
    if (this.opts.only && !this.opts.only.includes(step.name)) return;
    const skip = this.reasonToSkip(step);
    if (skip) return this.record(step, job, { status: "skipped", exitCode: null, durationMs: 0, reason: skip });
    const command = this.commandOf(step);
    if (typeof command === "string") {
      this.stopped ||= step.onFail === "stop";
      return this.record(step, job, { status: "error", exitCode: null, durationMs: 0, reason: command });
    }
    this.opts.onEvent({ type: "step-start", step, job });
    const started = Date.now();
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
    const env = { ...this.opts.env, ...this.opts.pipeline.env, ...step.env };
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

  private reasonToSkip(step: Step): string | undefined {
    if (this.opts.signal?.aborted) return "canceled";
    if (this.stopped) return "an earlier step failed";
    if (step.type === "manual" && !this.opts.approved?.(step)) return "manual step: needs an approval";
    if (step.type === "push") return "push steps publish built images, which come with image builds";
    return undefined;
  }

  /** The argv to run, or why the step cannot run here. */
  private commandOf(step: Step): string[] | string {
    const service = step.service ? this.opts.pipeline.services[step.service] : undefined;
    const image = step.image ?? service?.image ?? this.opts.pipeline.image;
    if (service?.build) return `service ${service.name} is built from a Dockerfile; image builds come in a later version`;
    if (image && image !== "host") return `image ${image}: only the "host" image runs so far (OCI images come next); set image: host`;
    const command: Command | undefined = step.command ?? service?.command;
    if (!command) return "the step has no command, and neither has its service";
    return command.kind === "shell" ? ["/bin/sh", "-c", command.script] : command.argv;
  }
}
