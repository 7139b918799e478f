import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

// A real git server for clone tests: a throwaway system user owning bare repositories, served by
// OpenSSH's sshd (run as root, listening only inside a test network namespace) with git-shell as
// the only command a key may run.

const run = (command: string, args: string[], opts: { cwd?: string; input?: string; env?: NodeJS.ProcessEnv } = {}) =>
  execFileSync(command, args, { cwd: opts.cwd, input: opts.input, env: opts.env, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"], timeout: 30_000 });

/**
 * useradd and userdel, which lock /etc/passwd: test files running side by side may find it locked
 * for a moment, so they try again for a few seconds.
 */
function runLockingPasswd(command: string, args: string[]): string {
  for (let attempt = 0; ; attempt++) {
    try {
      return run(command, args);
    } catch (err) {
      if (attempt >= 50 || !/lock/i.test(String((err as { stderr?: string }).stderr))) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
  }
}

const gitAs = (cwd: string, ...args: string[]) => run("git", ["-c", "user.name=Ada", "-c", "user.email=ada@example.com", "-c", "init.defaultBranch=main", ...args], { cwd });

/** What authorized_keys puts before each deploy key: git-shell only, nothing else. */
export const AUTHORIZED_KEY_OPTIONS = 'command="git-shell -c \\"$SSH_ORIGINAL_COMMAND\\"",no-port-forwarding,no-pty,no-agent-forwarding,no-X11-forwarding';

export interface GitUser {
  name: string;
  uid: number;
  remove(): void;
}

/** A system user of its own for the repositories, so git-shell never runs as root. */
export function createGitUser(home: string): GitUser {
  const name = `slwgit${randomBytes(3).toString("hex")}`;
  // "*" rather than useradd's locked "!": sshd without PAM refuses every login of a locked account.
  runLockingPasswd("useradd", ["--system", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh", "--password", "*", name]);
  return {
    name,
    uid: Number(run("id", ["-u", name]).trim()),
    remove: () => {
      try {
        runLockingPasswd("userdel", [name]);
      } catch {
        // already gone
      }
    },
  };
}

export interface ServedRepos {
  /** Bare repository paths on this machine. */
  app: string;
  lib: string;
  commits: { first: string; main: string; side: string };
}

/**
 * `app`: main has two commits (file `version` 1 then 2) and the pipeline config; branch `side`
 * (version "side") forks from the first. Its submodules point at `lib` twice: over SSH on the same
 * server (fetchable with the same key) and by a file:// URL on this machine.
 */
export function makeRepos(root: string, config: string, libSshUrl: string, owner: GitUser): ServedRepos {
  const srv = path.join(root, "srv");
  mkdirSync(srv, { recursive: true });
  const lib = path.join(srv, "lib.git");
  const app = path.join(srv, "app.git");
  const work = mkdtempSync(path.join(tmpdir(), "slipway-clone-work-"));
  try {
    const libWork = path.join(work, "lib");
    mkdirSync(libWork);
    gitAs(libWork, "init", "-q");
    writeFileSync(path.join(libWork, "LIB_MARKER"), "lib content\n");
    gitAs(libWork, "add", "-A");
    gitAs(libWork, "commit", "-qm", "lib");
    const libCommit = gitAs(libWork, "rev-parse", "HEAD").trim();
    gitAs(work, "clone", "-q", "--bare", libWork, lib);

    const appWork = path.join(work, "app");
    mkdirSync(appWork);
    gitAs(appWork, "init", "-q");
    writeFileSync(path.join(appWork, ".slipway.yml"), config);
    writeFileSync(path.join(appWork, "version"), "1\n");
    writeFileSync(path.join(appWork, ".gitmodules"), `[submodule "lib"]\n\tpath = lib\n\turl = ${libSshUrl}\n[submodule "local"]\n\tpath = local\n\turl = file://${lib}\n`);
    gitAs(appWork, "add", "-A");
    // Gitlinks without checked-out submodules: `add -A` would stage their removal, so they come last.
    for (const p of ["lib", "local"]) gitAs(appWork, "update-index", "--add", "--cacheinfo", `160000,${libCommit},${p}`);
    gitAs(appWork, "commit", "-qm", "first");
    const first = gitAs(appWork, "rev-parse", "HEAD").trim();
    gitAs(appWork, "checkout", "-qb", "side");
    writeFileSync(path.join(appWork, "version"), "side\n");
    gitAs(appWork, "add", "version");
    gitAs(appWork, "commit", "-qm", "side");
    const side = gitAs(appWork, "rev-parse", "HEAD").trim();
    gitAs(appWork, "checkout", "-q", "main");
    writeFileSync(path.join(appWork, "version"), "2\n");
    gitAs(appWork, "add", "version");
    gitAs(appWork, "commit", "-qm", "second");
    const main = gitAs(appWork, "rev-parse", "HEAD").trim();
    // A bare clone copies every branch head as it is, side too.
    gitAs(work, "clone", "-q", "--bare", "--no-local", appWork, app);
    run("chown", ["-R", `${owner.uid}:${owner.uid}`, srv]);
    return { app, lib, commits: { first, main, side } };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface Sshd {
  /** What sshd logged so far (it logs to stderr with -e). */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Debian's sshd in `netns`, listening on `address`:22 only, with a host key and config of its own
 * in `root`; keys come from `authorizedKeys` (one file for the one user it lets in).
 */
export async function startSshd(netns: string, address: string, root: string, user: GitUser, authorizedKeys: string): Promise<Sshd> {
  const hostKey = path.join(root, "host_key");
  run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "slipway-test-host", "-f", hostKey]);
  const config = path.join(root, "sshd_config");
  writeFileSync(
    config,
    [
      `ListenAddress ${address}:22`,
      `HostKey ${hostKey}`,
      "PidFile none",
      "UsePAM no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PubkeyAuthentication yes",
      `AuthorizedKeysFile ${authorizedKeys}`,
      // The temp dirs above it are world-writable (/tmp): StrictModes would refuse every key.
      "StrictModes no",
      `AllowUsers ${user.name}`,
      "PermitRootLogin no",
      "AcceptEnv GIT_PROTOCOL",
      "LogLevel VERBOSE",
      "",
    ].join("\n"),
  );
  // sshd's privilege separation directory; Debian's service unit makes it, a container may not
  // have it. It stays: another test's sshd, running at the same time, needs it for every login.
  const privsep = "/run/sshd";
  if (!existsSync(privsep)) {
    mkdirSync(privsep, { recursive: true });
    chmodSync(privsep, 0o755);
  }
  const child: ChildProcess = spawn("nsenter", [`--net=/run/netns/${netns}`, "--", "/usr/sbin/sshd", "-D", "-e", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sshd did not start within 10 s: ${log}`)), 10_000);
      const check = () => {
        if (!log.includes("Server listening on")) return;
        clearTimeout(timer);
        resolve();
      };
      child.stderr!.on("data", check);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`sshd exited (${code}): ${log}`));
      });
    });
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  return {
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}

/**
 * A distinctive piece of a deploy key's private half: the base64 of bytes 162–191 of the
 * openssh-key-v1 body, which lie inside the ed25519 seed (see src/crypto/ssh-keys.ts), so it is
 * found only where the private key itself is.
 */
export function keyNeedle(privateKey: string): string {
  const body = privateKey
    .split("\n")
    .filter((l) => l && !l.startsWith("-----"))
    .join("");
  return body.slice(216, 256);
}

/** A new commit on `main` of a served bare repository, as a developer's push adds it; returns its id. */
export function pushCommit(bare: string, ownerUid: number, file: string, content: string, message: string, branch = "main"): string {
  return asRepositoryOwner(bare, ownerUid, (git, work) => {
    git(work, ["clone", "-q", "--branch", "main", bare, "w"]);
    const w = path.join(work, "w");
    if (branch !== "main") git(w, ["checkout", "-q", "-b", branch]);
    writeFileSync(path.join(w, file), content);
    git(w, ["add", file]);
    git(w, ["commit", "-qm", message]);
    git(w, ["push", "-q", "origin", branch]);
    return git(w, ["rev-parse", "HEAD"]).trim();
  });
}

/** Tags `commit` as t1…t<count> in the served repository at once. */
export function tagMany(bare: string, ownerUid: number, commit: string, count: number): void {
  asRepositoryOwner(bare, ownerUid, (git) => {
    const script = Array.from({ length: count }, (_, i) => `create refs/tags/t${i + 1} ${commit}\n`).join("");
    git(bare, ["update-ref", "--stdin"], script);
  });
}

type Git = (cwd: string, args: string[], input?: string) => string;

function asRepositoryOwner<T>(bare: string, ownerUid: number, body: (git: Git, work: string) => T): T {
  const work = mkdtempSync(path.join(tmpdir(), "slipway-push-work-"));
  try {
    // The repository belongs to the git user: this root process is let in explicitly, through a
    // global config of its own (git's upload-pack and receive-pack ignore `-c safe.directory`).
    const config = path.join(work, "gitconfig");
    writeFileSync(config, "[safe]\n\tdirectory = *\n");
    const git: Git = (cwd, args, input) => run("git", ["-c", "user.name=Ada", "-c", "user.email=ada@example.com", ...args], { cwd, input, env: { ...process.env, GIT_CONFIG_GLOBAL: config } });
    const result = body(git, work);
    run("chown", ["-R", `${ownerUid}:${ownerUid}`, bare]);
    return result;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
