import { createHash, randomBytes } from "node:crypto";
import { execFileSync, spawn } from "node:child_process";
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { pino } from "pino";
import WebSocket from "ws";
import { startSshGateway } from "../../src/gateway/start.js";
import { MAX_RELAYS, MAX_TERMINALS } from "../../src/workspaces/workspace-host.js";
import { repositoryName } from "../../src/workspaces/repository-names.js";
import type { Sandbox } from "../../src/sandbox/backend.js";
import type { BwrapSandbox } from "../../src/sandbox/bwrap-backend.js";
import { projectAtGitServer } from "./clone-runner.js";
import { createUser, signIn, startHarness, type Client, type Harness } from "./harness.js";
import { sh } from "./sandbox-network.js";

// The entry point of a process run inside the test's "runner" network namespace (see
// runModuleInNetns): a real Slipway server whose workspaces clone over SSH from the git server
// in the "services" namespace, driven through its API, and looked at from inside and outside.

export interface WorkspaceRunInput {
  repositoryUrl: string;
  authorizedKeys: string;
  layoutsDir: string;
  /** "tour" (the default): the whole life of a workspace; "build": an image built from the repository's Dockerfile. */
  scenario?: "tour" | "build";
}

export interface BuildRunOutput {
  first: { state: string; reason: string | null; marker: string; format: string | null };
  resumed: { state: string; marker: string };
  changed: { state: string; marker: string; second: string };
}

export interface Seen {
  state: string;
  reason: string | null;
  commit: string | null;
  archiveBytes: number | null;
  transitions: string[];
  tasks: Array<{ name: string; state: string; output: string }>;
  configFormat: string | null;
  problems: string[];
}

export interface TerminalSeen {
  listed: Array<{ kind: string; name: string; state: string }>;
  arithmetic: boolean;
  size: string;
  /** Whether a host file (world-readable) was reached through another process's /proc/<pid>/root. */
  hostFileSeen: boolean;
  backlogOnReattach: boolean;
  badOrigin: string;
  usedAfter: boolean;
  closed: number;
}

export interface PortsSeen {
  listed: Array<{ port: number; visibility: string; listening: boolean }>;
  anonymousPrivate: number;
  ownerPrivate: { status: number; requestLine: string; cookiesForwarded: boolean; answerCookie: string | null; clearSiteData: string | null; csp: string | null; prefix: string };
  otherPrivate: number;
  anonymousPublic: number;
  anonymousAfterPrivate: number;
  closedPort: string;
  noSlash: string;
}

export interface SshSeen {
  command: string;
  exitCode: number | null;
  pty: boolean;
  uploaded: string;
  downloaded: string;
  forwarded: string;
  otherUser: string;
  unregistered: string;
  audited: number;
  sameHostKeyAfterRestart: boolean;
  cli: CliSeen;
}

export interface CliSeen {
  list: string;
  ssh: string;
  snapshot: string;
  opened: { code: number | null; progress: string[]; stop: string };
}

export interface SharingSeen {
  snapshot: { outsiderGet: number; outsiderOpen: number; memberGet: number; memberOpen: number; openedState: string; openedOwnerIsMember: boolean; contentIntact: boolean; initRuns: number; afterRevoke: number };
  leftMember: { swept: boolean; state: string; reason: string | null };
  memberPush: number;
  join: { beforeSharing: number; request: string; beforeApproval: number[]; guests: string[]; afterApproval: number[]; privatePort: number; afterUnshare: number[]; forbidden: string; denied: number; ended: { terminal: number; ssh: string; sshBefore: string; sshAfterApproval: string; guestShellsOpened: number; shellsClosed: number } };
  audited: string[];
}

export interface WorkspaceRunOutput {
  taskOutput: string;
  variables: string;
  shared: SharingSeen;
  ssh: SshSeen;
  ports: PortsSeen;
  terminal: TerminalSeen;
  caps: { terminals: { opened: number; refused: string }; relays: { opened: number; refused: string; afterClose: boolean } };
  push: { state: string; pushed: boolean; afterRestart: boolean; sshCommand: string; keyMode: string };
  idle: { extended: number[]; limits: number[]; after11: string[]; after31: string[]; reason: string | null; state: string };
  commits: { opened: string | null };
  opened: Seen;
  inside: { hello: string; initRuns: number; osRelease: string; key: string; whoami: string };
  p26: { status: string; hostUids: number[]; hostUid: number };
  stopped: Seen;
  /** Files of the data dir holding any of the plaintext markers. */
  plaintextIn: string[];
  /** The same search with a marker written in the clear, as the control. */
  controlFoundIn: string[];
  resumed: Seen;
  afterResume: { markerIntact: boolean; initRuns: number; hello: string };
  tampered: Seen;
  retried: Seen;
  retriedMarkerIntact: boolean;
  others: { get: number; stop: number; events: number; delete: number; list: number; open: number; openCode: string };
  p19: { otherSeesProcess: string; otherSeesFile: string; otherReachesPort: string; ownReachesPort: string; uids: [number, number] };
  deleted: { status: number; get: number; archiveFilesLeft: number };
}

async function until(client: Client, id: string, states: string[], timeoutMs = 120_000): Promise<Seen> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await client.get(`/api/v1/workspaces/${id}`);
    const ws = res.json();
    if (states.includes(ws.state)) {
      return {
        state: ws.state,
        reason: ws.reason,
        commit: ws.commit,
        archiveBytes: ws.archiveBytes,
        transitions: ws.transitions.map((t: { state: string }) => t.state),
        tasks: ws.tasks.map((t: { name: string; state: string; output: string }) => ({ name: t.name, state: t.state, output: t.output })),
        configFormat: ws.config?.format ?? null,
        problems: ws.problems.map((p: { file: string; line: number; col: number; message: string }) => `${p.file}:${p.line}:${p.col}: ${p.message}`),
      };
    }
    if (Date.now() > deadline) throw new Error(`workspace ${id} stayed ${ws.state} (${ws.reason ?? ""})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Files under `dir` whose bytes contain any of `needles`. */
function filesContaining(dir: string, needles: Buffer[]): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d)) {
      const p = path.join(d, entry);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) {
        const bytes = readFileSync(p);
        if (needles.some((n) => bytes.includes(n))) found.push(path.relative(dir, p));
      }
    }
  };
  walk(dir);
  return found;
}

const archiveDir = (h: Harness) => path.join(h.dataDir, "workspaces");
const archiveFiles = (h: Harness) => readdirSync(archiveDir(h));
const sandboxOf = (h: Harness, id: string): Sandbox => {
  const s = h.services.workspaceHost.sandboxOf(id);
  if (!s) throw new Error(`workspace ${id} has no sandbox`);
  return s;
};
const out = async (s: Sandbox, script: string) => (await sh(s, script)).out.trim();

/** A WebSocket to a terminal, as a page of the server opens it (its Origin, the session cookie); collects what it prints. */
async function attach(h: Harness, client: Client, id: string, terminal: string, origin = h.services.publicUrl()) {
  let text = "";
  const ws = new WebSocket(`${h.services.publicUrl().replace(/^http/, "ws")}/api/v1/workspaces/${id}/terminals/${terminal}/attach`, { headers: { cookie: client.auth.cookie!, origin } });
  ws.on("message", (data: Buffer, binary: boolean) => {
    if (binary) text += data.toString("utf8");
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const waitFor = async (pattern: RegExp) => {
    for (let i = 0; i < 200 && !pattern.test(text); i++) await new Promise((r) => setTimeout(r, 50));
    return pattern.test(text);
  };
  return { ws, waitFor, text: () => text, type: (keys: string) => ws.send(Buffer.from(keys)) };
}

/** What a command prints in the workspace with its variables, as an SSH command or a terminal gets them. */
async function shellOutput(h: Harness, id: string, script: string): Promise<string> {
  const shell = h.services.workspaceHost.shellOf(id)!;
  let text = "";
  await shell.sandbox.exec({ argv: ["/bin/sh", "-c", script], env: shell.env, cwd: shell.cwd }, { stdout: (d) => (text += d.toString()) });
  return text.trim();
}

const userIdOf = async (client: Client) => (await client.get("/api/v1/me")).json().user.id as string;

async function useSnapshotsAndSharing(h: Harness, owner: Client, other: Client, id: string, project: string, digest: string): Promise<SharingSeen> {
  // A member of the owner's organisation, who may open workspaces of the project.
  await createUser(h, "member@example.com");
  const orgId = (await owner.get(`/api/v1/projects/${project}`)).json().organization as string;
  const { token } = await h.services.orgs.invite({ principal: { userId: await userIdOf(owner), email: "owner@example.com", isAdmin: false, twoFactor: false, via: "session", scopes: "all" }, ip: null }, orgId, "member@example.com", "member");
  const member = await signIn(h, "member@example.com");
  await member.post("/api/v1/invitations/accept", { token });
  // Pushing uses the project's deploy key: a member who builds may not ask for it.
  const memberPush = (await member.post("/api/v1/workspaces", { repository: project, pushAccess: true })).statusCode;

  const taken = await owner.post(`/api/v1/workspaces/${id}/snapshots`, { name: "before lunch" });
  if (taken.statusCode !== 201) throw new Error(`snapshot: ${taken.statusCode} ${taken.body}`);
  const snap = taken.json().id as string;
  const outsiderGet = (await other.get(`/api/v1/snapshots/${snap}`)).statusCode;
  const outsiderOpen = (await other.post(`/api/v1/snapshots/${snap}/open`)).statusCode;
  const memberGet = (await member.get(`/api/v1/snapshots/${snap}`)).statusCode;
  const openedRes = await member.post(`/api/v1/snapshots/${snap}/open`);
  const openedId = openedRes.json().id as string;
  const opened = await until(member, openedId, ["running", "failed"]);
  const memberId = await userIdOf(member);
  const copy = opened.state === "running" ? sandboxOf(h, openedId) : undefined;
  const contentIntact = copy ? (await out(copy, "sha256sum /workspace/secret.txt | cut -d' ' -f1")) === digest : false;
  const initRuns = copy ? Number(await out(copy, "grep -c init-ran /workspace/init.log")) : -1;
  await owner.delete(`/api/v1/workspaces/${id}/snapshots/${snap}`);
  const afterRevoke = (await member.get(`/api/v1/snapshots/${snap}`)).statusCode;
  // P18: a member who leaves the organisation keeps no running workspace of its project.
  await owner.delete(`/api/v1/orgs/${orgId}/members/${memberId}`);
  const sweptOut = await h.services.workspaceHost.stopExpired();
  const leftMember = { swept: sweptOut.includes(openedId), ...(({ state, reason }) => ({ state, reason }))(await h.services.workspaces.get(openedId)) };
  await member.delete(`/api/v1/workspaces/${openedId}`);
  // One more, kept: the at-rest search after the stop looks at it too.
  await owner.post(`/api/v1/workspaces/${id}/snapshots`, {});

  const reach = async (who: Client) => [(await who.get(`/api/v1/workspaces/${id}`)).statusCode, (await who.post(`/api/v1/workspaces/${id}/terminals`, { cols: 80, rows: 24 })).statusCode];
  const beforeSharing = (await other.post(`/api/v1/workspaces/${id}/join`)).statusCode;
  await owner.put(`/api/v1/workspaces/${id}/sharing`, { shared: true });
  const request = (await other.post(`/api/v1/workspaces/${id}/join`)).json().state as string;
  const beforeApproval = await reach(other);
  const guests = (await owner.get(`/api/v1/workspaces/${id}/guests`)).json().guests.map((g: { email: string; state: string }) => `${g.email} ${g.state}`);
  const guestSsh = await sshAsGuest(h, other, id);
  const refusedBefore = await guestSsh.run("echo guest-in");
  await owner.put(`/api/v1/workspaces/${id}/guests/${await userIdOf(other)}`, { approve: true });
  const afterApproval = await reach(other);
  const privatePort = (await fetch(`${h.services.publicUrl()}/w/${id}/p/8765/`, { headers: { cookie: other.auth.cookie! } })).status;
  // What the guest has open when sharing ends: a terminal in the browser and an SSH session.
  const shell = (await other.post(`/api/v1/workspaces/${id}/terminals`, {})).json().id as string;
  const terminal = await attach(h, other, id, shell);
  const terminalClosed = new Promise<number>((resolve) => terminal.ws.once("close", (code: number) => resolve(code)));
  const admitted = await guestSsh.run("echo guest-in");
  const session = guestSsh.hold();
  // A guest opens terminals up to their own cap, which leaves the owner room.
  let guestShells = 0;
  while (guestShells < 20 && (await other.post(`/api/v1/workspaces/${id}/terminals`, {})).statusCode === 201) guestShells++;
  const shellsOf = async () => ((await owner.get(`/api/v1/workspaces/${id}/terminals`)).json().terminals as Array<{ kind: string; state: string }>).filter((t) => t.kind === "shell" && t.state === "running").length;
  const shellsBefore = await shellsOf();
  await new Promise((r) => setTimeout(r, 1_000));
  await owner.put(`/api/v1/workspaces/${id}/sharing`, { shared: false });
  const afterUnshare = [...(await reach(other)), (await fetch(`${h.services.publicUrl()}/w/${id}/p/8765/`, { headers: { cookie: other.auth.cookie! } })).status];
  const within = <T>(p: Promise<T>, fallback: T) => Promise.race([p, new Promise<T>((r) => setTimeout(() => r(fallback), 5_000))]);
  await new Promise((r) => setTimeout(r, 500));
  const ended = {
    terminal: await within(terminalClosed, 0),
    ssh: await within(session.then(() => "closed"), "still open"),
    sshBefore: refusedBefore.code === 0 ? "admitted" : "refused",
    sshAfterApproval: admitted.out.trim(),
    // The guest's shells, the one from reach() among them: gone with their access.
    guestShellsOpened: guestShells,
    shellsClosed: shellsBefore - (await shellsOf()),
  };
  await guestSsh.close();
  await owner.patch(`/api/v1/orgs/${orgId}`, { workspaceSharing: false });
  const refused = await owner.put(`/api/v1/workspaces/${id}/sharing`, { shared: true });
  const forbidden = `${refused.statusCode} ${refused.json().error?.code}`;
  await owner.patch(`/api/v1/orgs/${orgId}`, { workspaceSharing: true });
  await owner.put(`/api/v1/workspaces/${id}/sharing`, { shared: true });
  await member.post(`/api/v1/workspaces/${id}/join`);
  await owner.put(`/api/v1/workspaces/${id}/guests/${memberId}`, { approve: false });
  const denied = (await member.get(`/api/v1/workspaces/${id}`)).statusCode;
  await owner.put(`/api/v1/workspaces/${id}/sharing`, { shared: false });
  const audited = [...new Set((await h.services.store.db.selectFrom("audit_log").select("action").where("action", "like", "workspace.%").execute()).map((r) => r.action))].sort();
  return {
    snapshot: { outsiderGet, outsiderOpen, memberGet, memberOpen: openedRes.statusCode, openedState: opened.state, openedOwnerIsMember: openedRes.json().ownerId === memberId, contentIntact, initRuns, afterRevoke },
    leftMember,
    memberPush,
    join: { beforeSharing, request, beforeApproval, guests, afterApproval, privatePort, afterUnshare, forbidden, denied, ended },
    audited,
  };
}

/**
 * A workspace's terminals and relayed connections are capped (each costs processes): shells open
 * up to the cap, then 409; connections to a port up to theirs, then 503, and again once one closed.
 */
async function useCaps(h: Harness, owner: Client, id: string) {
  const running = async () => ((await owner.get(`/api/v1/workspaces/${id}/terminals`)).json().terminals as Array<{ id: string; kind: string; state: string }>).filter((t) => t.kind === "shell" && t.state === "running");
  const before = (await running()).length;
  const made: string[] = [];
  let refused = "";
  for (let i = 0; i < MAX_TERMINALS + 1 && !refused; i++) {
    const res = await owner.post(`/api/v1/workspaces/${id}/terminals`, {});
    if (res.statusCode === 201) made.push(res.json().id);
    else refused = `${res.statusCode} ${res.json().error?.code}`;
  }
  for (const t of made) await owner.delete(`/api/v1/workspaces/${id}/terminals/${t}`);
  const terminals = { opened: before + made.length, refused };

  // A server that completes every connection (a long backlog) and accepts none.
  const s = sandboxOf(h, id);
  // Each exec has a process namespace of its own: the server stops when a file says so.
  const holding = sh(s, `exec perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 8799, Listen => 200, ReuseAddr => 1) or die; select(undef, undef, undef, 0.1) until -e "/tmp/stop-8799"'`, 120_000).catch(() => undefined);
  const host = h.services.workspaceHost;
  const sockets: Array<{ destroy(): void }> = [];
  for (let i = 0; i < 100 && sockets.length === 0; i++) {
    const first = await host.connect(id, 8799).catch(() => undefined);
    if (first) sockets.push(first);
    else await new Promise((r) => setTimeout(r, 100));
  }
  const tries = await Promise.allSettled(Array.from({ length: MAX_RELAYS }, () => host.connect(id, 8799)));
  for (const t of tries) if (t.status === "fulfilled" && t.value) sockets.push(t.value);
  const opened = sockets.length;
  const over = (tries.find((t) => t.status === "rejected") as PromiseRejectedResult | undefined)?.reason as { status?: number; code?: string } | undefined;
  sockets.pop()!.destroy();
  await new Promise((r) => setTimeout(r, 300));
  const again = await host.connect(id, 8799).catch(() => undefined);
  for (const socket of again ? [...sockets, again] : sockets) socket.destroy();
  await s.writeFile("/tmp/stop-8799", "");
  await holding;
  return { terminals, relays: { opened, refused: `${over?.status} ${over?.code}`, afterClose: again !== undefined } };
}

/**
 * A workspace opened with push access: a commit made in it reaches the git server with the
 * project's deploy key, named only by the repository's git config; after a stop and a start too.
 */
async function usePush(h: Harness, owner: Client, project: string, repositoryUrl: string) {
  const bare = new URL(repositoryUrl).pathname;
  const created = await owner.post("/api/v1/workspaces", { repository: project, ref: "push-test", pushAccess: true });
  if (created.statusCode !== 201) throw new Error(`open with push access: ${created.statusCode} ${created.body}`);
  const id = created.json().id as string;
  const pushFrom = async (branch: string) => {
    const opened = await until(owner, id, ["running", "failed"]);
    if (opened.state !== "running") return { state: opened.state, pushed: false };
    const head = await out(sandboxOf(h, id), `cd /workspace && git -c user.name=Dev -c user.email=dev@example.com commit -q --allow-empty -m '${branch}' && git push -q origin HEAD:refs/heads/${branch} 2>&1; git rev-parse HEAD`);
    const there = execFileSync("git", ["--git-dir", bare, "rev-parse", `refs/heads/${branch}`], { encoding: "utf8" }).trim();
    return { state: opened.state, pushed: head.split("\n").pop() === there };
  };
  const first = await pushFrom("from-workspace");
  const s = sandboxOf(h, id);
  const sshCommand = await out(s, "git -C /workspace config --local core.sshCommand");
  const keyMode = await out(s, "stat -c %a /home/build/.ssh/deploy_key");
  await owner.post(`/api/v1/workspaces/${id}/stop`);
  await owner.post(`/api/v1/workspaces/${id}/start`);
  const again = await pushFrom("after-restart");
  await owner.delete(`/api/v1/workspaces/${id}`);
  return { state: first.state, pushed: first.pushed, afterRestart: again.pushed, sshCommand, keyMode };
}

/** A guest's way in over SSH: a key of their own, registered, and the gateway to use it on. */
async function sshAsGuest(h: Harness, guest: Client, id: string) {
  const dir = mkdtempSync(path.join(tmpdir(), "slipway-ssh-guest-"));
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "guest", "-f", path.join(dir, "guest")]);
  await guest.post("/api/v1/me/ssh-keys", { name: "guest laptop", publicKey: readFileSync(path.join(dir, "guest.pub"), "utf8") });
  const started = await startSshGateway(h.services, 0, "127.0.0.1", pino({ level: "silent" }));
  const args = (command: string) => ["-p", String(started.address.port), "-i", path.join(dir, "guest"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", `UserKnownHostsFile=${path.join(dir, "known_hosts")}`, "-o", "LogLevel=ERROR", `${id}@127.0.0.1`, command];
  return {
    run: (command: string) => openssh("ssh", args(command)),
    /** A session that stays until the server ends it. */
    hold: () => openssh("ssh", args("sleep 60"), "", 90_000),
    close: async () => {
      await started.gateway.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `slipway ws …`, the built CLI, with an API token in SLIPWAY_TOKEN as a developer would run it. */
async function useCli(h: Harness, owner: Client, id: string, sshOptions: string[]): Promise<CliSeen> {
  const token = (await owner.post("/api/v1/tokens", { name: "cli", scopes: ["workspaces:read", "workspaces:write", "projects:read"] })).json().token as string;
  const run = (args: string[]) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const child = spawn(process.execPath, [path.resolve("dist/src/cli/main.js"), "ws", ...args], { env: { PATH: process.env.PATH, SLIPWAY_TOKEN: token, SLIPWAY_SERVER: h.services.publicUrl() }, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      child.on("close", (code) => resolve({ code, out, err }));
    });
  const list = (await run(["list"])).out.split("\n").find((l) => l.startsWith(id)) ?? "";
  const ssh = (await run(["ssh", id, ...sshOptions, "--", "echo", "cli-ok"])).out.trim();
  const snapshot = (await run(["snapshot", id, "--name", "from the cli"])).out.trim();
  const project = (await owner.get(`/api/v1/workspaces/${id}`)).json().projectId as string;
  const opened = await run(["open", project, "--ref", "main"]);
  const newId = opened.out.trim();
  const stop = await run(["stop", newId]);
  return {
    list: list.replace(id, "ID").replace(/last used \S+/, "last used T"),
    ssh,
    snapshot: snapshot.replace(/^snap_[A-Za-z0-9_-]+$/, "snap_…"),
    opened: { code: opened.code, progress: opened.err.split("\n").filter(Boolean).map((l) => l.replaceAll(newId, "NEW").replace(/ssh -p \d+/, "ssh -p PORT")), stop: `${stop.code} ${stop.err.trim().replace(newId, "NEW")}` },
  };
}

/** The OpenSSH client, as a developer runs it; resolves to its exit code and output. */
function openssh(tool: "ssh" | "scp", args: string[], input = "", timeoutMs = 30_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(tool, args, { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
    child.stdin.end(input);
  });
}

async function useSsh(h: Harness, owner: Client, other: Client, id: string): Promise<SshSeen> {
  const dir = mkdtempSync(path.join(tmpdir(), "slipway-ssh-client-"));
  const log = pino({ level: "silent" });
  let started = await startSshGateway(h.services, 0, "127.0.0.1", log);
  try {
    const key = (name: string) => {
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path.join(dir, name)]);
      return readFileSync(path.join(dir, `${name}.pub`), "utf8");
    };
    const ownerKey = key("owner");
    const otherKey = key("other");
    key("stranger");
    const added = await owner.post("/api/v1/me/ssh-keys", { name: "laptop", publicKey: ownerKey });
    if (added.statusCode !== 201) throw new Error(`ssh key: ${added.statusCode} ${added.body}`);
    await other.post("/api/v1/me/ssh-keys", { name: "theirs", publicKey: otherKey });
    // Host keys are remembered under one name, whatever port the gateway is on.
    const opts = (identity: string, strict = "accept-new") => ["-i", path.join(dir, identity), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", `StrictHostKeyChecking=${strict}`, "-o", `UserKnownHostsFile=${path.join(dir, "known_hosts")}`, "-o", "HostKeyAlias=slipway-gateway", "-o", "LogLevel=ERROR"];
    const sshTo = (identity: string, ...rest: string[]) => ["-p", String(started.address.port), ...opts(identity), `${id}@127.0.0.1`, ...rest];

    const command = await openssh("ssh", sshTo("owner", "echo ssh-ok $(id -u); cat /workspace/hello.txt; exit 3"));
    const pty = await openssh("ssh", ["-tt", ...sshTo("owner")], "echo $((7*6))y; exit\n");
    writeFileSync(path.join(dir, "upload.txt"), "sent over scp\n");
    await openssh("scp", ["-P", String(started.address.port), ...opts("owner"), path.join(dir, "upload.txt"), `${id}@127.0.0.1:/workspace/uploaded.txt`]);
    const uploaded = (await sh(sandboxOf(h, id), "cat /workspace/uploaded.txt")).out.trim();
    await openssh("scp", ["-P", String(started.address.port), ...opts("owner"), `${id}@127.0.0.1:/workspace/hello.txt`, path.join(dir, "downloaded.txt")]);
    const downloaded = readFileSync(path.join(dir, "downloaded.txt"), "utf8").trim();

    // ssh -L: a local port leads to the workspace's own loopback.
    const local = 40000 + (randomBytes(2).readUInt16BE(0) % 20000);
    const tunnel = spawn("ssh", ["-N", "-L", `${local}:localhost:8765`, ...sshTo("owner")], { stdio: "ignore" });
    let forwarded = "";
    for (let i = 0; i < 100 && !forwarded; i++) {
      await new Promise((r) => setTimeout(r, 100));
      forwarded = await fetch(`http://127.0.0.1:${local}/through-ssh`).then((r) => r.text(), () => "");
    }
    tunnel.kill();

    const cli = await useCli(h, owner, id, [...opts("owner")]);
    const otherUser = await openssh("ssh", sshTo("other", "true"));
    const unregistered = await openssh("ssh", sshTo("stranger", "true"));
    const audited = (await h.services.store.db.selectFrom("audit_log").select("action").where("action", "=", "workspace.ssh_session").execute()).length;

    // A restarted gateway shows the same host key: known_hosts, now strict, still matches.
    await started.gateway.close();
    started = await startSshGateway(h.services, 0, "127.0.0.1", log);
    const again = await openssh("ssh", ["-p", String(started.address.port), ...opts("owner", "yes"), `${id}@127.0.0.1`, "true"]);
    return {
      command: command.out.trim(),
      exitCode: command.code,
      pty: /42y/.test(pty.out),
      uploaded,
      downloaded,
      forwarded: forwarded.split("\r\n")[0]!,
      otherUser: `${otherUser.code} ${/Permission denied/.test(otherUser.out) ? "Permission denied" : otherUser.out}`,
      unregistered: `${unregistered.code} ${/Permission denied/.test(unregistered.out) ? "Permission denied" : unregistered.out}`,
      audited,
      sameHostKeyAfterRestart: again.code === 0,
      cli,
    };
  } finally {
    await started.gateway.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function usePorts(h: Harness, owner: Client, other: Client, id: string): Promise<PortsSeen> {
  const base = `${h.services.publicUrl()}/w/${id}/p`;
  const get = (url: string, cookie?: string) => fetch(url, { headers: cookie ? { cookie } : {}, redirect: "manual" });
  let listed: PortsSeen["listed"] = [];
  for (let i = 0; i < 50 && !listed.some((p) => p.port === 8765 && p.listening); i++) {
    listed = (await owner.get(`/api/v1/workspaces/${id}/ports`)).json().ports.map((p: PortsSeen["listed"][number]) => ({ port: p.port, visibility: p.visibility, listening: p.listening }));
    await new Promise((r) => setTimeout(r, 100));
  }
  const mine = await get(`${base}/8765/hello?x=1`, `${owner.auth.cookie}; theirs=kept`);
  const body = await mine.text();
  const ownerPrivate = {
    status: mine.status,
    requestLine: body.split("\r\n")[0]!,
    cookiesForwarded: /^cookie:/im.test(body),
    answerCookie: mine.headers.get("set-cookie"),
    clearSiteData: mine.headers.get("clear-site-data"),
    csp: mine.headers.get("content-security-policy"),
    prefix: /x-forwarded-prefix: (\S+)/i.exec(body)?.[1] ?? "",
  };
  const anonymousPrivate = (await get(`${base}/8765/`)).status;
  const otherPrivate = (await get(`${base}/8765/`, other.auth.cookie)).status;
  await owner.put(`/api/v1/workspaces/${id}/ports/8765`, { visibility: "public" });
  const anonymousPublic = (await get(`${base}/8765/`)).status;
  await owner.put(`/api/v1/workspaces/${id}/ports/8765`, { visibility: "private" });
  const anonymousAfterPrivate = (await get(`${base}/8765/`)).status;
  const closed = await get(`${base}/8766/`, owner.auth.cookie);
  const noSlash = await get(`${base}/8765?a=b`, owner.auth.cookie);
  return {
    listed: listed.filter((p) => p.port === 8765),
    anonymousPrivate,
    ownerPrivate,
    otherPrivate,
    anonymousPublic,
    anonymousAfterPrivate,
    closedPort: `${closed.status} ${((await closed.json()) as { error: { code: string } }).error.code}`,
    noSlash: `${noSlash.status} ${noSlash.headers.get("location")?.replace(id, "ID")}`,
  };
}

async function useTerminal(h: Harness, owner: Client, id: string): Promise<TerminalSeen> {
  const before = (await owner.get(`/api/v1/workspaces/${id}`)).json().lastActivityAt as string;
  const opened = await owner.post(`/api/v1/workspaces/${id}/terminals`, { cols: 80, rows: 24 });
  if (opened.statusCode !== 201) throw new Error(`terminal: ${opened.statusCode} ${opened.body}`);
  const terminalId = opened.json().id as string;
  const listed = (await owner.get(`/api/v1/workspaces/${id}/terminals`)).json().terminals.map((t: { kind: string; name: string; state: string }) => ({ kind: t.kind, name: t.name, state: t.state }));
  const first = await attach(h, owner, id, terminalId);
  await new Promise((r) => setTimeout(r, 20));
  first.type("echo $((6*7))x\r");
  const arithmetic = await first.waitFor(/42x/);
  first.ws.send(JSON.stringify({ type: "resize", cols: 100, rows: 40 }));
  await new Promise((r) => setTimeout(r, 300));
  first.type("stty size\r");
  await first.waitFor(/\r40 100\r?\n/);
  const size = /[\r\n](\d+ \d+)\r?\n/.exec(first.text())?.[1] ?? "";
  // No process the shell can see leads out of the sandbox: a world-readable host file stays unread.
  const secret = `host-only-${randomBytes(8).toString("hex")}`;
  const hostFile = path.join(tmpdir(), `${secret}.txt`);
  writeFileSync(hostFile, `${secret}-content`, { mode: 0o644 });
  first.type(`for p in /proc/[0-9]*; do cat $p/root${hostFile} 2>/dev/null; done; echo scan-done\r`);
  await first.waitFor(/\nscan-done/);
  const hostFileSeen = first.text().includes(`${secret}-content`);
  rmSync(hostFile, { force: true });
  first.ws.close();
  const again = await attach(h, owner, id, terminalId);
  const backlogOnReattach = await again.waitFor(/42x/);
  again.ws.close();
  const badOrigin = await attach(h, owner, id, terminalId, "https://evil.example.com").then(
    () => "opened",
    (err: Error) => err.message,
  );
  const after = (await owner.get(`/api/v1/workspaces/${id}`)).json().lastActivityAt as string;
  const closed = (await owner.delete(`/api/v1/workspaces/${id}/terminals/${terminalId}`)).statusCode;
  return { listed, arithmetic, size, hostFileSeen, backlogOnReattach, badOrigin, usedAfter: after > before, closed };
}

export function main(input: WorkspaceRunInput): Promise<WorkspaceRunOutput | BuildRunOutput> {
  return input.scenario === "build" ? buildScenario(input) : tour(input);
}

/**
 * A workspace whose image the repository's .gitpod.Dockerfile builds: built on the first start,
 * taken from the project's image cache on the next while the Dockerfile is the same, built again
 * once it changed. Its RUN step writes random bytes: the same bytes mean the same image.
 */
async function buildScenario(input: WorkspaceRunInput): Promise<BuildRunOutput> {
  const h = await startHarness({ imageLayoutsDir: input.layoutsDir, workspaceNetwork: "outbound" });
  try {
    await createUser(h, "owner@example.com");
    const owner = await signIn(h, "owner@example.com");
    const project = await projectAtGitServer(owner, "app", input.repositoryUrl, input.authorizedKeys);
    const id = (await owner.post("/api/v1/workspaces", { repository: project })).json().id as string;
    const marker = async () => out(sandboxOf(h, id), "cat /built-marker; echo; cat /second 2>/dev/null || true");
    const seen = await until(owner, id, ["running", "failed"], 300_000);
    const first = { state: seen.state, reason: seen.reason, marker: seen.state === "running" ? await marker() : "", format: seen.configFormat };
    await owner.post(`/api/v1/workspaces/${id}/stop`);
    await owner.post(`/api/v1/workspaces/${id}/start`);
    const again = await until(owner, id, ["running", "failed"], 300_000);
    const resumed = { state: again.state, marker: again.state === "running" ? await marker() : again.reason ?? "" };
    if (again.state === "running") await sh(sandboxOf(h, id), "echo 'RUN echo second > /second' >> /workspace/.gitpod.Dockerfile");
    await owner.post(`/api/v1/workspaces/${id}/stop`);
    await owner.post(`/api/v1/workspaces/${id}/start`);
    const rebuilt = await until(owner, id, ["running", "failed"], 300_000);
    const text = rebuilt.state === "running" ? await marker() : rebuilt.reason ?? "";
    const changed = { state: rebuilt.state, marker: text.split("\n")[0]!, second: text.split("\n")[1] ?? "" };
    await owner.post(`/api/v1/workspaces/${id}/stop`);
    return { first, resumed: { ...resumed, marker: resumed.marker.split("\n")[0]! }, changed };
  } finally {
    await h.close();
  }
}

async function tour(input: WorkspaceRunInput): Promise<WorkspaceRunOutput> {
  const h = await startHarness({ imageLayoutsDir: input.layoutsDir, workspaceNetwork: "outbound" });
  try {
    // Listening, so that terminals are reached with WebSockets as a browser does.
    await h.app.listen({ host: "127.0.0.1", port: 0 });
    h.services.setPublicUrl(`http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`);
    await createUser(h, "owner@example.com");
    await createUser(h, "other@example.com");
    const owner = await signIn(h, "owner@example.com");
    const other = await signIn(h, "other@example.com");
    const project = await projectAtGitServer(owner, "app", input.repositoryUrl, input.authorizedKeys);

    // Variables: the owner's for any repository, this owner's, this one, and another; the project's.
    const repo = repositoryName(input.repositoryUrl);
    for (const [name, value, scope] of [["TOKEN_A", "any-repo-value-1", "*/*"], ["TOKEN_A", "this-repo-value-2", repo], ["TOKEN_B", "owner-wide-value-3", `${repo.split("/")[0]}/*`], ["OTHER_REPO", "not-for-this-4", "elsewhere/thing"]]) {
      const res = await owner.put(`/api/v1/me/workspace-variables/${name}`, { value, scope });
      if (res.statusCode !== 204) throw new Error(`variable: ${res.statusCode} ${res.body}`);
    }
    await owner.put(`/api/v1/projects/${project}/secrets/PROJ_VAR`, { value: "project-value-5" });
    await owner.put(`/api/v1/projects/${project}/secrets/TOKEN_B`, { value: "project-b-value-6" });
    const created = await owner.post("/api/v1/workspaces", { repository: input.repositoryUrl.replace(/\.git$/, "") + ".git", ref: "main" });
    if (created.statusCode !== 201) throw new Error(`open: ${created.statusCode} ${created.body}`);
    const id = created.json().id as string;
    const opened = await until(owner, id, ["running", "failed"]);
    if (opened.state !== "running") throw new Error(`the workspace failed: ${opened.reason}`);
    let s = sandboxOf(h, id);
    // The task's command keeps running; its file shows that before and command ran, in one shell.
    for (let i = 0; i < 100 && (await sh(s, "test -s /workspace/hello.txt")).code !== 0; i++) await new Promise((r) => setTimeout(r, 50));
    const taskOutput = ((await owner.get(`/api/v1/workspaces/${id}`)).json().tasks as Array<{ output: string }>)[0]!.output;
    const inside = {
      hello: await out(s, "cat /workspace/hello.txt"),
      initRuns: Number(await out(s, "grep -c init-ran /workspace/init.log")),
      osRelease: await out(s, ". /etc/os-release && echo $ID-$VERSION_CODENAME"),
      key: await out(s, "ls -A /home/build/.ssh 2>/dev/null | wc -l"),
      whoami: await out(s, "id -u"),
    };
    const marker = `${"sleep"}\0${40 + (randomBytes(2).readUInt16BE(0) % 1000)}`;
    const sleeping = sh(s, `exec sleep ${marker.split("\0")[1]}`, 60_000).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    const pids = readdirSync("/proc").filter((p) => /^\d+$/.test(p) && (() => { try { return readFileSync(`/proc/${p}/cmdline`, "utf8").startsWith(marker); } catch { return false; } })());
    const hostUids = pids.map((p) => Number(readFileSync(`/proc/${p}/status`, "utf8").split("\n").find((l) => l.startsWith("Uid:"))!.split(/\s+/)[1]));
    const p26 = { status: await out(s, "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status"), hostUids, hostUid: (s as BwrapSandbox).hostUid };

    const terminal = await useTerminal(h, owner, id);

    // P16 markers: random bytes no compressor can shrink away, and an environment-looking line.
    const secretFile = randomBytes(96 * 1024).toString("base64");
    await s.writeFile("/workspace/secret.txt", secretFile);
    const digest = createHash("sha256").update(secretFile).digest("hex");
    const needles = [secretFile.slice(1000, 1064), secretFile.slice(50_000, 50_064)].map((n) => Buffer.from(n));

    // Others: a user with no part in the project sees nothing of the workspace and cannot open one.
    const others = {
      get: (await other.get(`/api/v1/workspaces/${id}`)).statusCode,
      stop: (await other.post(`/api/v1/workspaces/${id}/stop`)).statusCode,
      events: (await other.get(`/api/v1/workspaces/${id}/events`)).statusCode,
      delete: (await other.delete(`/api/v1/workspaces/${id}`)).statusCode,
      list: (await other.get("/api/v1/workspaces")).json().workspaces.length,
      open: 0,
      openCode: "",
    };
    const refused = await other.post("/api/v1/workspaces", { repository: project });
    others.open = refused.statusCode;
    others.openCode = refused.json().error?.code;

    // P19: the other user's own workspace of their own project on the same repository.
    await other.post("/api/v1/orgs", { name: "others" });
    const otherProject = await projectAtGitServer(other, "theirs", input.repositoryUrl, input.authorizedKeys);
    const otherId = (await other.post("/api/v1/workspaces", { repository: otherProject })).json().id as string;
    const otherSeen = await until(other, otherId, ["running", "failed"]);
    if (otherSeen.state !== "running") throw new Error(`the other workspace failed: ${otherSeen.reason}`);
    const t = sandboxOf(h, otherId);
    // The workspace image is Debian's minbase: perl-base is what it has for sockets.
    // An HTTP server that answers with the request it got (perl-base is what minbase has for sockets).
    const serving = sh(s, `exec perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "0.0.0.0", LocalPort => 8765, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) { $h = ""; while (defined($l = <$c>)) { last if $l =~ /^\\r?\\n$/; $h .= $l } print $c "HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nSet-Cookie: slipway_session=planted; Path=/\\r\\nClear-Site-Data: \\"cookies\\"\\r\\nContent-Length: " . length($h) . "\\r\\nConnection: close\\r\\n\\r\\n$h"; close $c }'`, 60_000).catch(() => undefined);
    const probe = (x: Sandbox) => out(x, `perl -MIO::Socket::INET -e '$c = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => 8765, Timeout => 2); print $c ? "reached" : "refused"'`);
    let ownReachesPort = "";
    for (let i = 0; i < 50 && ownReachesPort !== "reached"; i++) {
      ownReachesPort = await probe(s);
      if (ownReachesPort !== "reached") await new Promise((r) => setTimeout(r, 100));
    }
    const ports = await usePorts(h, owner, other, id);
    const caps = await useCaps(h, owner, id);
    const push = await usePush(h, owner, project, input.repositoryUrl);
    const ssh = await useSsh(h, owner, other, id);
    const variables = await shellOutput(h, id, 'echo "vars=$TOKEN_A,$TOKEN_B,$PROJ_VAR,${OTHER_REPO:-unset}"');
    const shared = await useSnapshotsAndSharing(h, owner, other, id, project, digest);
    const p19 = {
      otherSeesProcess: await out(t, "grep -l 'Local[P]ort' /proc/[0-9]*/cmdline 2>/dev/null | wc -l"),
      otherSeesFile: await out(t, "test -e /workspace/secret.txt && echo visible || echo absent"),
      otherReachesPort: await probe(t),
      ownReachesPort,
      uids: [(s as BwrapSandbox).hostUid, (t as BwrapSandbox).hostUid] as [number, number],
    };

    const stopRes = await owner.post(`/api/v1/workspaces/${id}/stop`);
    if (stopRes.statusCode !== 200) throw new Error(`stop: ${stopRes.statusCode} ${stopRes.body}`);
    await Promise.all([sleeping, serving]);
    const stopped = await until(owner, id, ["stopped"]);
    const plaintextIn = filesContaining(h.dataDir, needles);
    writeFileSync(path.join(h.dataDir, "control.txt"), secretFile);
    const controlFoundIn = filesContaining(h.dataDir, needles);

    await owner.post(`/api/v1/workspaces/${id}/start`);
    const resumed = await until(owner, id, ["running", "failed"]);
    s = sandboxOf(h, id);
    for (let i = 0; i < 100 && (await sh(s, "test -s /workspace/hello.txt")).code !== 0; i++) await new Promise((r) => setTimeout(r, 50));
    const afterResume = {
      markerIntact: (await out(s, "sha256sum /workspace/secret.txt | cut -d' ' -f1")) === digest,
      initRuns: Number(await out(s, "grep -c init-ran /workspace/init.log")),
      hello: await out(s, "cat /workspace/hello.txt"),
    };

    // A flipped byte in the stored archive: the start fails loudly, and the workspace stays for a retry.
    await owner.post(`/api/v1/workspaces/${id}/stop`);
    await until(owner, id, ["stopped"]);
    const file = path.join(archiveDir(h), (await h.services.workspaces.archiveOf(id))!);
    const bytes = readFileSync(file);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0x01;
    writeFileSync(file, bytes);
    await owner.post(`/api/v1/workspaces/${id}/start`);
    const tampered = await until(owner, id, ["running", "failed"]);
    bytes[at] = bytes[at]! ^ 0x01;
    writeFileSync(file, bytes);
    await owner.post(`/api/v1/workspaces/${id}/start`);
    const retried = await until(owner, id, ["running", "failed"]);
    const retriedMarkerIntact = retried.state === "running" && (await out(sandboxOf(h, id), "sha256sum /workspace/secret.txt | cut -d' ' -f1")) === digest;

    // The owner's run is extended, once. Then nobody uses either workspace: the owner's
    // organisation stops its workspaces after 10 minutes (within the server's 30), the other's after 30.
    const extended = [(await owner.post(`/api/v1/workspaces/${id}/extend`)).statusCode, (await owner.post(`/api/v1/workspaces/${id}/extend`)).statusCode];
    const ownerOrg = (await owner.get(`/api/v1/projects/${project}`)).json().organization as string;
    const limits = [(await owner.patch(`/api/v1/orgs/${ownerOrg}`, { workspaceIdleMinutes: 45 })).statusCode, (await owner.patch(`/api/v1/orgs/${ownerOrg}`, { workspaceIdleMinutes: 10 })).statusCode];
    const after11 = await h.services.workspaceHost.stopExpired(Date.now() + 11 * 60_000);
    const idleSeen = await until(owner, id, ["stopped"]);
    const after31 = await h.services.workspaceHost.stopExpired(Date.now() + 31 * 60_000);
    const name = (x: string) => (x === id ? "mine" : x === otherId ? "theirs" : x);
    const idle = { extended, limits, after11: after11.map(name), after31: after31.map(name), reason: idleSeen.reason, state: idleSeen.state };
    const del = await owner.delete(`/api/v1/workspaces/${id}`);
    const deleted = { status: del.statusCode, get: (await owner.get(`/api/v1/workspaces/${id}`)).statusCode, archiveFilesLeft: archiveFiles(h).filter((f) => f.startsWith(id)).length };
    await other.delete(`/api/v1/workspaces/${otherId}`);

    return { taskOutput, variables, shared, ssh, ports, terminal, caps, push, idle, commits: { opened: opened.commit }, opened: { ...opened }, inside, p26, stopped, plaintextIn, controlFoundIn, resumed, afterResume, tampered, retried, retriedMarkerIntact, others, p19, deleted };
  } finally {
    await h.close();
  }
}
