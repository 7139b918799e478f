import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGitLab, type GitLab } from "./helpers/git-lab.js";
import { runModuleInNetns } from "./helpers/sandbox-network.js";
import { testLayoutsDir } from "./helpers/test-image.js";
import type { WorkspaceWebInput, WorkspaceWebOutput } from "./helpers/workspace-web-runner.js";

// Workspaces in the browser (Playwright + Debian's Chromium), against a real server whose
// workspaces are real sandboxes cloned over SSH: open from a link → terminal → a web server
// started in it → its port opened → shared with an approved guest → stop → resume.

const here = path.dirname(fileURLToPath(import.meta.url));
const isRoot = process.getuid?.() === 0;

const CONFIG = `image: host
steps:
  - command: "true"
workspace:
  image: debian:bookworm
  tasks:
    - name: app
      command: echo app-ready && exec sleep infinity
`;

describe.runIf(isRoot)("workspaces in the browser", () => {
  let git: GitLab;
  let out: WorkspaceWebOutput;

  beforeAll(async () => {
    git = await startGitLab(CONFIG, "workspaces-web");
    const input: WorkspaceWebInput = { repositoryUrl: git.urlOf(git.repos.app), authorizedKeys: git.authorizedKeys, layoutsDir: testLayoutsDir() };
    out = await runModuleInNetns<WorkspaceWebInput, WorkspaceWebOutput>(git.lab.runner, path.join(here, "helpers", "workspace-web-runner.ts"), input, { timeoutMs: 500_000 });
  }, 550_000);

  afterAll(() => git?.close());

  it("a link to /#<repository-url> comes back after signing in to the open form, with the project of that repository", () => {
    expect(out.fromLink.path).toMatch(/^\/workspaces\/new\?repository=/);
    expect(out.fromLink.offered).toMatch(/^app — /);
  });

  it("shows the workspace's state live while it opens", () => {
    expect(out.statesSeen.at(-1)).toBe("running");
    expect(out.statesSeen.length).toBeGreaterThan(1);
  });

  it("runs commands typed into an xterm.js terminal, themed under the strict CSP, beside the task's terminal", () => {
    expect(out.terminal).toEqual({ answer: true, foreground: "rgb(230, 237, 243)", taskTab: true });
  });

  it("after a reload, attaches to the same shell again with its output so far", () => {
    expect(out.reconnect).toEqual({ backlog: true, samePid: true });
  });

  it("P18: a web server started in the terminal opens from the Ports list; private to the owner until made public", () => {
    expect(out.port.body).toBe("served from the workspace");
    expect(out.port.anonymousPrivate).toBe(401);
    expect(out.port.anonymousPublic).toBe(200);
  });

  it("P18: takes a snapshot, and lets in a guest who asked only once the owner approved in the page", () => {
    expect(out.snapshot).toBe(true);
    expect(out.guest).toEqual({ asked: expect.stringContaining("You asked to join"), ownerSaw: true, inside: true, terminals: true });
  });

  it("stops, and resumes with /workspace as it was left", () => {
    expect(out.stopped).toBe("stopped");
    expect(out.resumed).toEqual({ state: "running", marker: true });
    expect(out.list).toHaveLength(1);
    expect(out.list[0]).toMatch(/\bapp\b.*\brunning\b/);
  });

  it("registers an SSH key in the account page", () => {
    expect(out.sshKey).toBe(true);
  });

  it("shows no script error and no CSP violation on any page of the way", () => {
    expect(out.problems).toEqual([]);
  });
});
