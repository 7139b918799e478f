import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGitLab, type GitLab } from "./helpers/git-lab.js";
import { pushCommit } from "./helpers/git-server.js";
import { runModuleInNetns } from "./helpers/sandbox-network.js";
import { testLayoutsDir } from "./helpers/test-image.js";
import type { BuildRunOutput, WorkspaceRunInput, WorkspaceRunOutput } from "./helpers/workspace-runner.js";

// Workspaces end to end: a real server in the test's network namespace opens workspaces of a
// repository served over SSH by a real sshd, in real sandboxes of the Debian test image; stops
// them into encrypted archives and resumes them. No packet leaves loopback and the test's namespaces.

const here = path.dirname(fileURLToPath(import.meta.url));
const isRoot = process.getuid?.() === 0;

const CONFIG = `image: host
steps:
  - command: "true"
workspace:
  image: debian:bookworm
  env: { GREETING: hello }
  tasks:
    - name: app
      before: export WHO=world; echo "token is $TOKEN_A"
      init: echo init-ran >> /workspace/init.log
      command: echo "$GREETING $WHO" > /workspace/hello.txt && exec sleep infinity
  ports:
    - port: 8765
`;

describe.runIf(isRoot)("workspaces from a repository", () => {
  let git: GitLab;
  let out: WorkspaceRunOutput;

  beforeAll(async () => {
    git = await startGitLab(CONFIG, "workspaces");
    // A branch whose workspace runs on the host image, which has git to push with.
    pushCommit(git.repos.app, git.user.uid, ".slipway.yml", 'image: host\nsteps:\n  - command: "true"\nworkspace:\n  tasks:\n    - command: exec sleep infinity\n', "a workspace with git", "push-test");
    const input: WorkspaceRunInput = { repositoryUrl: git.urlOf(git.repos.app), authorizedKeys: git.authorizedKeys, layoutsDir: testLayoutsDir() };
    out = await runModuleInNetns<WorkspaceRunInput, WorkspaceRunOutput>(git.lab.runner, path.join(here, "helpers", "workspace-runner.ts"), input, { timeoutMs: 400_000 });
  }, 450_000);

  afterAll(() => git?.close());

  it("opens: clones the branch with the project's deploy key, reads the workspace config, runs the tasks in the config's image", () => {
    expect(out.opened.transitions).toEqual(["pending", "creating", "initializing", "running"]);
    expect(out.opened.commit).toBe(git.repos.commits.main);
    expect(out.opened.configFormat).toBe("slipway");
    expect(out.opened.tasks.map((t) => [t.name, t.state])).toEqual([["app", "running"]]);
    expect(out.inside).toEqual({ hello: "hello world", initRuns: 1, osRelease: "debian-bookworm", key: "0", whoami: "1000" });
  });

  it("P17: variables: the project's, then the owner's for this repository, the most specific scope winning; masked in task output", () => {
    expect(out.variables).toBe("vars=this-repo-value-2,owner-wide-value-3,project-value-5,unset");
    expect(out.taskOutput).toContain("token is ***");
    expect(out.taskOutput).not.toContain("this-repo-value-2");
  });

  it("terminals: a shell over a WebSocket runs commands, resizes, reaches no host file through /proc (P26), keeps its output for the next attach; use counts as activity", () => {
    expect(out.terminal).toEqual({
      listed: [
        { kind: "task", name: "app", state: "running" },
        { kind: "shell", name: "shell 1", state: "running" },
      ],
      arithmetic: true,
      size: "40 100",
      hostFileSeen: false,
      backlogOnReattach: true,
      badOrigin: expect.stringMatching(/403/),
      usedAfter: true,
      closed: 204,
    });
  });

  it("caps a workspace's terminals (409) and the connections relayed into it (503), as each costs processes", () => {
    expect(out.caps).toEqual({ terminals: { opened: 32, refused: "409 too_many_terminals" }, relays: { opened: 32, refused: "503 too_many_connections", afterClose: true } });
  });

  it("opened with push access (by those who manage the project), git pushes with the deploy key, which only the repository's git config names; after a restart too", () => {
    expect(out.push).toEqual({ state: "running", pushed: true, afterRestart: true, sshCommand: expect.stringMatching(/^ssh -F \/dev\/null -i \/home\/build\/\.ssh\/deploy_key .*StrictHostKeyChecking=yes/), keyMode: "400" });
    // Without it, no key is left in the workspace (see "opens"), and a member who builds may not ask for it.
    expect(out.inside.key).toBe("0");
    expect(out.shared.memberPush).toBe(403);
  });

  it("P18: the port proxy serves a private port to its owner alone, a public one to anyone, a change at once; no cookie passes either way", () => {
    expect(out.ports).toEqual({
      listed: [{ port: 8765, visibility: "private", listening: true }],
      anonymousPrivate: 401,
      ownerPrivate: {
        status: 200,
        requestLine: "GET /hello?x=1 HTTP/1.1",
        cookiesForwarded: false,
        answerCookie: null,
        clearSiteData: null,
        csp: expect.stringMatching(/^sandbox allow-scripts/),
        prefix: expect.stringMatching(/^\/w\/ws_[^/]+\/p\/8765$/),
      },
      otherPrivate: 404,
      anonymousPublic: 200,
      anonymousAfterPrivate: 401,
      closedPort: "502 port_closed",
      noSlash: "308 /w/ID/p/8765/?a=b",
    });
  });

  it("SSH: the owner's registered key gets a shell, commands, scp both ways and -L forwarding; other keys are refused; sessions are audited; the host key stays", () => {
    expect(out.ssh).toEqual({
      command: "ssh-ok 1000\nhello world",
      exitCode: 3,
      pty: true,
      uploaded: "sent over scp",
      downloaded: "hello world",
      forwarded: "GET /through-ssh HTTP/1.1",
      otherUser: "255 Permission denied",
      unregistered: "255 Permission denied",
      audited: expect.any(Number),
      sameHostKeyAfterRestart: true,
      cli: expect.any(Object),
    });
    expect(out.ssh.audited).toBeGreaterThanOrEqual(5);
  });

  it("P18: a snapshot opens as a new workspace only for someone who may open workspaces of its project; deleting it revokes the link", () => {
    expect(out.shared.snapshot).toEqual({ outsiderGet: 404, outsiderOpen: 404, memberGet: 200, memberOpen: 201, openedState: "running", openedOwnerIsMember: true, contentIntact: true, initRuns: 1, afterRevoke: 404 });
  });

  it("P18: a workspace whose owner left the project's organisation is stopped at the next sweep, saying why", () => {
    expect(out.shared.leftMember).toEqual({ swept: true, state: "stopped", reason: expect.stringContaining("its owner may no longer open workspaces of its project") });
  });

  it("P18: a running workspace is reached by others only while shared, each guest approved by the owner, over the API, the proxy and SSH; their terminals and sessions close when sharing ends; all of it audited", () => {
    expect(out.shared.join).toEqual({
      beforeSharing: 404,
      request: "pending",
      beforeApproval: [404, 404],
      guests: ["other@example.com pending"],
      afterApproval: [200, 201],
      privatePort: 200,
      afterUnshare: [404, 404, 404],
      forbidden: "403 sharing_forbidden",
      denied: 404,
      // Over SSH too, a guest gets in once approved; what they have open closes when sharing ends.
      // A guest has 8 shells at most (one came from the reach above, one is attached): all 8 close with their access.
      ended: { terminal: 4403, ssh: "closed", sshBefore: "refused", sshAfterApproval: "guest-in", guestShellsOpened: 6, shellsClosed: 8 },
    });
    expect(out.shared.audited).toEqual(expect.arrayContaining(["workspace.guest_approved", "workspace.guest_denied", "workspace.join_requested", "workspace.opened", "workspace.sharing_changed", "workspace.snapshot_created", "workspace.snapshot_deleted", "workspace.ssh_session"]));
  });

  it("the CLI lists, snapshots, reaches over ssh, opens (with progress) and stops workspaces", () => {
    expect(out.ssh.cli).toEqual({
      list: expect.stringMatching(/^ID\trunning\tssh:\/\/.*app\.git@main\tlast used T$/),
      ssh: "cli-ok",
      snapshot: "snap_…",
      opened: {
        code: 0,
        progress: ["NEW: pending", "NEW: creating", "NEW: initializing", "NEW: running", expect.stringMatching(/^running\. Shell: ssh -p PORT NEW@127\.0\.0\.1 \(or: slipway ws ssh NEW\)$/)],
        stop: "0 NEW: stopped",
      },
    });
  });

  it("a workspace unused for its organisation's idle time (within the server's) is stopped, with the reason; a run is extended once", () => {
    expect(out.idle).toEqual({ extended: [200, 409], limits: [400, 200], after11: ["mine"], after31: ["theirs"], reason: "stopped after 10 minutes without use", state: "stopped" });
  });

  it("P26: a workspace's processes run as an unprivileged host uid of its own, with no capabilities, no new privileges and a seccomp filter", () => {
    expect(out.p26.hostUids.length).toBeGreaterThan(0);
    expect(new Set(out.p26.hostUids)).toEqual(new Set([out.p26.hostUid]));
    expect(out.p26.hostUid).toBeGreaterThan(65535);
    expect(out.p26.status).toMatch(/CapEff:\s+0000000000000000/);
    expect(out.p26.status).toMatch(/NoNewPrivs:\s+1/);
    expect(out.p26.status).toMatch(/Seccomp:\s+2/);
  });

  it("P19: two users' workspaces see none of each other's processes, files or ports, and run as different uids", () => {
    // Control first: the listener is there for its own workspace.
    expect(out.p19.ownReachesPort).toBe("reached");
    expect(out.p19.otherReachesPort).toBe("refused");
    expect(out.p19.otherSeesProcess).toBe("0");
    expect(out.p19.otherSeesFile).toBe("absent");
    expect(out.p19.uids[0]).not.toBe(out.p19.uids[1]);
  });

  it("P18: a user without access to the project neither sees the workspace nor opens one of the project", () => {
    expect(out.others).toEqual({ get: 404, stop: 404, events: 404, delete: 404, list: 0, open: 404, openCode: "not_found" });
  });

  it("P16: stopping stores /workspace encrypted: no plaintext in the data dir (the same search finds it written in the clear)", () => {
    expect(out.stopped.state).toBe("stopped");
    expect(out.stopped.archiveBytes).toBeGreaterThan(96 * 1024);
    expect(out.plaintextIn).toEqual([]);
    expect(out.controlFoundIn).toEqual(["control.txt"]);
  });

  it("resumes with /workspace as it was left; init does not run again, before and command do", () => {
    expect(out.resumed.state).toBe("running");
    expect(out.afterResume).toEqual({ markerIntact: true, initRuns: 1, hello: "hello world" });
    expect(out.resumed.transitions.slice(-4)).toEqual(["pending", "creating", "initializing", "running"]);
  });

  it("P16: a flipped byte in the archive makes the start fail loudly; the workspace is kept and starts once the archive is whole", () => {
    expect(out.tampered.state).toBe("failed");
    expect(out.tampered.reason).toMatch(/archive cannot be restored/);
    expect(out.retried.state).toBe("running");
    expect(out.retriedMarkerIntact).toBe(true);
  });

  it("deleting a workspace removes it and its archive", () => {
    expect(out.deleted).toEqual({ status: 204, get: 404, archiveFilesLeft: 0 });
  });
});

describe.runIf(isRoot)("a workspace image built from the repository's Dockerfile", () => {
  let git: GitLab;
  let out: BuildRunOutput;

  beforeAll(async () => {
    git = await startGitLab('image: host\nsteps:\n  - command: "true"\n', "workspace-build");
    pushCommit(git.repos.app, git.user.uid, ".gitpod.Dockerfile", "FROM debian:bookworm\nRUN head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /built-marker\n", "a workspace image");
    pushCommit(git.repos.app, git.user.uid, ".gitpod.yml", "image:\n  file: .gitpod.Dockerfile\ntasks:\n  - command: sleep infinity\n", "a workspace config");
    const input: WorkspaceRunInput = { repositoryUrl: git.urlOf(git.repos.app), authorizedKeys: git.authorizedKeys, layoutsDir: testLayoutsDir(), scenario: "build" };
    out = await runModuleInNetns<WorkspaceRunInput, BuildRunOutput>(git.lab.runner, path.join(here, "helpers", "workspace-runner.ts"), input, { timeoutMs: 600_000 });
  }, 650_000);

  afterAll(() => git?.close());

  it("is built on the first start (.gitpod.yml image.file), from the project's cache while the Dockerfile is unchanged, and again once it changed", () => {
    expect(out.first).toEqual({ state: "running", reason: null, marker: expect.stringMatching(/^[0-9a-f]{16}$/), format: "gitpod" });
    expect(out.resumed).toEqual({ state: "running", marker: out.first.marker });
    expect(out.changed.state).toBe("running");
    expect(out.changed.second).toBe("second");
    expect(out.changed.marker).toMatch(/^[0-9a-f]{16}$/);
    expect(out.changed.marker).not.toBe(out.first.marker);
  });
});
