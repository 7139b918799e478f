import type { LeasedJob } from "../builds/builds.js";
import { gitRefSchema } from "../builds/events.js";
import { HOME, WORKSPACE, type Sandbox } from "../sandbox/backend.js";
import { MAX_POLLED_REFS } from "../scm/poll-report.js";

/** What the runner API hands out for one leased job's clone (POST /runner/jobs/:jobId/checkout). */
export interface CheckoutCredentials {
  /** The project's deploy key, an OpenSSH private key file. Secret: it never goes to a log. */
  privateKey: string;
  /** The git host's pinned keys in known_hosts format, or null while none are pinned. */
  knownHosts: string | null;
}

/** The runner's API caller (`Runner.call`). */
export type RunnerCall = <T>(path: string, body: unknown) => Promise<T>;

export const SSH_DIR = `${HOME}/.ssh`;
export const KEY_PATH = `${SSH_DIR}/deploy_key`;
export const KNOWN_HOSTS_PATH = `${SSH_DIR}/known_hosts`;
export const CLONE_DEPTH = 50;

/**
 * The repository is untrusted: no hook of it runs, no local path or file:// URL is followed
 * (a submodule or alternate pointing at the runner's disk), and every object is checked.
 */
export const HARDENED_GIT_CONFIG = ["core.hooksPath=/dev/null", "protocol.file.allow=never", "transfer.fsckObjects=true", "fetch.fsckObjects=true", "receive.fsckObjects=true"] as const;

export const hardenedGit = (...args: string[]): string[] => ["git", ...HARDENED_GIT_CONFIG.flatMap((c) => ["-c", c]), ...args];

/** What to clone: a repository and a branch or tag (the default branch without either), at a commit if given. */
export type CloneRef = Pick<LeasedJob, "repositoryUrl" | "branch" | "tag"> & { commit?: string | null };

/**
 * The clone of a branch or tag into /workspace, shallow unless `depth` is "full" (a developer's
 * workspace wants the history); submodules only on request (not yet offered).
 */
export function cloneArgv(job: CloneRef, depth: number | "full" = CLONE_DEPTH): string[] {
  if (!job.repositoryUrl) throw new CheckoutError("the project has no repository URL to clone; set one in the project's settings");
  const ref = job.branch ?? job.tag;
  // `--` keeps a URL from ever being read as an option, whatever the validation upstream let through.
  return hardenedGit("clone", "--no-recurse-submodules", ...(depth === "full" ? [] : ["--depth", String(depth)]), ...(ref ? ["--branch", ref] : []), "--", job.repositoryUrl, WORKSPACE);
}

/** How a clone gets at the repository: the project's deploy key and pinned host keys, and where to report keys seen first. */
export interface RepositoryAccess {
  credentials(): Promise<CheckoutCredentials>;
  pinHostKeys(knownHosts: string): Promise<void>;
}

/**
 * ssh as git runs it: only the deploy key, no agent, no prompt, host keys checked against the
 * project's pins alone (not the runner machine's), or, with none pinned, the first key seen
 * written in the clear so that it can be reported and pinned.
 */
export function sshCommand(pinnedHostKeys: boolean): string {
  return [
    "ssh",
    // No ssh_config of the image takes part: Debian's turns on GSSAPI, whose Kerberos lookups
    // stall each connection ~10 s where DNS is unreachable, and it sends the locale's variables.
    "-F",
    "/dev/null",
    "-i",
    KEY_PATH,
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    `UserKnownHostsFile=${KNOWN_HOSTS_PATH}`,
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "HashKnownHosts=no",
    // Entries name the host as the URL does, never its address: what is reported is what gets checked.
    "-o",
    "CheckHostIP=no",
    "-o",
    `StrictHostKeyChecking=${pinnedHostKeys ? "yes" : "accept-new"}`,
    "-o",
    "BatchMode=yes",
  ].join(" ");
}

/** ssh://… and scp-like user@host:path URLs go over SSH; https:// and the like do not need the key. */
export const usesSsh = (url: string): boolean => url.startsWith("ssh://") || (!url.includes("://") && /^[^/]+:/.test(url));

export class CheckoutError extends Error {}

export interface GitCheckoutOptions {
  /** Limit for each git command (default 10 minutes). */
  timeoutMs?: number;
  depth?: number | "full";
  /** The job's cancel: kills the git command running in the sandbox. */
  signal?: AbortSignal;
}

/**
 * P01: clones the job's repository into the sandbox's /workspace. For an SSH URL the project's
 * deploy key is fetched just now, written into the sandbox's home (a tmpfs) readable only by the
 * sandbox user, used by this clone alone, and removed before this returns, whatever happened.
 * The git host must show its pinned key; when none is pinned, the key this clone saw is reported
 * to be pinned (trust on first use).
 */
export async function gitCheckout(access: RepositoryAccess, job: CloneRef, sandbox: Sandbox, opts: GitCheckoutOptions = {}): Promise<string> {
  const argv = cloneArgv(job, opts.depth);
  const url = job.repositoryUrl!;
  const ssh = usesSsh(url);
  const credentials = ssh ? await access.credentials() : undefined;
  const git = new SandboxGit(sandbox, url, credentials, opts);
  let failure: unknown;
  try {
    if (credentials) await git.installKey();
    await git.run(argv);
    if (job.commit) await git.detachAt(job.commit);
    if (credentials?.knownHosts === null) await access.pinHostKeys(await git.seenHostKeys());
    return (await git.run(["git", "-C", WORKSPACE, "rev-parse", "HEAD"])).trim();
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    if (credentials) {
      const removed = await git.removeKey().catch((err: unknown) => err as Error);
      // A key left behind would be readable by the steps: refuse to go on.
      if (removed instanceof Error && failure === undefined) throw removed;
    }
  }
}

/**
 * Push access a workspace's owner opted into: the deploy key stays in the workspace's home, and
 * only the repository's own git config names it (core.sshCommand), host keys checked strictly
 * against the project's pins. Other repositories cloned there never use it.
 */
export async function installPushKey(access: RepositoryAccess, sandbox: Sandbox, repositoryDir = WORKSPACE): Promise<void> {
  const credentials = await access.credentials();
  if (credentials.knownHosts === null) throw new CheckoutError("the project pins no key of its git host yet, so pushing cannot check it; pin one in the project's settings");
  const git = new SandboxGit(sandbox, repositoryDir, credentials, {}, "set up pushing to");
  await git.installKey();
  await git.run(["git", "-C", repositoryDir, "config", "core.sshCommand", sshCommand(true)]);
}

/** A repository poll a runner leased (POST /runner/polls/lease), with the clone credentials for an SSH URL. */
export interface LeasedPoll {
  projectId: string;
  repositoryUrl: string;
  egressAllowlist: string[] | null;
  credentials?: CheckoutCredentials;
}

/**
 * P08: the repository's heads and tags with the commit each points at (an annotated tag's
 * commit, not the tag object), listed by `git ls-remote` in the sandbox with the deploy key
 * installed and removed as for a clone. `knownHosts`: what ssh saw when none were pinned.
 */
export async function listRemoteRefs(poll: LeasedPoll, sandbox: Sandbox, opts: GitCheckoutOptions = {}): Promise<{ refs: Record<string, string>; knownHosts?: string }> {
  const git = new SandboxGit(sandbox, poll.repositoryUrl, poll.credentials, opts, "list the refs of");
  try {
    if (poll.credentials) await git.installKey();
    const out = await git.run(hardenedGit("ls-remote", "--heads", "--tags", "--", poll.repositoryUrl), LS_REMOTE_MAX);
    const refs = parseLsRemote(out);
    if (out.length >= LS_REMOTE_MAX || Object.keys(refs).length > MAX_POLLED_REFS) throw new CheckoutError(TOO_MANY_REFS);
    const knownHosts = poll.credentials?.knownHosts === null ? await git.seenHostKeys() : undefined;
    return { refs, ...(knownHosts !== undefined && { knownHosts }) };
  } finally {
    if (poll.credentials) await git.removeKey();
  }
}

/** Two lines (the tag and its commit) for each of MAX_POLLED_REFS of the longest refs. */
const LS_REMOTE_MAX = MAX_POLLED_REFS * 2 * 300;
const TOO_MANY_REFS = `the repository has more than ${MAX_POLLED_REFS} heads and tags, more than Slipway polls: trigger its builds with the signed webhook instead (see "Plain git" in the README), and turn polling off`;

/**
 * `<commit>\t<ref>` lines; `<ref>^{}` names the commit an annotated tag points at, which wins.
 * A ref Slipway could not build (a name git allows but a branch name may not have here) is left out.
 */
export function parseLsRemote(out: string): Record<string, string> {
  const refs: Record<string, string> = {};
  const peeled = new Set<string>();
  for (const line of out.split("\n")) {
    const m = /^([0-9a-f]{40})\t(refs\/(?:heads|tags)\/\S+?)(\^\{\})?$/.exec(line);
    if (!m || (peeled.has(m[2]!) && !m[3]) || !gitRefSchema.safeParse(m[2]).success) continue;
    refs[m[2]!] = m[1]!;
    if (m[3]) peeled.add(m[2]!);
  }
  return refs;
}

/** The Runner's `checkout` for cloning with deploy keys through its own API client. */
export const gitCheckoutFor =
  (runner: { call<T>(path: string, body: unknown): Promise<T> }, opts: GitCheckoutOptions = {}) =>
  async (job: LeasedJob, sandbox: Sandbox, signal?: AbortSignal): Promise<void> => {
    const access: RepositoryAccess = {
      credentials: () => runner.call<CheckoutCredentials>(`/runner/jobs/${job.jobId}/checkout`, {}),
      pinHostKeys: (knownHosts) => runner.call(`/runner/jobs/${job.jobId}/known-hosts`, { knownHosts }),
    };
    await gitCheckout(access, job, sandbox, { ...opts, signal: signal ?? opts.signal });
  };

class SandboxGit {
  private readonly env: Record<string, string>;

  constructor(
    private readonly sandbox: Sandbox,
    private readonly url: string,
    private readonly credentials: CheckoutCredentials | undefined,
    private readonly opts: GitCheckoutOptions,
    /** What git does, for messages: "could not clone …". */
    private readonly action = "clone",
  ) {
    this.env = {
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_NOSYSTEM: "1",
      ...(credentials && { GIT_SSH_COMMAND: sshCommand(credentials.knownHosts !== null) }),
    };
  }

  async installKey(): Promise<void> {
    const { privateKey, knownHosts } = this.credentials!;
    await this.shell(`mkdir -p -m 700 ${SSH_DIR}`);
    await this.sandbox.writeFile(KEY_PATH, privateKey.endsWith("\n") ? privateKey : `${privateKey}\n`, 0o400);
    if (knownHosts !== null) await this.sandbox.writeFile(KNOWN_HOSTS_PATH, knownHosts, 0o600);
  }

  /** Overwritten, then unlinked; known_hosts too, so that nothing of the clone's SSH stays for the steps. */
  async removeKey(): Promise<void> {
    await this.shell(`shred -fu -- ${KEY_PATH} 2>/dev/null; rm -f -- ${KEY_PATH} ${KNOWN_HOSTS_PATH}; rmdir -- ${SSH_DIR} 2>/dev/null; test ! -e ${KEY_PATH}`);
  }

  /** The host keys ssh accepted and wrote down for lack of a pin. */
  async seenHostKeys(): Promise<string> {
    return this.shell(`cat -- ${KNOWN_HOSTS_PATH}`);
  }

  async detachAt(commit: string): Promise<void> {
    const head = (await this.run(["git", "-C", WORKSPACE, "rev-parse", "HEAD"])).trim();
    if (head === commit) return;
    // The commit may be older than the shallow clone reaches, or on no branch the clone fetched.
    const present = await this.run(["git", "-C", WORKSPACE, "cat-file", "-e", `${commit}^{commit}`]).then(
      () => true,
      () => false,
    );
    if (!present) await this.run(hardenedGit("-C", WORKSPACE, "fetch", "--no-recurse-submodules", "--depth", String(CLONE_DEPTH), "origin", commit));
    await this.run(hardenedGit("-C", WORKSPACE, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit));
  }

  /** Runs a git command; on failure, the error says what git said (without the key, should ssh ever echo it). */
  async run(argv: string[], maxOutput = 64 * 1024): Promise<string> {
    let out = "";
    let err = "";
    const status = await this.sandbox.exec(
      { argv, env: this.env, cwd: WORKSPACE, timeoutMs: this.opts.timeoutMs ?? 10 * 60_000, signal: this.opts.signal },
      { stdout: (d) => (out = (out + d.toString()).slice(0, maxOutput)), stderr: (d) => (err = (err + d.toString()).slice(-16 * 1024)) },
    );
    if (status.code === 0) return out;
    if (this.opts.signal?.aborted) throw new CheckoutError(`git was canceled before it could ${this.action} ${this.url}`);
    const reason = status.timedOut ? "git did not finish in time" : (hostKeyProblem(err) ?? lastWords(err) ?? `git exited with ${status.code ?? status.signal}`);
    throw new CheckoutError(`could not ${this.action} ${this.url}: ${this.scrub(reason)}`);
  }

  private scrub(text: string): string {
    let clean = text;
    for (const line of this.credentials?.privateKey.split("\n") ?? []) if (line.trim().length >= 16) clean = clean.split(line.trim()).join("***");
    return clean;
  }

  private async shell(script: string): Promise<string> {
    let out = "";
    let err = "";
    const status = await this.sandbox.exec({ argv: ["/bin/sh", "-c", script], timeoutMs: 30_000 }, { stdout: (d) => (out += d.toString()), stderr: (d) => (err += d.toString()) });
    if (status.code !== 0) throw new CheckoutError(`could not prepare to ${this.action} ${this.url}: ${err.trim() || `exit ${status.code}`}`);
    return out;
  }
}

const REPIN = 'update the project\'s known hosts ("knownHosts" in PATCH /api/v1/projects/<id>: the host\'s keys as `ssh-keyscan` prints them, or null to pin the key the next clone sees)';

/** ssh's refusal of the git host's key, said plainly: its own words are a banner about possible attacks. */
function hostKeyProblem(stderr: string): string | undefined {
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED/.test(stderr)) {
    return `the git host's key has changed: it is not the key pinned for this project, so nothing was fetched. If the change is expected, check the new key with the host's operator and ${REPIN}`;
  }
  if (/Host key verification failed/.test(stderr)) return `the project's known hosts pin no key of this git host, so nothing was fetched; ${REPIN}`;
  return undefined;
}

// git ends most failures with advice that says nothing about this one.
const BOILERPLATE = [/^Cloning into /, /^Please make sure you have the correct access rights$/, /^and the repository exists\.$/, /^warning: /];

/** The lines of git's stderr that say what went wrong (the last two that are not boilerplate). */
function lastWords(stderr: string): string | undefined {
  const lines = stderr
    .split(/\r?\n|\r/)
    .map((l) => l.trim())
    .filter((l) => l && !BOILERPLATE.some((b) => b.test(l)));
  return lines.length ? lines.slice(-2).join(" ").slice(0, 1000) : undefined;
}
