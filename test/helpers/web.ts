import { readFileSync } from "node:fs";
import path from "node:path";
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from "fastify";
import { sql } from "kysely";
import { expect } from "vitest";
import { WEB_ROOT } from "../../src/http/routes/web.js";
import type { Services } from "../../src/services.js";
import { Client, createUser, PASSWORD, signIn, type Harness } from "./harness.js";

export interface Route {
  method: string;
  url: string;
}

/** The name of one of the browser app's built assets. */
export const webAsset = () => /src="\/assets\/([^"]+)"/.exec(readFileSync(path.join(WEB_ROOT, "index.html"), "utf8"))![1]!;

/** Routes deliberately left out of the OpenAPI document (schema.hide). */
/** A user's SSH public key (ed25519), as `ssh-keygen` writes it to a .pub file. */
export const SAMPLE_USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ada@laptop";

export const HIDDEN_ROUTES = ["/healthz", "/readyz", "/metrics", "/.well-known/security.txt", "/api/v1/openapi.json", "/", "/*", "/assets/:file", "/w/:workspaceId/p/:port", "/w/:workspaceId/p/:port/*"];

/**
 * Every route the app registered, read back from Fastify's own route tree so that a route added
 * later is picked up without touching the tests. HEAD is left out: Fastify adds it to every GET.
 */
export function listRoutes(app: FastifyInstance): Route[] {
  const routes: Route[] = [];
  const prefixes: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split("\n")) {
    const m = /^([│ ]*)[├└]── (.+?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    // Each tree level indents by four characters; a node's path continues its parent's.
    const depth = m[1]!.length / 4;
    const url = (depth > 0 ? prefixes[depth - 1]! : "") + m[2]!;
    prefixes[depth] = url;
    prefixes.length = depth + 1;
    // The tree prints a wildcard after a parameter without the slash between them.
    for (const method of m[3]?.split(", ") ?? []) if (method !== "HEAD") routes.push({ method, url: url.replace(/(:\w+)\*$/, "$1/*") });
  }
  return routes;
}

/** The API's one error shape: `{ error: { code, message } }` and a 4xx unless said otherwise. */
export function expectError(res: LightMyRequestResponse, status?: number, code?: string, label = ""): void {
  const what = `${label} → ${res.statusCode} ${res.body.slice(0, 300)}`;
  if (status !== undefined) expect(res.statusCode, what).toBe(status);
  else {
    expect(res.statusCode, what).toBeGreaterThanOrEqual(400);
    expect(res.statusCode, what).toBeLessThan(500);
  }
  expect(res.headers["content-type"], what).toMatch(/^application\/json/);
  const body = res.json() as { error?: { code?: unknown; message?: unknown } };
  expect(Object.keys(body), what).toEqual(["error"]);
  expect(typeof body.error?.code, what).toBe("string");
  expect(typeof body.error?.message, what).toBe("string");
  expect((body.error!.message as string).length, what).toBeGreaterThan(0);
  if (code !== undefined) expect(body.error?.code, what).toBe(code);
}

const TABLES = [
  "users",
  "recovery_codes",
  "api_tokens",
  "email_tokens",
  "organizations",
  "memberships",
  "invitations",
  "projects",
  "project_assignments",
  "data_keys",
  "secrets",
  "deploy_keys",
  "env_file_keys",
  "webhook_secrets",
  "webhook_deliveries",
  "builds",
  "jobs",
  "build_approvals",
  "job_steps",
  "log_chunks",
  "runners",
  "scm_connections",
  "scm_sign_ins",
  "repository_links",
  "repository_polls",
] as const;

/**
 * Row counts of every table that a write through the API would change, plus the newest audit
 * entry and secret update: equal snapshots mean a request wrote nothing. (Sessions and the
 * sign-in throttle are left out: reading a session refreshes it by design; so is the audit entry
 * a refused webhook leaves, which is the one record of a refusal the API keeps on purpose.)
 */
export async function dbSnapshot(services: Services): Promise<Record<string, unknown>> {
  const db = services.store.db;
  const snap: Record<string, unknown> = {};
  for (const table of TABLES) {
    const row = await db.selectFrom(table).select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow();
    snap[table] = Number(row.n);
  }
  const audit = db.selectFrom("audit_log").where("action", "!=", "webhook.rejected");
  snap.audit_log = Number((await audit.select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow()).n);
  snap.lastAudit = (await audit.select("hash").orderBy("seq", "desc").limit(1).executeTakeFirst())?.hash ?? null;
  snap.deployKeysRows = (await db.selectFrom("deploy_keys").select(["project_id", "fingerprint"]).orderBy("project_id").execute()).map((k) => JSON.stringify(k)).join();
  snap.webhookSecretsRows = (await db.selectFrom("webhook_secrets").select(["project_id", "secret"]).orderBy("project_id").execute()).map((k) => JSON.stringify(k)).join();
  snap.lastSecretUpdate = (await db.selectFrom("secrets").select(sql<string>`max(updated_at)`.as("at")).executeTakeFirst())?.at ?? null;
  snap["projectsRows"] = (await db.selectFrom("projects").select(["id", "name", "repository_url"]).orderBy("id").execute()).map((p) => JSON.stringify(p)).join();
  snap["orgsRows"] = (await db.selectFrom("organizations").selectAll().orderBy("id").execute()).map((o) => JSON.stringify(o)).join();
  snap["membersRows"] = (await db.selectFrom("memberships").select(["org_id", "user_id", "role"]).orderBy("user_id").execute()).map((m) => JSON.stringify(m)).join();
  snap["tokensRows"] = (await db.selectFrom("api_tokens").select(["id", "revoked_at"]).orderBy("id").execute()).map((t) => JSON.stringify(t)).join();
  snap["buildsRows"] = (await db.selectFrom("builds").select(["id", "status"]).orderBy("id").execute()).map((b) => JSON.stringify(b)).join();
  snap["jobsRows"] = (await db.selectFrom("jobs").select(["id", "status", "runner_id", "lease_expires_at", "cancel_requested", "log_bytes"]).orderBy("id").execute()).map((j) => JSON.stringify(j)).join();
  snap["usersRows"] = (await db.selectFrom("users").select(["id", "password_hash", "totp_secret", "totp_pending", "email_verified"]).orderBy("id").execute()).map((u) => JSON.stringify(u)).join();
  return snap;
}

/**
 * An owner (also the instance's administrator, so the runner admin routes let them in) with a
 * project, a project secret, a personal secret, an API token, a second member, a build that has
 * ended, a registered runner holding a job of another build, and a spare runner for :runnerId.
 */
export interface World {
  owner: Client;
  bearer: Client;
  /** A registered runner (its token as bearer): the only caller the runner routes let in. */
  runner: Client;
  runnerId: string;
  /** A real value for every path parameter name the API uses. */
  params: Record<string, string>;
  /** The job the runner holds: runner routes use it for :jobId, so they reach their handlers. */
  heldJobId: string;
}

/** The scopes of the world's API token: every resource it may act on. */
export const WORLD_TOKEN_SCOPES = ["projects:read", "projects:write", "secrets:read", "secrets:write", "orgs:read", "orgs:write", "audit:read", "builds:read", "builds:write", "workspaces:read", "workspaces:write"];

export async function setUpWorld(h: Harness): Promise<World> {
  const ownerUser = await createUser(h, "owner@example.com", { admin: true });
  const memberUser = await createUser(h, "member@example.com");
  const owner = await signIn(h, "owner@example.com");
  const project = await owner.post("/api/v1/projects", { name: "web" });
  expect(project.statusCode, project.body).toBe(201);
  const { id: projectId, organization: orgId } = project.json() as { id: string; organization: string };
  const principal = { userId: ownerUser.id, email: ownerUser.email, isAdmin: true, twoFactor: false, via: "session", scopes: "all" } as const;
  const { token: invitation } = await h.services.orgs.invite({ principal, ip: "127.0.0.1" }, orgId, memberUser.email, "member");
  const member = await signIn(h, "member@example.com");
  expect((await member.post("/api/v1/invitations/accept", { token: invitation })).statusCode).toBe(200);
  expect((await owner.put(`/api/v1/projects/${projectId}/secrets/API_KEY`, { value: "s3cret" })).statusCode).toBe(201);
  expect((await owner.put("/api/v1/me/secrets/API_KEY", { value: "s3cret" })).statusCode).toBe(201);
  const token = await owner.post("/api/v1/tokens", { name: "ci", scopes: WORLD_TOKEN_SCOPES });
  expect(token.statusCode, token.body).toBe(201);
  const { id: tokenId, token: bearerToken } = token.json() as { id: string; token: string };
  const { id: runnerId, token: runnerToken } = await h.services.runners.register("world");
  // Requests may remove the runner named by :runnerId: not the one the runner routes need.
  const { id: spareRunnerId } = await h.services.runners.register("spare");
  const ended = await endedBuild(owner, projectId);
  const heldJobId = await heldJob(h, runnerId, projectId);
  // A workspace at rest (failed before it ran): its events stream answers and ends.
  const workspace = await h.services.workspaces.create({ principal, ip: "127.0.0.1" }, { id: projectId, orgId, repositoryUrl: "https://git.example.com/web.git" }, null);
  await h.services.workspaces.transition(workspace.id, ["pending"], "failed", { reason: "a test workspace" });
  return {
    owner,
    bearer: new Client(h.app, { bearer: bearerToken }),
    runner: new Client(h.app, { bearer: runnerToken }),
    runnerId,
    heldJobId,
    params: { projectId, orgId, userId: memberUser.id, tokenId, name: "API_KEY", provider: "github", file: webAsset(), errorId: "unknown", runnerId: spareRunnerId, workspaceId: workspace.id, terminalId: "term_none", port: "8080", keyId: "key_none", snapshotId: "snap_none", ...ended },
  };
}

/**
 * A build canceled while queued. Its job has ended, so its live log stream closes at once: a GET
 * of it answers instead of streaming until a runner (there is none in these tests) finishes it.
 */
export async function endedBuild(owner: Client, projectId: string): Promise<{ buildId: string; jobId: string }> {
  const created = await owner.post(`/api/v1/projects/${projectId}/builds`, { branch: "main" });
  expect(created.statusCode, created.body).toBe(201);
  const build = created.json() as { id: string; jobs: Array<{ id: string }> };
  const canceled = await owner.post(`/api/v1/builds/${build.id}/cancel`);
  expect(canceled.json().status, canceled.body).toBe("canceled");
  return { buildId: build.id, jobId: build.jobs[0]!.id };
}

/** Queues a build and leases a job to the runner (the oldest queued one, not necessarily that build's); returns its id. */
export async function heldJob(h: Harness, runnerId: string, projectId: string): Promise<string> {
  await h.services.builds.create(projectId, { branch: "main", trigger: "api" });
  const job = await h.services.builds.lease(runnerId, 0);
  expect(job).not.toBeNull();
  return job!.jobId;
}

/** Runner routes take a runner token and nothing else; every other route takes a user's credentials. */
export const isRunnerRoute = (r: Route) => r.url.startsWith("/api/v1/runner/");

/** The caller that gets past authentication at this route: the runner at runner routes, else the owner. */
export const callerOf = (world: World, r: Route): Client => (isRunnerRoute(r) ? world.runner : world.owner);

/** Path parameters for this route: at runner routes :jobId is the job the runner holds. */
export const paramsOf = (world: World, r: Route): Record<string, string> => (isRunnerRoute(r) ? { ...world.params, jobId: world.heldJobId } : world.params);

/** The route's URL with each `:param` replaced; a parameter the tests do not know fails loudly. */
export function fillPath(url: string, values: Record<string, string>, override: Record<string, string> = {}): string {
  return url.replace(/:(\w+)/g, (_, name: string) => {
    const v = override[name] ?? values[name];
    if (v === undefined) throw new Error(`no test value for the path parameter :${name} of ${url}; add one to setUpWorld`);
    return v;
  });
}

let clientNumber = 256;

/**
 * One request as `as` (a Client's cookie/CSRF/bearer, or nothing), each from its own loopback
 * address so that per-address rate limits do not answer in place of the check under test.
 */
export function send(
  app: FastifyInstance,
  as: Client | undefined,
  method: string,
  url: string,
  opts: { json?: unknown; payload?: string | Buffer; contentType?: string; headers?: Record<string, string> } = {},
): Promise<LightMyRequestResponse> {
  const n = clientNumber++;
  const payload = opts.payload ?? (opts.json === undefined ? undefined : JSON.stringify(opts.json));
  const auth = as?.auth ?? {};
  return app.inject({
    method: method as InjectOptions["method"],
    url,
    remoteAddress: `127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
    headers: {
      ...(auth.cookie && { cookie: auth.cookie }),
      ...(auth.csrf && { "x-csrf-token": auth.csrf }),
      ...(auth.bearer && { authorization: `Bearer ${auth.bearer}` }),
      ...(payload !== undefined && { "content-type": opts.contentType ?? "application/json" }),
      ...opts.headers,
    },
    ...(payload !== undefined && { payload }),
  });
}

/** JSON Schema, as far as the route schemas in the OpenAPI document use it. */
export interface Schema {
  type?: string;
  nullable?: boolean;
  enum?: unknown[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  default?: unknown;
}
export interface Parameter {
  in: "path" | "query";
  name: string;
  schema: Schema;
}
export interface ApiRoute extends Route {
  body?: Schema;
  query: Parameter[];
  path: Parameter[];
}

/** Every route with its body, query and path parameter schemas from the OpenAPI document. */
export async function apiRoutes(app: FastifyInstance): Promise<ApiRoute[]> {
  const doc = (await app.inject("/api/v1/openapi.json")).json() as { paths: Record<string, Record<string, { parameters?: Parameter[]; requestBody?: { content: Record<string, { schema: Schema }> } }>> };
  return listRoutes(app).map((r) => {
    const op = doc.paths[r.url.replace(/:(\w+)/g, "{$1}")]?.[r.method.toLowerCase()];
    if (!op && !HIDDEN_ROUTES.includes(r.url)) throw new Error(`${r.method} ${r.url} is not in the OpenAPI document`);
    const params = op?.parameters ?? [];
    return { ...r, body: op?.requestBody?.content["application/json"]?.schema, query: params.filter((x) => x.in === "query"), path: params.filter((x) => x.in === "path") };
  });
}

/** An ed25519 public key in known_hosts form (`type base64`): well-formed, made of nothing. */
export const SAMPLE_HOST_KEY = `ssh-ed25519 ${Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from("ssh-ed25519"), Buffer.from([0, 0, 0, 32]), Buffer.alloc(32, 7)]).toString("base64")}`;

/** A body each route accepts (validation passes); the tests mutate it one way at a time. */
export const sampleBodies = (p: Record<string, string>): Record<string, unknown> => ({
  "POST /api/v1/session": { email: "nobody@example.com", password: "not the password" },
  "POST /api/v1/signup": { email: "new@example.com", password: "a long enough password" },
  "POST /api/v1/signup/verify": { token: "unknown-token" },
  "POST /api/v1/password-reset": { email: "nobody@example.com" },
  "POST /api/v1/password-reset/confirm": { token: "unknown-token", password: "a long enough password" },
  "POST /api/v1/me/password": { currentPassword: PASSWORD, newPassword: "another long password" },
  "PATCH /api/v1/me": { name: "Renamed" },
  "POST /api/v1/me/2fa": { password: PASSWORD },
  "POST /api/v1/me/2fa/confirm": { code: "123456" },
  "POST /api/v1/me/2fa/disable": { code: "123456" },
  "POST /api/v1/tokens": { name: "deploy", scopes: ["projects:read"] },
  "PUT /api/v1/me/secrets/:name": { value: "value" },
  "POST /api/v1/invitations/accept": { token: "unknown-token" },
  "POST /api/v1/orgs": { name: "second" },
  "PATCH /api/v1/orgs/:orgId": { name: "renamed" },
  "POST /api/v1/orgs/:orgId/invitations": { email: "invitee@example.com", role: "member" },
  "POST /api/v1/runners": { name: "build-02", currentPassword: PASSWORD },
  "PATCH /api/v1/orgs/:orgId/members/:userId": { role: "admin" },
  "POST /api/v1/projects": { name: "api", organization: p.orgId },
  "PATCH /api/v1/projects/:projectId": { name: "web2" },
  "PUT /api/v1/projects/:projectId/secrets/:name": { value: "value" },
  "POST /api/v1/projects/:projectId/builds": { branch: "main" },
  "POST /api/v1/builds/:buildId/approvals": { step: "2" },
  "POST /api/v1/runner/lease": { waitMs: 0 },
  "POST /api/v1/runner/jobs/:jobId/heartbeat": {},
  "POST /api/v1/runner/jobs/:jobId/log": { offset: 0, data: Buffer.from("step 1 ok\n").toString("base64") },
  "POST /api/v1/runner/jobs/:jobId/secrets": { names: ["API_KEY"] },
  "POST /api/v1/runner/jobs/:jobId/checkout": {},
  "POST /api/v1/runner/jobs/:jobId/image-cache": {},
  "POST /api/v1/runner/jobs/:jobId/steps": { step: "1", name: "build", status: "running", sandbox: 0, logOffset: 0 },
  // Valid in shape; the world's project has no SSH repository, so the server answers 400 wrong_host.
  "POST /api/v1/runner/jobs/:jobId/known-hosts": { knownHosts: `git.example.com ${SAMPLE_HOST_KEY}\n` },
  // Valid in shape; the server answers 422, as no key sealed it.
  "POST /api/v1/runner/jobs/:jobId/env-files": { path: "app.env.encrypted", text: "slipway:v1:AAAA\n" },
  "POST /api/v1/projects/:projectId/env-file-key/decrypt": { text: "slipway:v1:AAAA\n", name: "app.env.encrypted" },
  "POST /api/v1/runner/jobs/:jobId/finish": { status: "success", reason: null },
  "POST /api/v1/runner/polls/lease": {},
  // Valid in shape; the runner holds no poll of the project, so the server answers 409 lease_lost.
  "POST /api/v1/runner/polls/:projectId/result": { refs: { "refs/heads/main": "a".repeat(40) } },
  // Valid in shape; no such ticket was given, so the server answers 401 ticket_invalid.
  "POST /api/v1/session/scm": { ticket: "t".repeat(43), totp: "123456" },
  // Valid in shape; no account is connected in these tests, so the server answers 404 not_connected.
  "PUT /api/v1/projects/:projectId/repository-link": { provider: "github", repo: "octocat/Hello-World" },
  // Valid in shape; the world's project has no repository URL, so the server answers 400 no_repository.
  "POST /api/v1/workspaces": { repository: p.projectId, ref: "main" },
  "POST /api/v1/me/ssh-keys": { name: "laptop", publicKey: SAMPLE_USER_KEY },
  "PUT /api/v1/me/workspace-variables/:name": { value: "value", scope: "acme/app" },
  // Valid in shape; the world's workspace failed before it ran, so there is nothing to snapshot (409).
  "POST /api/v1/workspaces/:workspaceId/snapshots": { name: "before lunch" },
  "PUT /api/v1/workspaces/:workspaceId/sharing": { shared: false },
  // Valid in shape; nobody asked to join, so the server answers 404.
  "PUT /api/v1/workspaces/:workspaceId/guests/:userId": { approve: false },
  // Valid in shape; the world's workspace is not running, so the server answers 409.
  "POST /api/v1/workspaces/:workspaceId/terminals": { cols: 80, rows: 24 },
  "PUT /api/v1/workspaces/:workspaceId/ports/:port": { visibility: "private" },
});

