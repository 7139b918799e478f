import { setTimeout as sleep } from "node:timers/promises";
import { posix } from "node:path";
import type { LeasedJob } from "../builds/builds.js";
import type { StepReport } from "../builds/job-steps.js";
import type { ImageCache } from "../images/image-cache.js";
import { configFileNames, hasErrors, memoryFiles, readPipeline, selectSteps, formatProblem, type FileSource, type LoadResult } from "../pipeline/index.js";
import { flattenSteps } from "../pipeline/refs.js";
import type { Pipeline, PipelineNode } from "../pipeline/model.js";
import { WORKSPACE, type Sandbox, type SandboxBackend, type SandboxSpec } from "../sandbox/backend.js";
import { CheckoutError, gitCheckoutFor, hardenedGit, listRemoteRefs, type LeasedPoll } from "./git-checkout.js";
import { PipelineRunner, type RunEvent, type RunOptions } from "./pipeline-runner.js";
import { resolveServiceEnv } from "./service-env.js";

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
  /** Where step images come from; without it only `image: host` runs. */
  images?: RunOptions["images"];
  /** Builds the images of services built from a Dockerfile. */
  builder?: RunOptions["builder"];
  /** Publishes images for push steps (see pushImage); without it they are skipped. */
  push?: NonNullable<RunOptions["publish"]>["push"];
  /** Where projects' image caches are kept on this runner (for built services with `cached: true`). */
  imageCache?: ImageCache;
  /** Puts the job's repository into /workspace of a sandbox; by default a git clone with the project's deploy key. `signal`: the job was canceled. */
  checkout?(job: LeasedJob, sandbox: Sandbox, signal?: AbortSignal): Promise<void>;
  /** Network of build sandboxes (cloning needs outbound access). */
  network?: SandboxSpec["network"];
  /** How often to ask for a repository poll that is due (P08); 0 turns polling off. Default 15 s. */
  pollEveryMs?: number;
  onError?(err: unknown): void;
}

// Also how soon a canceled job notices: cancel must take effect within seconds.
const HEARTBEAT_MS = 1_000;
const SPARE_MAX_AGE_MS = 60_000;

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

  private readonly checkout: (job: LeasedJob, sandbox: Sandbox, signal?: AbortSignal) => Promise<void>;

  constructor(private readonly opts: RunnerOptions) {
    this.checkout = opts.checkout?.bind(opts) ?? gitCheckoutFor(this);
  }

  start(concurrency = 1): void {
    for (let i = 0; i < concurrency; i++) this.loops.push(this.loop());
    if (this.opts.pollEveryMs !== 0) this.loops.push(this.pollLoop(this.opts.pollEveryMs ?? 15_000));
  }

  /** P08: runs the repository polls that are due, one at a time, each in a fresh sandbox. */
  private async pollLoop(everyMs: number): Promise<void> {
    while (!this.stopping) {
      try {
        const leased = await this.call<{ poll: LeasedPoll } | null>("/runner/polls/lease", {}, this.current.signal);
        if (leased) {
          await this.poll(leased.poll);
          continue;
        }
      } catch (err) {
        if (this.stopping) return;
        this.opts.onError?.(err);
      }
      await sleep(everyMs, undefined, { signal: this.current.signal }).catch(() => undefined);
    }
  }

  private async poll(poll: LeasedPoll): Promise<void> {
    const network = this.networkFor(poll);
    let result: { refs: Record<string, string>; knownHosts?: string } | { error: string };
    try {
      const sandbox = await this.opts.backend.create({ image: { kind: "host" }, network });
      try {
        result = await listRemoteRefs(poll, sandbox, { timeoutMs: 60_000, signal: this.current.signal });
      } finally {
        await sandbox.destroy();
      }
    } catch (err) {
      if (this.stopping) return;
      result = { error: (err instanceof CheckoutError ? err.message : `the poll failed on the runner: ${(err as Error).message}`).slice(0, 2000) };
    }
    const path = `/runner/polls/${poll.projectId}/result`;
    await this.call(path, result, this.current.signal).catch(async (err: unknown) => {
      // The project shows why its poll failed rather than keep an old success while nothing is built.
      if (!(err instanceof RunnerApiError) || "error" in result || err.status >= 500 || err.code === "lease_lost") throw err;
      await this.call(path, { error: `Slipway refused the runner's report: ${err.message}`.slice(0, 2000) }, this.current.signal);
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.current.abort();
    await Promise.allSettled(this.loops);
  }

  /**
   * One slot: leases jobs one after another. It keeps a sandbox started ahead of its next job
   * (on the runner's own network), so that a job does not wait for one to start; a job whose
   * project narrows the network gets a sandbox of its own instead.
   */
  private async loop(): Promise<void> {
    let spare: Promise<Sandbox> | undefined;
    let spareSince = 0;
    try {
      while (!this.stopping) {
        // A sandbox's firewall knows the machine's addresses as they were when it started: an
        // old spare is replaced, so no job runs behind a stale one.
        if (spare && Date.now() - spareSince > SPARE_MAX_AGE_MS) {
          void spare.then((s) => s.destroy()).catch(() => undefined);
          spare = undefined;
        }
        if (!spare) {
          spare = this.startSpare();
          spareSince = Date.now();
        }
        try {
          const leased = await this.call<{ job: LeasedJob } | null>("/runner/lease", { waitMs: this.opts.leaseWaitMs ?? 20_000 }, this.current.signal);
          if (!leased) continue;
          const ready = this.networkFor(leased.job) === this.opts.network ? spare : undefined;
          if (ready) spare = undefined;
          await this.execute(leased.job, ready);
        } catch (err) {
          if (this.stopping) return;
          this.opts.onError?.(err);
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    } finally {
      await spare?.then((s) => s.destroy()).catch(() => undefined);
    }
  }

  private startSpare(): Promise<Sandbox> {
    const spare = this.opts.backend.create({ image: { kind: "host" }, network: this.opts.network });
    // A spare that failed to start is replaced by a fresh start when a job needs it.
    spare.catch(() => undefined);
    return spare;
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

  private async execute(job: LeasedJob, ready?: Promise<Sandbox>): Promise<void> {
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
    const log = new LogSender((offset, data) => this.call<{ truncated: boolean }>(`/runner/jobs/${job.jobId}/log`, { offset, data: data.toString("base64") }));
    // Step reports go in order, beside the log; a lost one costs the UI a status line, not the job.
    let reports = Promise.resolve();
    const report = (step: StepReport) => {
      reports = reports.then(() => this.call(`/runner/jobs/${job.jobId}/steps`, step)).then(
        () => undefined,
        (err: unknown) => this.opts.onError?.(err),
      );
    };
    try {
      const outcome = await this.runPipeline(job, log, report, canceled.signal, ready);
      if (this.stopping) return;
      await Promise.all([log.flush(), reports]);
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

  /**
   * What push steps need, when there are any: the build's fields for their tags and the registry
   * credentials (project secret DOCKERCFG). Pull requests publish nothing, and get no credentials.
   */
  private async publishFor(job: LeasedJob, nodes: readonly PipelineNode[], sandbox: Sandbox, commit?: string): Promise<RunOptions["publish"]> {
    if (!this.opts.push || job.pullRequest !== null || !flattenSteps(nodes).some((s) => s.type === "push")) return undefined;
    const { secrets } = await this.call<{ secrets: Record<string, string> }>(`/runner/jobs/${job.jobId}/secrets`, { names: ["DOCKERCFG"] });
    const [subject = "", ...body] = job.message.split("\n");
    const fields = {
      Branch: job.branch ?? "",
      CommitID: job.commit ?? commit ?? (await headCommit(sandbox)) ?? "",
      CommitMessage: subject,
      CommitDescription: body.join("\n").trim(),
      CommitterName: job.author.name,
      CommitterEmail: job.author.email,
      CommitterUsername: job.author.name,
      BuildID: job.buildId,
      BuildNumber: String(job.buildNumber),
      RepoName: repoName(job),
      ProjectID: job.projectId,
      Timestamp: String(Math.floor(Date.now() / 1000)),
      Ref: job.tag ?? job.branch ?? "",
    };
    return { fields, push: this.opts.push, ...(secrets.DOCKERCFG !== undefined && { dockercfg: secrets.DOCKERCFG }) };
  }

  /** Access to the project's image cache, when the pipeline has a service that uses one. */
  private async imageCacheFor(job: LeasedJob, pipeline: Pipeline): Promise<RunOptions["imageCache"]> {
    const cache = this.opts.imageCache;
    if (!cache || !Object.values(pipeline.services).some((s) => s.build && s.cached)) return undefined;
    const access = await this.call<{ key: string; write: boolean; maxAgeDays: number }>(`/runner/jobs/${job.jobId}/image-cache`, {});
    // A build of a tag has no branch to keep an image under: it only reads.
    return { cache, access: { key: Buffer.from(access.key, "base64"), project: job.projectId, branch: job.branch ?? "", write: access.write && job.branch !== null, maxAgeMs: access.maxAgeDays * 86_400_000 } };
  }

  /** The runner's network, narrowed to the project's egress allowlist where it has one. */
  private networkFor(job: Pick<LeasedJob, "egressAllowlist">): SandboxSpec["network"] {
    const base = this.opts.network;
    return base?.mode === "outbound" && job.egressAllowlist ? { mode: "outbound", allow: job.egressAllowlist } : base;
  }

  private async runPipeline(job: LeasedJob, log: LogSender, report: (step: StepReport) => void, signal: AbortSignal, ready?: Promise<Sandbox>): Promise<JobEnd> {
    // The sandbox that reads the config runs the top level of the pipeline too.
    const network = this.networkFor(job);
    const sandbox = (await ready?.catch(() => undefined)) ?? (await this.opts.backend.create({ image: { kind: "host" }, network }));
    let handedOver = false;
    try {
      await this.checkout(job, sandbox, signal);
      const { loaded, files } = await loadInSandbox(sandbox);
      for (const p of loaded.problems) log.write(formatProblem(p) + "\n");
      if (!loaded.pipeline || hasErrors(loaded.problems)) {
        return { status: "error", reason: loaded.found ? "the pipeline config has errors" : "no pipeline config in the repository (.slipway.yml or codeship-steps.yml)" };
      }
      const pipeline = loaded.pipeline;
      const secrets = pipeline.secrets.length ? (await this.call<{ secrets: Record<string, string> }>(`/runner/jobs/${job.jobId}/secrets`, { names: pipeline.secrets })).secrets : {};
      const nodes = selectSteps(pipeline, { branch: job.branch ?? undefined, tag: job.tag ?? undefined });
      // A build that may wait for an approval resumes at the revision it started with, not at a newer head of its branch.
      const commit = job.commit === null && hasManual(nodes) ? await headCommit(sandbox) : undefined;
      // Encrypted env files are opened by the server: the project's private key never reaches a runner.
      const serviceEnv = await resolveServiceEnv(pipeline, nodes, files, async (path, text) => (await this.call<{ env: Record<string, string> }>(`/runner/jobs/${job.jobId}/env-files`, { path, text })).env);
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
        CI_REPO_NAME: repoName(job),
        ...(job.pullRequest !== null && { CI_PR_NUMBER: String(job.pullRequest) }),
        ...secrets,
      };
      handedOver = true;
      const result = await new PipelineRunner({
        backend: this.opts.backend,
        images: this.opts.images,
        builder: this.opts.builder,
        buildArgs: serviceEnv.buildArgs,
        imageCache: await this.imageCacheFor(job, pipeline),
        publish: await this.publishFor(job, nodes, sandbox, commit),
        pipeline,
        nodes,
        env,
        secrets: [...Object.values(secrets), ...serviceEnv.secrets],
        serviceEnv: serviceEnv.env,
        checkout: (s) => this.checkout(job, s, signal),
        initial: sandbox,
        network,
        onEvent: (e) => {
          if (e.type === "step-start") report({ step: e.step.id, name: e.step.name, status: "running", sandbox: e.job, logOffset: log.written, exitCode: null, reason: null });
          if (e.type === "step-end") report({ step: e.step.id, name: e.step.name, status: e.result.status, sandbox: e.job, logOffset: log.written, exitCode: e.result.exitCode, reason: e.result.reason?.slice(0, 4000) ?? null });
          log.write(render(e));
        },
        signal,
        approvals: new Set(job.approvedSteps),
        ...(job.resumeFrom !== null && { resumeFrom: job.resumeFrom }),
      }).run();
      const failed = result.steps.find((s) => s.status === "failed" || s.status === "error");
      if (signal.aborted) return { status: "failed", reason: "canceled" };
      // A failure decides the build already, approval or not.
      if (result.waitingFor && !failed) {
        log.write(`\x1b[33m⏸ ${result.waitingFor.name}: waiting for an approval by an owner or admin\x1b[0m\n`);
        return { status: "waiting-for-approval", reason: null, waitingFor: result.waitingFor, ...(commit && { commit }) };
      }
      return failed ? { status: "failed", reason: `step ${failed.name}: ${failed.reason ?? failed.status}` } : { status: "success", reason: null };
    } finally {
      if (!handedOver) await sandbox.destroy();
    }
  }
}

/** The body of a job's finish call. */
type JobEnd = { status: "success" | "failed" | "error"; reason: string | null } | { status: "waiting-for-approval"; reason: null; waitingFor: { id: string; name: string }; commit?: string };

const repoName = (job: LeasedJob): string => job.repositoryUrl?.replace(/\.git$/, "").split(/[/:]/).pop() ?? "";

const hasManual = (nodes: readonly PipelineNode[]): boolean => nodes.some((n) => (n.kind === "step" ? n.type === "manual" : n.manual || hasManual(n.steps)));

/** The commit the checkout is at, when it is a git repository. */
async function headCommit(sandbox: Sandbox): Promise<string | undefined> {
  const out: Buffer[] = [];
  const status = await sandbox.exec({ argv: hardenedGit("-C", WORKSPACE, "rev-parse", "--verify", "--quiet", "HEAD") }, { stdout: (d) => out.push(d) });
  const commit = Buffer.concat(out).toString().trim();
  return status.code === 0 && /^[0-9a-f]{40}$/.test(commit) ? commit : undefined;
}

/**
 * The pipeline config, read in the sandbox; then, when its services name env files, read again
 * with those files too, so that they are checked as `slipway validate` checks them and kept for
 * the steps. Env files name no further files, so two reads are enough.
 */
async function loadInSandbox(sandbox: Sandbox): Promise<{ loaded: LoadResult; files: FileSource }> {
  const configNames: readonly string[] = Object.values(configFileNames).flat();
  const texts = await readSandboxFiles(sandbox, configNames);
  const first = memoryFiles(texts);
  const named = new Set<string>();
  const loaded = readPipeline({
    read: (p) => {
      const r = first.read(p);
      if ("error" in r && r.error === "missing" && !configNames.includes(p)) named.add(posix.normalize(p));
      return r;
    },
  });
  if (named.size === 0) return { loaded, files: first };
  Object.assign(texts, await readSandboxFiles(sandbox, [...named]));
  const files = memoryFiles(texts);
  return { loaded: readPipeline(files), files };
}

/**
 * Files of the checkout, read in one exec inside the sandbox (so a symlink in the checkout
 * resolves there, not on the runner), each cut one byte past the size limit of config files:
 * NUL-separated name and base64 content. Missing files are left out.
 */
async function readSandboxFiles(sandbox: Sandbox, names: readonly string[]): Promise<Record<string, string>> {
  const script = 'cd /workspace || exit 0; for f in "$@"; do if [ -f "$f" ]; then printf "%s\\0" "$f"; head -c 1048577 -- "$f" | base64 -w0; printf "\\0"; fi; done';
  const out: Buffer[] = [];
  const status = await sandbox.exec({ argv: ["/bin/sh", "-c", script, "read-files", ...names] }, { stdout: (d) => out.push(d) });
  if (status.code !== 0) throw new Error("could not read the pipeline config in the sandbox");
  const parts = Buffer.concat(out).toString("utf8").split("\0");
  const files: Record<string, string> = {};
  for (let i = 0; i + 1 < parts.length; i += 2) files[parts[i]!] = Buffer.from(parts[i + 1]!, "base64").toString("utf8");
  return files;
}

function render(e: RunEvent): Buffer | string {
  if (e.type === "output" || e.type === "service-output") return e.data;
  if (e.type === "step-start") return `\x1b[36m▶ ${e.step.name}\x1b[0m\n`;
  if (e.type === "service-status") return `\x1b[36m● ${e.service}: ${e.message}\x1b[0m\n`;
  const r = e.result;
  return `${r.status === "success" ? "\x1b[32m✓" : "\x1b[31m✗"} ${r.name}: ${r.status}${r.reason ? ` (${r.reason})` : ""} in ${(r.durationMs / 1000).toFixed(1)}s\x1b[0m\n`;
}

/**
 * Sends output to the server in order, one request at a time, batching whatever arrives while
 * a request is in flight, so lines reach live readers at once without a request per write.
 */
class LogSender {
  private offset = 0;
  /** Bytes accepted so far: where the next write lands in the job's log. */
  private accepted = 0;
  private buffered: Buffer[] = [];
  private sending: Promise<void> = Promise.resolve();
  /** The first failed send: later output is dropped, and flush reports it. */
  private failed?: unknown;
  /** The server's log is full: later output is dropped here rather than sent to be dropped there. */
  private truncated = false;

  constructor(private readonly send: (offset: number, data: Buffer) => Promise<{ truncated: boolean }>) {}

  get written(): number {
    return this.accepted;
  }

  write(data: Buffer | string): void {
    if (this.failed || this.truncated) return;
    const chunk = typeof data === "string" ? Buffer.from(data) : data;
    this.accepted += chunk.length;
    this.buffered.push(chunk);
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
        this.truncated = (await this.send(this.offset, part)).truncated;
        this.offset += part.length;
        if (this.truncated) {
          this.buffered = [];
          return;
        }
      }
    }
  }

  async flush(): Promise<void> {
    await this.sending;
    if (this.failed) throw this.failed;
  }
}
