import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import SqliteDatabase from "better-sqlite3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { cli, PASSWORD } from "./helpers/harness.js";

/** The built CLI is what operators run; rebuild it when any source file is newer than it. */
function ensureBuilt(): void {
  const built = existsSync(cli) ? statSync(cli).mtimeMs : 0;
  const sources = readdirSync("src", { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
  if (sources.every((f) => statSync(path.join("src", f)).mtimeMs <= built)) return;
  try {
    execFileSync(process.execPath, [path.resolve("node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"], { stdio: "pipe" });
  } catch (err) {
    throw new Error(`npm run build failed, so the CLI cannot be tested:\n${(err as { stdout?: Buffer }).stdout?.toString() ?? err}`);
  }
}

/** The environment without the caller's Slipway settings, so only the flags given here apply. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SLIPWAY_")));
}

function runCli(args: string[], stdin = ""): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { env: cleanEnv(), stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

interface Acked {
  projects: string[];
  secrets: { projectId: string; name: string }[];
}

interface Server {
  child: ChildProcess;
  url: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `slipway serve --port 0`; resolves with the URL from the first log line that names it. */
function serve(dataDir: string): Promise<Server> {
  const child = spawn(process.execPath, [cli, "serve", "--port", "0", "--data-dir", dataDir], { env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  let output = "";
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  return new Promise((resolve, reject) => {
    // Keep reading after the URL: a full pipe would stall the server's request logging.
    createInterface({ input: child.stdout! }).on("line", (line) => {
      output += line + "\n";
      if (!line.includes('"url"')) return;
      const url = (JSON.parse(line) as { url?: string }).url;
      if (url) resolve({ child, url, exited });
    });
    void exited.then(({ code, signal }) => reject(new Error(`slipway serve exited (${code ?? signal}) before it listened:\n${output}`)));
  });
}

async function api(url: string, method: string, route: string, headers: Record<string, string>, body?: unknown): Promise<Response> {
  return fetch(url + route, {
    method,
    headers: { ...headers, ...(body !== undefined && { "content-type": "application/json" }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
}

async function apiToken(url: string, email: string): Promise<string> {
  const session = await api(url, "POST", "/api/v1/session", {}, { email, password: PASSWORD });
  expect(session.status).toBe(200);
  const cookie = session.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
  const { csrfToken } = (await session.json()) as { csrfToken: string };
  const scopes = ["projects:read", "projects:write", "secrets:read", "secrets:write"];
  const res = await api(url, "POST", "/api/v1/tokens", { cookie, "x-csrf-token": csrfToken }, { name: "crash-test", scopes });
  expect(res.status).toBe(201);
  return ((await res.json()) as { token: string }).token;
}

/** What is in the SQLite file, read by a process of its own without writing anything. */
function inspectDatabase(dataDir: string, acked: Acked): void {
  const db = new SqliteDatabase(path.join(dataDir, "slipway.db"), { readonly: true });
  try {
    expect(db.pragma("integrity_check")).toEqual([{ integrity_check: "ok" }]);
    // Each acknowledged write committed with its audit entry, in the same transaction.
    const audited = new Set((db.prepare("select target from audit_log where action in ('project.created', 'secret.set')").all() as { target: string }[]).map((r) => r.target));
    for (const id of acked.projects) expect(audited).toContain(id);
    for (const s of acked.secrets) expect(audited).toContain(`project:${s.projectId}/${s.name}`);
  } finally {
    db.close();
  }
}

let dataDir: string;
let running: Server | undefined;

beforeAll(() => {
  ensureBuilt();
  dataDir = mkdtempSync(path.join(tmpdir(), "slipway-crash-"));
});
afterAll(async () => {
  if (running?.child.exitCode === null && running.child.signalCode === null) {
    running.child.kill("SIGKILL");
    await running.exited;
  }
  rmSync(dataDir, { recursive: true, force: true });
});

it("a server killed with SIGKILL mid-write restarts with an intact database, every acknowledged write and a valid audit chain", async () => {
  running = await serve(dataDir);
  const first = running;
  const created = await runCli(["admin", "create-user", "--email", "ops@example.com", "--org", "acme", "--data-dir", dataDir], PASSWORD + "\n");
  expect(created.code, created.stderr).toBe(0);
  const orgId = /created organization acme \((\S+)\)/.exec(created.stdout)?.[1];
  expect(orgId).toBeDefined();
  const auth = { authorization: `Bearer ${await apiToken(first.url, "ops@example.com")}` };

  // Concurrent writers, each creating projects and setting a secret on each, until the kill cuts them off.
  const workers = 8;
  const killAfter = 40;
  const acked: Acked = { projects: [], secrets: [] };
  const unexpected: string[] = [];
  let killed = false;
  const ack = () => {
    if (!killed && acked.projects.length + acked.secrets.length >= killAfter) {
      killed = true;
      first.child.kill("SIGKILL");
    }
  };
  async function writer(w: number): Promise<unknown> {
    try {
      for (let i = 0; i < 100; i++) {
        const project = await api(first.url, "POST", "/api/v1/projects", auth, { name: `w${w}-${i}`, organization: orgId });
        if (project.status !== 201) unexpected.push(`create project: ${project.status} ${await project.text()}`);
        if (!project.ok) continue;
        const projectId = ((await project.json()) as { id: string }).id;
        acked.projects.push(projectId);
        ack();
        const name = `SECRET_${w}_${i}`;
        const secret = await api(first.url, "PUT", `/api/v1/projects/${projectId}/secrets/${name}`, auth, { value: `value-${w}-${i}` });
        if (secret.status !== 201) unexpected.push(`set secret: ${secret.status} ${await secret.text()}`);
        if (!secret.ok) continue;
        acked.secrets.push({ projectId, name });
        ack();
      }
      return undefined;
    } catch (err) {
      return err;
    }
  }
  const endings = await Promise.all(Array.from({ length: workers }, (_, w) => writer(w)));

  expect(killed).toBe(true);
  expect(await first.exited).toEqual({ code: null, signal: "SIGKILL" });
  expect(unexpected).toEqual([]);
  // Every writer was still writing when the server died: the kill came mid-stream.
  expect(endings.every((e) => e instanceof Error)).toBe(true);
  expect(acked.projects.length).toBeGreaterThan(0);
  expect(acked.secrets.length).toBeGreaterThan(0);

  // The dead server's pid file is left behind, naming a process that no longer exists.
  const stalePid = Number(readFileSync(path.join(dataDir, "server.pid"), "utf8").split(" ")[0]);
  expect(stalePid).toBe(first.child.pid);
  expect(() => process.kill(stalePid, 0)).toThrow(expect.objectContaining({ code: "ESRCH" }));
  // The file as the crash left it, before any restart recovers it.
  inspectDatabase(dataDir, acked);

  running = await serve(dataDir);
  const second = running;
  expect(Number(readFileSync(path.join(dataDir, "server.pid"), "utf8").split(" ")[0])).toBe(second.child.pid);
  // Control for the restart above: while a live server holds the data dir, another refuses it.
  const third = await runCli(["serve", "--port", "0", "--data-dir", dataDir]);
  expect(third.code).toBe(2);
  expect(third.stderr).toContain(`a Slipway server (pid ${second.child.pid}) is using`);

  expect((await api(second.url, "GET", "/readyz", {})).status).toBe(200);
  const listed = (await (await api(second.url, "GET", `/api/v1/projects?organization=${orgId}`, auth)).json()) as { projects: { id: string }[] };
  expect(listed.projects.map((p) => p.id)).toEqual(expect.arrayContaining(acked.projects));
  for (const projectId of new Set(acked.secrets.map((s) => s.projectId))) {
    const res = await api(second.url, "GET", `/api/v1/projects/${projectId}/secrets`, auth);
    const names = ((await res.json()) as { secrets: { name: string }[] }).secrets.map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(acked.secrets.filter((s) => s.projectId === projectId).map((s) => s.name)));
  }

  second.child.kill("SIGTERM");
  expect(await second.exited).toEqual({ code: 0, signal: null });
  expect(existsSync(path.join(dataDir, "server.pid"))).toBe(false);
  inspectDatabase(dataDir, acked);

  const verified = await runCli(["admin", "audit", "verify", "--data-dir", dataDir]);
  expect(verified.stdout).toMatch(/^audit log intact: \d+ rows verified$/m);
  expect(verified.code, verified.stderr).toBe(0);
});
