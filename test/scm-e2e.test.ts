import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGitUser, makeRepos, startSshd, type GitUser, type ServedRepos, type Sshd } from "./helpers/git-server.js";
import type { ProviderName, ScmRunInput, ScmRunOutput } from "./helpers/scm-e2e-runner.js";
import { createLab, LAB, runModuleInNetns, type Lab } from "./helpers/sandbox-network.js";

// P07, P08: each provider end to end. The provider is its simulator (HTTPS on the runner
// namespace's loopback); the git host's SSH side is a real sshd in the "services" namespace that
// lets in exactly the deploy keys the simulator holds. Sign in → link → the simulator shows the
// key and hook → it delivers a push → a real sandboxed build clones over SSH with that key →
// statuses go back → unlink → the simulator holds nothing of Slipway's any more.

const isRoot = process.getuid?.() === 0;
const here = path.dirname(fileURLToPath(import.meta.url));
const PROVIDERS: ProviderName[] = ["github", "gitlab", "bitbucket", "gitea"];
const CONFIG = `image: host
steps:
  - name: show
    command: echo "version=$(cat version) head=$(git rev-parse HEAD)"
`;

describe.runIf(isRoot)("P07, P08: every provider end to end, with a real sandboxed build cloning over SSH", () => {
  let lab: Lab;
  let root: string;
  let user: GitUser;
  let repos: ServedRepos;
  let sshd: Sshd;
  let out: Record<string, ScmRunOutput>;

  beforeAll(async () => {
    lab = createLab();
    root = mkdtempSync(path.join(tmpdir(), "slipway-scm-git-"));
    chmodSync(root, 0o755);
    user = createGitUser(root);
    const urlOf = (repo: string) => `ssh://${user.name}@${LAB.allowed}:22${repo}`;
    repos = makeRepos(root, CONFIG, urlOf(path.join(root, "srv", "lib.git")), user);
    const authorizedKeys = path.join(root, "authorized_keys");
    writeFileSync(authorizedKeys, "");
    sshd = await startSshd(lab.services, LAB.allowed, root, user, authorizedKeys);
    const input: ScmRunInput = { providers: PROVIDERS, repositoryUrl: urlOf(repos.app), authorizedKeys, commit: repos.commits.main };
    out = await runModuleInNetns<ScmRunInput, Record<string, ScmRunOutput>>(lab.runner, path.join(here, "helpers", "scm-e2e-runner.ts"), input, { timeoutMs: 420_000 });
  }, 480_000);

  afterAll(async () => {
    await sshd?.stop();
    user?.remove();
    lab?.destroy();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it.each(PROVIDERS)("P07, P15: %s: signing in connects the account, and linking installs the project's read-only deploy key and a signed webhook", (provider) => {
    const run = out[provider]!;
    expect(run.redirect).toBe(`/account#connected=${provider}`);
    expect(run.link.status, JSON.stringify(run.link.body)).toBe(200);
    expect(run.keysAfterLink).toEqual([{ key: expect.stringContaining(run.deployKey.split(" ").slice(0, 2).join(" ")), readOnly: true }]);
    expect(run.hooksAfterLink).toHaveLength(1);
    expect(run.hooksAfterLink[0]!.url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:\\d+/api/v1/hooks/prj_[^/]+/${provider}$`));
    // A fresh secret, the project's own, is what the provider signs with.
    expect(run.webhookSecret).toMatch(/^swh_[0-9a-f]{64}$/);
    expect(run.hooksAfterLink[0]!.secret).toBe(run.webhookSecret);
  });

  it.each(PROVIDERS)("P08: %s: the delivered push builds in a sandbox that clones over SSH with the installed key", (provider) => {
    const run = out[provider]!;
    expect(run.deliveries).toEqual([202]);
    expect(run.build.status, `${run.build.reason}\n${run.build.log}`).toBe("success");
    expect(run.build.log).toContain(`version=2 head=${repos.commits.main}`);
  });

  it.each(PROVIDERS)("%s: the build's statuses go back to the commit, pending then success, with a link to the build", (provider) => {
    const run = out[provider]!;
    const success = { github: "success", gitlab: "success", gitea: "success", bitbucket: "SUCCESSFUL" }[provider];
    const pending = { github: "pending", gitlab: "pending", gitea: "pending", bitbucket: "INPROGRESS" }[provider];
    const states = run.statuses.map((s) => s.state);
    expect(states.at(-1)).toBe(success);
    expect(states.slice(0, -1).length).toBeGreaterThan(0);
    for (const state of states.slice(0, -1)) expect(state).toBe(pending);
    for (const s of run.statuses) expect(s.url).toMatch(new RegExp(`/builds/${run.build.id}$`));
  });

  it.each(PROVIDERS)("P07: %s: unlinking removes the deploy key and the webhook at the provider", (provider) => {
    const run = out[provider]!;
    expect(run.unlink).toEqual({ status: 200, body: { leftovers: [] } });
    expect(run.keysAfterUnlink).toBe(0);
    expect(run.hooksAfterUnlink).toBe(0);
  });
});
