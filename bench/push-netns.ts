import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, mkdtempSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { buildApp } from "../src/http/app.js";
import { signBody } from "../src/projects/webhooks.js";
import { injectTransport } from "../src/runner/embedded.js";
import { Runner, type RunnerOptions } from "../src/runner/runner.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import type { Services } from "../src/services.js";
import { AUTHORIZED_KEY_OPTIONS } from "../test/helpers/git-server.js";
import { plainClones } from "./plain-clones.js";
import { withSlipway, type Slipway } from "./support.js";

// The push benchmark's side inside the runner network namespace it makes (see runModuleInNetns):
// a real server listening on this namespace's loopback, the embedded runner as `slipway serve`
// sets it up (injected transport, outbound sandbox network), and signed pushes sent to the
// webhook over HTTP. The only way out of this namespace leads to the bench's sshd.

export const MARKER = "first-output";
/** The pipeline pushed: one step, whose first output is MARKER. */
export const PIPELINE = `image: host\nsteps:\n  - name: hello\n    command: echo ${MARKER}\n`;

export interface PushInput {
  repositoryUrl: string;
  /** The sshd's authorized_keys: the project's deploy key is added to it here. */
  authorizedKeys: string;
  /** The head of main in the served repository, which every push names. */
  commit: string;
  builds: number;
  /** For this process's files; the bench removes it, even should this process be killed. */
  workDir: string;
  /** The same, on a tmpfs: the deploy key of the plain clones goes there, never to disk. */
  keyDir: string;
}

/** Ascending milliseconds. */
export interface PushOutput {
  noClone: number[];
  clone: number[];
  gitClone: number[];
}

const execFileAsync = promisify(execFile);
const BUILD_TIMEOUT_MS = 120_000;

export async function main(input: PushInput): Promise<PushOutput> {
  // Every temp dir of this process (the data dirs above all) under the bench's work dir.
  process.env.TMPDIR = input.workDir;
  const repo = mkdtempSync(path.join(input.workDir, "repo-"));
  writeFileSync(path.join(repo, ".slipway.yml"), PIPELINE);
  // (a): the checkout of the live-log benchmark, a tar of a local dir: no network, no git.
  const localCheckout: RunnerOptions["checkout"] = async (_job, sandbox) => {
    const { stdout } = await execFileAsync("tar", ["-C", repo, "-cf", "-", "."], { encoding: "buffer" });
    await sandbox.exec({ argv: ["tar", "-xf", "-", "-C", "/workspace"] }, { stdin: stdout });
  };
  const noClone = await withPushServer({ checkout: localCheckout }, (s) => pushLatencies(s, input));
  const { clone, privateKey } = await withPushServer({ repositoryUrl: input.repositoryUrl }, async (s) => {
    const key = await s.services.deployKeys.revealDeployKey(s.project.id);
    // Registered at the git server as an operator would: only the public half, git-shell only.
    appendFileSync(input.authorizedKeys, `${AUTHORIZED_KEY_OPTIONS} ${key.publicKey.trim()}\n`);
    return { clone: await pushLatencies(s, input), privateKey: key.privateKey };
  });
  return { noClone, clone, gitClone: await plainClones(input, privateKey, input.builds) };
}

interface PushServer extends Slipway {
  url: string;
  webhookSecret: string;
}

/** Real services behind an HTTP listener on loopback, with the embedded runner (one slot), for `fn`; all stopped after. */
async function withPushServer<T>(opts: { repositoryUrl?: string; checkout?: RunnerOptions["checkout"] }, fn: (s: PushServer) => Promise<T>): Promise<T> {
  return withSlipway(
    async (s) => {
      const app = await buildApp(s.services, { logger: false });
      await app.listen({ host: "127.0.0.1", port: 0 });
      const { token } = await s.services.runners.register("embedded");
      // As startEmbeddedRunner makes it, bar the checkout of (a) and a single slot.
      const runner = new Runner({ server: "embedded", token, backend: new BwrapBackend(), transport: injectTransport(app, token), leaseWaitMs: 2_000, network: { mode: "outbound" }, checkout: opts.checkout, onError: (err) => console.error(err) });
      runner.start(1);
      try {
        const webhookSecret = await s.services.webhooks.reveal(s.project.id);
        if (!webhookSecret) throw new Error("the bench project has no webhook secret");
        return await fn({ ...s, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, webhookSecret });
      } finally {
        await runner.stop();
        await app.close();
      }
    },
    { repositoryUrl: opts.repositoryUrl },
  );
}

// Pushes come to an idle runner, as they do between real pushes: by then it has started the
// sandbox its next job will use (see Runner.loop).
const IDLE_MS = 300;

/** `input.builds` pushes, each IDLE_MS after the previous build ended, after one warm-up push (it also pins the git host's key). */
async function pushLatencies(s: PushServer, input: PushInput): Promise<number[]> {
  await timePush(s, input.commit);
  const times: number[] = [];
  for (let i = 0; i < input.builds; i++) {
    await new Promise((r) => setTimeout(r, IDLE_MS));
    times.push(await timePush(s, input.commit));
  }
  return times.sort((a, b) => a - b);
}

/** Milliseconds from sending a signed push to the server storing the first byte of the step's output. */
async function timePush(s: PushServer, commit: string): Promise<number> {
  const { services } = s;
  const onPush = services.hooks.onPush;
  let firstOutput: number | undefined;
  let jobEnded!: () => void;
  const ended = new Promise<void>((resolve) => (jobEnded = resolve));
  const unfollow: Array<() => void> = [];
  // The push's job is followed from the moment the push handler made it: long before a runner
  // can have leased it, started a sandbox and sent output.
  services.hooks.onPush = async (projectId, event) => {
    const result = await onPush(projectId, event);
    if (result.buildId) {
      const jobId = (await services.builds.get(result.buildId)).jobs[0]!.id;
      unfollow.push(
        services.logs.follow(jobId, (c) => {
          if (firstOutput === undefined && c.data.includes(MARKER)) firstOutput = performance.now();
        }),
        services.logs.onEnd(jobId, jobEnded),
      );
    }
    return result;
  };
  try {
    const body = JSON.stringify({ ref: "refs/heads/main", commit, message: "bench push" });
    const headers = { "content-type": "application/json", "x-slipway-signature": signBody(s.webhookSecret, body), "x-slipway-delivery": `bench-${randomBytes(8).toString("hex")}` };
    const sent = performance.now();
    const res = await fetch(`${s.url}/api/v1/hooks/${s.project.id}`, { method: "POST", headers, body });
    const answer = (await res.json()) as { buildId?: string | null };
    if (res.status !== 202 || !answer.buildId) throw new Error(`the push was not accepted: ${res.status} ${JSON.stringify(answer)}`);
    await waitFor(ended, `build ${answer.buildId} did not end within ${BUILD_TIMEOUT_MS / 1000} s`);
    const build = await services.builds.get(answer.buildId);
    if (build.status !== "success" || firstOutput === undefined) throw new Error(`the bench build ended ${build.status} (${build.reason ?? "no reason"}) ${firstOutput === undefined ? `without printing ${MARKER}` : ""}:\n${await logText(services, s.project.id, build.jobs[0]!.id)}`);
    return firstOutput - sent;
  } finally {
    services.hooks.onPush = onPush;
    for (const stop of unfollow) stop();
  }
}

async function waitFor(promise: Promise<void>, timeoutMessage: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(timeoutMessage)), BUILD_TIMEOUT_MS)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function logText(services: Services, projectId: string, jobId: string): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of services.logs.chunks(projectId, jobId)) parts.push(c.data);
  return Buffer.concat(parts).toString();
}
