import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { secretValueProblem } from "../crypto/masking.js";
import { diskFiles, formatProblem, hasErrors, loadPipeline, selectSteps, type Pipeline, type PipelineNode, type Step } from "../pipeline/index.js";
import { PipelineRunner, type RunEvent, type StepResult } from "../runner/pipeline-runner.js";
import { resolveServiceEnv, type ServiceEnv } from "../runner/service-env.js";
import { EnvFileError } from "../secrets/env-file-format.js";
import { ImageBuilder } from "../images/image-builder.js";
import { imageStoreFromEnv } from "../images/image-store.js";
import { BwrapBackend } from "../sandbox/bwrap-backend.js";
import type { Sandbox } from "../sandbox/backend.js";

export interface RunFlags {
  steps: string[];
  secrets: string[];
  envFile?: string;
  branch?: string;
}

export class RunUsageError extends Error {}

const colour = (code: number, text: string) => (process.stdout.isTTY ? `\x1b[${code}m${text}\x1b[0m` : text);
const statusMark: Record<StepResult["status"], string> = { success: colour(32, "✓ passed"), failed: colour(31, "✗ failed"), error: colour(31, "✗ error"), skipped: colour(33, "– skipped") };

/**
 * `slipway run`: this repository's pipeline, locally, in the same sandboxes a server would use,
 * with no server. Returns the exit code: 0 when every step passed, 1 when one failed, 2 for bad
 * usage or a bad config.
 */
export async function runCommand(dir: string, flags: RunFlags): Promise<number> {
  const loaded = loadPipeline(dir);
  for (const p of loaded.problems) process.stderr.write(formatProblem(p) + "\n");
  if (!loaded.pipeline || hasErrors(loaded.problems)) {
    if (!loaded.found) process.stderr.write("no pipeline config here: add a .slipway.yml (see `slipway validate`)\n");
    return 2;
  }
  const secrets = parseSecrets(flags);
  const git = gitFacts(dir);
  const branch = flags.branch ?? git.branch;
  const nodes = selectSteps(loaded.pipeline, { branch });
  const unknown = flags.steps.filter((name) => !hasStep(nodes, name));
  if (unknown.length) throw new RunUsageError(`no step named ${unknown.join(", ")} runs on branch ${branch}`);
  const serviceEnv = await localServiceEnv(dir, loaded.pipeline, nodes);

  const env: Record<string, string> = {
    CI: "true",
    CI_NAME: "slipway",
    CI_BUILD_ID: `local-${Date.now()}`,
    CI_PROJECT_ID: "local",
    CI_BRANCH: branch,
    CI_COMMIT_ID: git.commit,
    CI_COMMIT_MESSAGE: git.message,
    CI_COMMITTER_NAME: git.author,
    CI_COMMITTER_EMAIL: git.email,
    CI_REPO_NAME: path.basename(path.resolve(dir)),
    ...secrets,
  };
  const backend = new BwrapBackend({ onWarning: (m) => process.stderr.write(`slipway: ${m}\n`) });
  const archive = workingTree(dir);
  const printer = new LivePrinter();
  const aborter = new AbortController();
  process.once("SIGINT", () => aborter.abort());
  const images = imageStoreFromEnv();
  const result = await new PipelineRunner({
    backend,
    images,
    builder: new ImageBuilder(backend, images),
    buildArgs: serviceEnv.buildArgs,
    pipeline: loaded.pipeline,
    nodes,
    env,
    secrets: Object.values(secrets),
    serviceEnv: serviceEnv.env,
    only: flags.steps.length ? flags.steps : undefined,
    checkout: (sandbox) => unpack(sandbox, archive),
    onEvent: (e) => printer.event(e),
    signal: aborter.signal,
  }).run();
  printer.summary(result.steps);
  return result.status === "success" ? 0 : 1;
}

/** The services' env files from the working tree; encrypted ones stay shut, as only the server holds the key. */
async function localServiceEnv(dir: string, pipeline: Pipeline, nodes: PipelineNode[]): Promise<ServiceEnv> {
  try {
    return await resolveServiceEnv(pipeline, nodes, diskFiles(dir), async (file) => {
      process.stderr.write(`slipway: ${file} is not decrypted by slipway run (only the server holds the project's key); give its variables with --env-file\n`);
      return {};
    });
  } catch (err) {
    throw err instanceof EnvFileError ? new RunUsageError(err.message) : err;
  }
}

function hasStep(nodes: ReturnType<typeof selectSteps>, name: string): boolean {
  return nodes.some((n) => (n.kind === "step" ? n.name === name : hasStep(n.steps, name)));
}

function parseSecrets(flags: RunFlags): Record<string, string> {
  const pairs = [...flags.secrets];
  if (flags.envFile) {
    const text = readFileSync(flags.envFile, "utf8");
    for (const line of text.split(/\r?\n/)) if (line.trim() && !line.trim().startsWith("#")) pairs.push(line);
  }
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    const name = pair.slice(0, eq);
    if (eq < 1 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new RunUsageError(`a secret is NAME=VALUE with an environment variable name, not ${JSON.stringify(pair.slice(0, 40))}`);
    const problem = secretValueProblem(pair.slice(eq + 1));
    if (problem) throw new RunUsageError(`secret ${name}: ${problem}`);
    out[name] = pair.slice(eq + 1);
  }
  return out;
}

function gitFacts(dir: string): { branch: string; commit: string; message: string; author: string; email: string } {
  const git = (...args: string[]) => {
    try {
      return execFileSync("git", ["-C", dir, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      return "";
    }
  };
  return {
    branch: git("rev-parse", "--abbrev-ref", "HEAD") || "main",
    commit: git("rev-parse", "HEAD") || "0".repeat(40),
    message: git("log", "-1", "--format=%B"),
    author: git("log", "-1", "--format=%an"),
    email: git("log", "-1", "--format=%ae"),
  };
}

/** The working tree as a tar archive: tracked and untracked files that git does not ignore, and .git itself. */
function workingTree(dir: string): Buffer {
  const max = 1024 ** 3;
  let files: string[] | undefined;
  try {
    files = execFileSync("git", ["-C", dir, "ls-files", "-co", "--exclude-standard", "-z"], { maxBuffer: max, stdio: ["ignore", "pipe", "ignore"] }).toString("utf8").split("\0").filter(Boolean);
  } catch {
    files = undefined;
  }
  const list = files ? [...files, ...(hasGitDir(dir) ? [".git"] : [])] : ["."];
  return execFileSync("tar", ["-C", dir, "--null", "-cf", "-", "-T", "-"], { input: list.join("\0"), maxBuffer: max });
}

function hasGitDir(dir: string): boolean {
  try {
    return execFileSync("git", ["-C", dir, "rev-parse", "--git-dir"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim() === ".git";
  } catch {
    return false;
  }
}

async function unpack(sandbox: Sandbox, archive: Buffer): Promise<void> {
  let err = "";
  const status = await sandbox.exec({ argv: ["tar", "-xf", "-", "-C", "/workspace"] }, { stdin: archive, stderr: (d) => (err += d) });
  if (status.code !== 0) throw new Error(`could not copy the working tree into the sandbox: ${err.trim()}`);
}

/** Live output: step headers, and each output line of a parallel branch prefixed with its step. */
class LivePrinter {
  private readonly partial = new Map<string, string>();

  event(e: RunEvent): void {
    if (e.type === "step-start") {
      process.stdout.write(colour(36, `▶ ${e.step.name}`) + "\n");
    } else if (e.type === "output") {
      this.output(e.step, e.job, e.stream, e.data.toString("utf8"));
    } else if (e.type === "service-output") {
      (e.stream === "stderr" ? process.stderr : process.stdout).write(e.data);
    } else if (e.type === "service-status") {
      process.stdout.write(colour(36, `● ${e.service}: ${e.message}`) + "\n");
    } else {
      this.flush(e.step, e.job);
      const r = e.result;
      process.stdout.write(`${statusMark[r.status]} ${r.name} (${seconds(r.durationMs)})${r.reason ? ` — ${r.reason}` : ""}\n`);
    }
  }

  /** Job 0 is the top level; every other job is a branch of a parallel group. */
  private output(step: Step, job: number, stream: string, text: string): void {
    const key = `${step.id}/${stream}`;
    const lines = ((this.partial.get(key) ?? "") + text).split("\n");
    this.partial.set(key, lines.pop()!);
    const prefix = job === 0 ? "" : colour(90, `[${step.name}] `);
    for (const line of lines) (stream === "stderr" ? process.stderr : process.stdout).write(prefix + line + "\n");
  }

  private flush(step: Step, job: number): void {
    for (const stream of ["stdout", "stderr"]) {
      const rest = this.partial.get(`${step.id}/${stream}`);
      if (rest) this.output(step, job, stream, "\n");
    }
  }

  summary(results: StepResult[]): void {
    const width = Math.max(4, ...results.map((r) => r.name.length));
    process.stdout.write(`\n${"step".padEnd(width)}  status     duration\n`);
    for (const r of results) process.stdout.write(`${r.name.padEnd(width)}  ${r.status.padEnd(9)}  ${seconds(r.durationMs)}${r.status === "skipped" && r.reason ? `  (${r.reason})` : ""}\n`);
    const failed = results.filter((r) => r.status === "failed" || r.status === "error").length;
    process.stdout.write(failed ? colour(31, `\n${failed} of ${results.length} steps failed\n`) : colour(32, `\nall ${results.length} steps passed\n`));
  }
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
