import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cloneArgv, hardenedGit, sshCommand, usesSsh } from "../src/runner/git-checkout.js";
import type { CloneRunInput, CloneRunOutput } from "./helpers/clone-runner.js";
import { createGitUser, keyNeedle, makeRepos, startSshd, type GitUser, type ServedRepos, type Sshd } from "./helpers/git-server.js";
import { Client, createUser, signIn, startHarness, type Harness } from "./helpers/harness.js";
import { createLab, LAB, runModuleInNetns, type Lab } from "./helpers/sandbox-network.js";

// P01: cloning with the project's deploy key. Real git, a real sshd serving a real repository
// with git-shell, a real Slipway server and Runner with bwrap sandboxes. The server, the runner
// and the sshd run in network namespaces the test makes (see helpers/sandbox-network.ts): no
// packet of these tests goes anywhere but loopback and those namespaces.

const isRoot = process.getuid?.() === 0;
const here = path.dirname(fileURLToPath(import.meta.url));

describe("P01: the clone command", () => {
  it("P01: clones one branch shallowly with hooks off, no file:// transport, fsck on, and no submodules", () => {
    expect(cloneArgv({ repositoryUrl: "ssh://git@git.example.com:22/srv/app.git", branch: "main", tag: null })).toEqual([
      "git",
      "-c",
      "core.hooksPath=/dev/null",
      "-c",
      "protocol.file.allow=never",
      "-c",
      "transfer.fsckObjects=true",
      "-c",
      "fetch.fsckObjects=true",
      "-c",
      "receive.fsckObjects=true",
      "clone",
      "--no-recurse-submodules",
      "--depth",
      "50",
      "--branch",
      "main",
      "--",
      "ssh://git@git.example.com:22/srv/app.git",
      "/workspace",
    ]);
    // A tag is cloned the same way; a ref or URL shaped like an option stays an argument.
    expect(cloneArgv({ repositoryUrl: "git@git.example.com:app.git", branch: null, tag: "--upload-pack=touch /tmp/x" }).slice(-6)).toEqual(["50", "--branch", "--upload-pack=touch /tmp/x", "--", "git@git.example.com:app.git", "/workspace"]);
    expect(() => cloneArgv({ repositoryUrl: null, branch: "main", tag: null })).toThrow(/no repository URL/);
  });

  it("P01: ssh uses only the deploy key and no config of the image, never prompts, and checks host keys against the project's pins alone (strictly once they are pinned)", () => {
    const pinned = sshCommand(true);
    expect(pinned).toBe(
      "ssh -F /dev/null -i /home/build/.ssh/deploy_key -o IdentitiesOnly=yes -o UserKnownHostsFile=/home/build/.ssh/known_hosts -o GlobalKnownHostsFile=/dev/null -o HashKnownHosts=no -o CheckHostIP=no -o StrictHostKeyChecking=yes -o BatchMode=yes",
    );
    expect(sshCommand(false)).toBe(pinned.replace("StrictHostKeyChecking=yes", "StrictHostKeyChecking=accept-new"));
  });

  it("P01: the deploy key is fetched only for SSH URLs", () => {
    for (const url of ["ssh://git@host/app.git", "git@host:org/app.git", "host:app.git"]) expect(usesSsh(url), url).toBe(true);
    for (const url of ["https://host/app.git", "http://host:8080/app.git", "/srv/app.git", "file:///srv/app.git"]) expect(usesSsh(url), url).toBe(false);
  });

  describe("the hardened flags, applied by this machine's git to local repositories", () => {
    let dir: string;
    let source: string;
    // No system or user config of this machine may change what git does here.
    const env = () => ({ ...process.env, HOME: dir, GIT_CONFIG_NOSYSTEM: "1", GIT_CONFIG_GLOBAL: "/dev/null" });
    const git = (argv: string[]) => {
      try {
        execFileSync(argv[0]!, argv.slice(1), { env: env(), stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
        return "ok";
      } catch (err) {
        return String((err as { stderr?: Buffer }).stderr);
      }
    };

    beforeAll(() => {
      dir = mkdtempSync(path.join(tmpdir(), "slipway-git-flags-"));
      source = path.join(dir, "source");
      mkdirSync(source);
      for (const args of [["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "one"]]) execFileSync("git", ["-c", "user.name=Ada", "-c", "user.email=ada@example.com", ...args], { cwd: source, env: env() });
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("P01: protocol.file.allow=never refuses file:// URLs and local paths", () => {
      for (const url of [`file://${source}`, source]) {
        expect(git(hardenedGit("clone", "-q", "--", url, path.join(dir, `refused-${url.length}`)))).toMatch(/transport 'file' not allowed/);
        // Control: the same clone without the refusal works.
        expect(git(hardenedGit("-c", "protocol.file.allow=always", "clone", "-q", "--", url, path.join(dir, `allowed-${url.length}`)))).toBe("ok");
      }
    });

    it("P01: core.hooksPath=/dev/null keeps a repository's hooks from running", () => {
      const templates = path.join(dir, "templates");
      mkdirSync(path.join(templates, "hooks"), { recursive: true });
      const marker = path.join(dir, "hook-ran");
      writeFileSync(path.join(templates, "hooks", "post-checkout"), `#!/bin/sh\ntouch ${marker}\n`);
      chmodSync(path.join(templates, "hooks", "post-checkout"), 0o755);
      const clone = (argv: string[], to: string) => git([...argv, "-c", "protocol.file.allow=always", "clone", "-q", "--template", templates, "--", source, path.join(dir, to)]);
      expect(clone(hardenedGit(), "hardened")).toBe("ok");
      expect(existsSync(marker)).toBe(false);
      // Control: without the flag the very same hook runs.
      expect(clone(["git"], "plain")).toBe("ok");
      expect(existsSync(marker)).toBe(true);
    });
  });
});

describe("P01: the runner API hands a job's deploy key only to the runner holding its lease", () => {
  let h: Harness;
  let owner: Client;

  beforeAll(async () => {
    h = await startHarness();
    await createUser(h, "owner@example.com");
    owner = await signIn(h, "owner@example.com");
  });
  afterAll(() => h?.close());

  it("P01: the lease holder gets the private key; another runner, a user and anonymous do not; nor the holder once the job ended", async () => {
    const project = (await owner.post("/api/v1/projects", { name: "app", repositoryUrl: "ssh://git@git.example.com/app.git" })).json().id as string;
    const runnerClient = async (name: string) => new Client(h.app, { bearer: (await h.services.runners.register(name)).token });
    const [holder, other] = [await runnerClient("holder"), await runnerClient("other")];
    expect((await owner.post(`/api/v1/projects/${project}/builds`, { branch: "main" })).statusCode).toBe(201);
    const { job } = (await holder.post("/api/v1/runner/lease", { waitMs: 0 })).json();
    const checkout = `/api/v1/runner/jobs/${job.jobId}/checkout`;
    const { privateKey } = await h.services.deployKeys.revealDeployKey(project);

    const granted = await holder.post(checkout, {});
    expect(granted.statusCode).toBe(200);
    expect(granted.json()).toEqual({ privateKey, knownHosts: null });
    expect(privateKey).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----\n/);

    const refusals = [
      [other, 409, "lease_lost"],
      [owner, 401, "invalid_runner_token"],
      [new Client(h.app), 401, "invalid_runner_token"],
    ] as const;
    for (const [client, status, code] of refusals) {
      const res = await client.post(checkout, {});
      expect(res.statusCode).toBe(status);
      expect(res.json().error.code).toBe(code);
      expect(res.body).not.toContain(keyNeedle(privateKey));
    }
    expect((await holder.post(`/api/v1/runner/jobs/${job.jobId}/finish`, { status: "success" })).statusCode).toBe(204);
    expect((await holder.post(checkout, {})).statusCode).toBe(409);
  });
});

// The step that runs after the clone, in the same sandbox: it reports what it can find, never the key itself.
const CONFIG = `image: host
secrets: [KEY_PART]
steps:
  - name: inspect
    command: |
      echo "version=$(cat version)"
      echo "head=$(git rev-parse HEAD)"
      if [ -e /home/build/.ssh/deploy_key ]; then echo key=present; else echo key=absent; fi
      needle=$(printf %s "$KEY_PART" | base64 -d)
      grep -rlF -e "$needle" /workspace /home /tmp; echo "search=$?"
      printf %s "$needle" > /tmp/control
      grep -rlF -e "$needle" /workspace /home /tmp >/dev/null; echo "control=$?"
      rm -f /tmp/control
      echo "submodules: lib=[$(ls -A lib)] local=[$(ls -A local)]"
      git ls-files --stage lib local
`;

describe.runIf(isRoot)("P01: a build clones over SSH with its deploy key, which no step can read", () => {
  let lab: Lab;
  let root: string;
  let user: GitUser;
  let repos: ServedRepos;
  let sshd: Sshd;
  let out: CloneRunOutput;

  beforeAll(async () => {
    lab = createLab();
    root = mkdtempSync(path.join(tmpdir(), "slipway-git-server-"));
    chmodSync(root, 0o755);
    user = createGitUser(root);
    const urlOf = (repo: string) => `ssh://${user.name}@${LAB.allowed}:22${repo}`;
    repos = makeRepos(root, CONFIG, urlOf(path.join(root, "srv", "lib.git")), user);
    const authorizedKeys = path.join(root, "authorized_keys");
    writeFileSync(authorizedKeys, "");
    sshd = await startSshd(lab.services, LAB.allowed, root, user, authorizedKeys);
    const input: CloneRunInput = {
      repositoryUrl: urlOf(repos.app),
      authorizedKeys,
      builds: [{ branch: "main" }, { branch: "main", commit: repos.commits.side }, { branch: "main", rotateKeyFirst: true }],
    };
    out = await runModuleInNetns<CloneRunInput, CloneRunOutput>(lab.runner, path.join(here, "helpers", "clone-runner.ts"), input, { timeoutMs: 240_000 });
  }, 300_000);

  afterAll(async () => {
    await sshd?.stop();
    user?.remove();
    lab?.destroy();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const build = (i: number) => out.builds[i]!;
  const accepted = (fingerprint: string) => sshd.log().split("\n").filter((l) => l.includes(`Accepted publickey for ${user.name}`) && l.includes(fingerprint)).length;

  it("P01: the build clones its branch from the git server with the project's deploy key and runs its steps", () => {
    const { status, reason, log, key } = build(0);
    expect({ status, reason }).toEqual({ status: "success", reason: null });
    expect(log).toContain("version=2");
    expect(log).toContain(`head=${repos.commits.main}`);
    // sshd let that very key in: once for the runner reading the config, once for the step's sandbox.
    expect(accepted(key.fingerprint)).toBeGreaterThanOrEqual(2);
  });

  it("P01: after the clone, the step finds no key file and no piece of the key in /workspace, /home or /tmp", () => {
    const { log } = build(0);
    expect(log).toContain("key=absent");
    expect(log).toContain("search=1");
    // Control: the same search finds the piece as soon as it is in a file.
    expect(log).toContain("control=0");
  });

  it("P01: the private key never appears in a build log, whether the clone worked or not", () => {
    for (const { log, key } of out.builds) {
      expect(log.length).toBeGreaterThan(0);
      expect(log).not.toContain(keyNeedle(key.privateKey));
      for (const line of key.privateKey.split("\n").filter((l) => l && !l.startsWith("-----"))) expect(log).not.toContain(line);
    }
  });

  it("P01: a commit off the cloned branch is fetched and checked out", () => {
    const { status, log } = build(1);
    expect(status).toBe("success");
    expect(log).toContain("version=side");
    expect(log).toContain(`head=${repos.commits.side}`);
  });

  it("P01: submodules are not fetched, neither over SSH with the same key nor from a file:// URL", () => {
    const { log } = build(0);
    expect(log).toContain("submodules: lib=[] local=[]");
    // Control: the submodules are in the cloned commit; only their content was not fetched.
    expect(log).toMatch(/^160000 [0-9a-f]{40} 0\tlib$/m);
    expect(log).toMatch(/^160000 [0-9a-f]{40} 0\tlocal$/m);
  });

  it("P01 / P07: a deploy key the git server does not hold makes the next clone fail cleanly, with git's reason", () => {
    const { status, reason, log, key } = build(2);
    expect(build(0).key.fingerprint).not.toBe(key.fingerprint);
    expect(status).toBe("error");
    const message = `could not clone ssh://${user.name}@${LAB.allowed}:22${repos.app}: ${user.name}@${LAB.allowed}: Permission denied (publickey). fatal: Could not read from remote repository.`;
    expect(reason).toBe(message);
    expect(log).toContain(`slipway: ${message}`);
    expect(accepted(key.fingerprint)).toBe(0);
  });
});
