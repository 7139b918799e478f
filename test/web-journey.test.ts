import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGitLab, type GitLab } from "./helpers/git-lab.js";
import { runModuleInNetns } from "./helpers/sandbox-network.js";
import { SECRET, type JourneyInput, type JourneyOutput } from "./helpers/web-journey-runner.js";

// A new user's whole way in the browser, against a real server, runner, sandbox and git server
// over SSH: sign up → two-factor → a project from a plain git URL → push → the build's live log to
// success → a secret masked in the next build → a contractor who cannot open another project.

const isRoot = process.getuid?.() === 0;
const here = path.dirname(fileURLToPath(import.meta.url));

describe.runIf(isRoot)("the web app, end to end", () => {
  let git: GitLab;
  let out: JourneyOutput;

  beforeAll(async () => {
    const config = 'image: host\nsecrets: [API_TOKEN]\nsteps:\n  - name: show\n    command: printf "\\033[32mversion=%s\\033[0m\\n" "$(cat version)"; echo "token=${API_TOKEN:-unset}"\n';
    git = await startGitLab(config, "journey");
    const input: JourneyInput = { repositoryUrl: git.urlOf(git.repos.app), authorizedKeys: git.authorizedKeys, bare: git.repos.app, ownerUid: git.user.uid };
    out = await runModuleInNetns<JourneyInput, JourneyOutput>(git.lab.runner, path.join(here, "helpers", "web-journey-runner.ts"), input, { timeoutMs: 400_000 });
  }, 500_000);

  afterAll(() => git?.close());

  it("signs up, turns on two-factor and needs the code at the next sign-in", () => {
    expect(out.twoFactorAsked).toBe(true);
  });

  it("builds the pushed commit, cloned over SSH with the deploy key from the page, its log live in the browser to success", () => {
    expect(out.firstBuild.status).toBe("success");
    expect(out.firstBuild.commit).toBe(out.pushed);
    expect(out.firstBuild.log).toContain("version=42");
    expect(out.firstBuild.log).toContain("token=unset");
  });

  it("P13: a secret set in the page never shows again there, and is masked in the next build's log", () => {
    expect(out.secretInPage).toBe(false);
    expect(out.secretBuild.status).toBe("success");
    expect(out.secretBuild.log).toContain("token=***");
    expect(out.secretBuild.log).not.toContain(SECRET);
  });

  it("P11: a contractor sees and opens only the project they are assigned to", () => {
    expect(out.contractor.dashboard).toEqual(["app"]);
    expect(out.contractor.assigned).toBe(true);
    expect(out.contractor.otherRefused).toMatch(/does not exist, or your account cannot see it/);
  });

  it("shows no script error on any page of the way", () => {
    expect(out.problems).toEqual([]);
  });
});
