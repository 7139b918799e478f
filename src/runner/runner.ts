import type { LeasedJob } from "../builds/builds.js";
import { configFileNames, hasErrors, memoryFiles, readPipeline, selectSteps, formatProblem } from "../pipeline/index.js";
import type { Sandbox, SandboxBackend, SandboxSpec } from "../sandbox/backend.js";
import { gitCheckoutFor } from "./git-checkout.js";
import { PipelineRunner, type RunEvent } from "./pipeline-runner.js";

/** How a runner reaches the runner API: HTTPS for runners elsewhere, in-process for the embedded one. */
export type Transport = (path: string, body: unknown, signal?: AbortSignal) => Promise<{ status: number; payload: unknown }>;

export interface RunnerOptions {
  /** Replaces HTTPS, e.g. with the server's own request injection for the embedded runner. */
  transport?: Transport;
  /** How long one lease request waits for a job. */
  leaseWaitMs?: number;
  /** The server's base URL, e.g. https://slipway.example.com (TLS is verified). */
  server: string;
  token: string;
  backend: SandboxBackend;
  /** Puts the job's repository into /workspace of a sandbox; by default a git clone with the project's deploy key. */
  checkout?(job: LeasedJob, sandbox: Sandbox): Promise<void>;
  /** Network of build sandboxes (cloning needs outbound access). */
  network?: SandboxSpec["network"];
  onError?(err: unknown): void;
}

// Also how soon a canceled job notices: cancel must take effect within seconds.
const HEARTBEAT_MS = 1_000;

/** Thrown by the API client for an answer that is not 2xx, with the server's error code. */
export class RunnerApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A runner: leases jobs from the server over its runner API, runs each pipeline in sandboxes,
 * streams the masked output back as it comes, and reports the end. The embedded runner of
 * `slipway serve` and `slipway runner` on another machine are this same class.
 */
export class Runner {
  private stopping = false;
  private readonly loops: Promise<void>[] = [];
  private readonly current = new AbortController();

  private readonly checkout: (job: LeasedJob, sandbox: Sandbox) => Promise<void>;

  constructor(private readonly opts: RunnerOptions) {
    this.checkout = opts.checkout?.bind(opts) ?? gitCheckoutFor(this);
  }

  start(concurrency = 1): void {
    for (let i = 0; i < concurrency; i++) this.loops.push(this.loop());
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.current.abort();
    await Promise.allSettled(this.loops);
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      try {
        const leased = await this.call<{ job: LeasedJob } | null>("/runner/lease", { waitMs: this.opts.leaseWaitMs ?? 20_000 }, this.current.signal);
        if (leased) await this.execute(leased.job);
      } catch (err) {
        if (this.stopping) return;
        this.opts.onError?.(err);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  async call<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    const { status, payload } = await (this.opts.transport ?? this.overHttps)(path, body, signal);
    if (status === 204) return null as T;
    const error = (payload as { error?: { code: string; message: string } } | undefined)?.error;
    if (status >= 300) throw new RunnerApiError(status, error?.code ?? "unknown", error?.message ?? `HTTP ${status}`);
    return payload as T;
  }

  private readonly overHttps: Transport = async (path, body, signal) => {
    const res = await fetch(`${this.opts.server}/api/v1${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.opts.token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
    return { status: res.status, payload: res.status === 204 ? undefined : await res.json().catch(() => undefined) };
  };

  private async execute(job: LeasedJob): Promise<void> {
    const canceled = new AbortController();
    const heartbeat = setInterval(() => {
      this.call<{ cancel: boolean }>(`/runner/jobs/${job.jobId}/heartbeat`, {})
        .then((r) => r.cancel && canceled.abort())
        .catch((err: unknown) => {
          // A lost lease means another runner may take the job: stop working on it.
          if (err instanceof RunnerApiError && err.code === "lease_lost") canceled.abort();
        });
    }, HEARTBEAT_MS);
    // Stopping the runner kills what it runs; the job is not finished, so its lease runs out and it is retried.
    const onStop = () => canceled.abort();
    this.current.signal.addEventListener("abort", onStop);
    const log = new LogSender((offset, data) => this.call(`/runner/jobs/${job.jobId}/log`, { offset, data: data.toString("base64") }));
    try {
      const outcome = await this.runPipeline(job, log, canceled.signal);
      if (this.stopping) return;
      await log.flush();
      await this.call(`/runner/jobs/${job.jobId}/finish`, outcome);
    } catch (err) {
      log.write(`\nslipway: ${(err as Error).message}\n`);
      await log.flush().catch(() => undefined);
      await this.call(`/runner/jobs/${job.jobId}/finish`, { status: "error", reason: (err as Error).message }).catch(() => undefined);
    } finally {
      this.current.signal.removeEventListener("abort", onStop);
      clearInterval(heartbeat);
    }
  }

  /** The runner's network, narrowed to the project's egress allowlist when it has one. */
  private networkFor(job: LeasedJob): SandboxSpec["network"] {
    const base = this.opts.network;
    return base?.mode === "outbound" && job.egressAllowlist ? { mode: "outbound", allow: job.egressAllowlist } : base;
  }

  private async runPipeline(job: LeasedJob, log: LogSender, signal: AbortSignal): Promise<{ status: "success" | "failed" | "error"; reason: string | null }> {
    // The sandbox that reads the config runs the top level of the pipeline too.
    const network = this.networkFor(job);
    const sandbox = await this.opts.backend.create({ image: { kind: "host" }, network });
    let handedOver = false;
    try {
      await this.checkout(job, sandbox);
      const loaded = readPipeline(memoryFiles(await readConfigFiles(sandbox)));
      for (const p of loaded.problems) log.write(formatProblem(p) + "\n");
      if (!loaded.pipeline || hasErrors(loaded.problems)) {
        return { status: "error", reason: loaded.found ? "the pipeline config has errors" : "no pipeline config in the repository (.slipway.yml or codeship-steps.yml)" };
      }
      const pipeline = loaded.pipeline;
      const secrets = pipeline.secrets.length ? (await this.call<{ secrets: Record<string, string> }>(`/runner/jobs/${job.jobId}/secrets`, { names: pipeline.secrets })).secrets : {};
      const env: Record<string, string> = {
        CI: "true",
        CI_NAME: "slipway",
        CI_BUILD_ID: job.buildId,
        CI_BUILD_NUMBER: String(job.buildNumber),
        CI_PROJECT_ID: job.projectId,
        CI_BRANCH: job.branch ?? "",
        CI_COMMIT_ID: job.commit ?? "",
        CI_COMMIT_MESSAGE: job.message,
        CI_COMMITTER_NAME: job.author.name,
        CI_COMMITTER_EMAIL: job.author.email,
        CI_REPO_NAME: job.repositoryUrl?.replace(/\.git$/, "").split(/[/:]/).pop() ?? "",
        ...(job.pullRequest !== null && { CI_PR_NUMBER: String(job.pullRequest) }),
        ...secrets,
      };
      handedOver = true;
      const result = await new PipelineRunner({
        backend: this.opts.backend,
        pipeline,
        nodes: selectSteps(pipeline, { branch: job.branch ?? undefined, tag: job.tag ?? undefined }),
        env,
        secrets: Object.values(secrets),
        checkout: (s) => this.checkout(job, s),
        initial: sandbox,
        network,
        onEvent: (e) => log.write(render(e)),
        signal,
      }).run();
      const failed = result.steps.find((s) => s.status === "failed" || s.status === "error");
      if (signal.aborted) return { status: "failed", reason: "canceled" };
      return failed ? { status: "failed", reason: `step ${failed.name}: ${failed.reason ?? failed.status}` } : { status: "success", reason: null };
    } finally {
      if (!handedOver) await sandbox.destroy();
    }
  }
}

/**
 * Every config file the repository has, read in one exec inside the sandbox (so a symlink in
 * the checkout resolves there, not on the runner): NUL-separated name and base64 content.
 */
async function readConfigFiles(sandbox: Sandbox): Promise<Record<string, string>> {
  const script = 'cd /workspace || exit 0; for f in "$@"; do if [ -f "$f" ]; then printf "%s\\0" "$f"; head -c 1048577 -- "$f" | base64 -w0; printf "\\0"; fi; done';
  const out: Buffer[] = [];
  const status = await sandbox.exec({ argv: ["/bin/sh", "-c", script, "read-config", ...Object.values(configFileNames).flat()] }, { stdout: (d) => out.push(d) });
  if (status.code !== 0) throw new Error("could not read the pipeline config in the sandbox");
  const parts = Buffer.concat(out).toString("utf8").split("\0");
  const files: Record<string, string> = {};
  for (let i = 0; i + 1 < parts.length; i += 2) files[parts[i]!] = Buffer.from(parts[i + 1]!, "base64").toString("utf8");
  return files;
}

function render(e: RunEvent): Buffer | string {
  if (e.type === "output") return e.data;
  if (e.type === "step-start") return `\x1b[36m▶ ${e.step.name}\x1b[0m\n`;
  const r = e.result;
  return `${r.status === "success" ? "\x1b[32m✓" : "\x1b[31m✗"} ${r.name}: ${r.status}${r.reason ? ` (${r.reason})` : ""} in ${(r.durationMs / 1000).toFixed(1)}s\x1b[0m\n`;
}

/**
 * Sends output to the server in order, one request at a time, batching whatever arrives while
 * a request is in flight, so lines reach live readers at once without a request per write.
 */
class LogSender {
  private offset = 0;
  private buffered: Buffer[] = [];
  private sending: Promise<void> = Promise.resolve();
  /** The first failed send: later output is dropped, and flush reports it. */
  private failed?: unknown;

  constructor(private readonly send: (offset: number, data: Buffer) => Promise<unknown>) {}

  write(data: Buffer | string): void {
    if (this.failed) return;
    this.buffered.push(typeof data === "string" ? Buffer.from(data) : data);
    this.sending = this.sending
      .then(() => this.drain())
      .catch((err: unknown) => {
        this.failed ??= err;
        this.buffered = [];
      });
  }

  private async drain(): Promise<void> {
    while (this.buffered.length) {
      const data = Buffer.concat(this.buffered.splice(0));
      for (let at = 0; at < data.length; at += 256 * 1024) {
        const part = data.subarray(at, at + 256 * 1024);
        await this.send(this.offset, part);
        this.offset += part.length;
      }
    }
  }

  async flush(): Promise<void> {
    await this.sending;
    if (this.failed) throw this.failed;
  }
}
