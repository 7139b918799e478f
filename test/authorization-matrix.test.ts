import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scopes, type RequestContext, type Role } from "../src/auth/permissions.js";
import type { User } from "../src/auth/users.js";
import { tokenHash } from "../src/crypto/secret-box.js";
import { generateEd25519KeyPair } from "../src/crypto/ssh-keys.js";
import { signBody } from "../src/projects/webhooks.js";
import { encryptEnvText, parsePublicKey } from "../src/secrets/env-file-format.js";
import { Client, PASSWORD, cookieHeader, createUser, startHarness, totpCode, type Harness } from "./helpers/harness.js";
import { browse } from "./helpers/scm-connect.js";
import { GitHubSim } from "./helpers/scm-sim/github.js";
import { SAMPLE_HOST_KEY, webAsset } from "./helpers/web.js";

/**
 * P11: every route of the app × every kind of caller gets exactly the answer the policy intends.
 *
 * The expectations below are written by hand from the policy, never derived from
 * src/auth/permissions.ts, so a wrong entry there shows up here as a failure:
 * - anonymous: 401 on every non-public route;
 * - outsider (signed in, not in the organisation): 404 on its org and project routes;
 * - contractor: reaches only projects they are assigned to (404 on others);
 * - a role lacking the permission: 403; otherwise success.
 */

const actors = ["anonymous", "outsider", "owner", "admin", "member", "contractor", "support"] as const;
type Actor = (typeof actors)[number];
/** The contractor acting on a project of their organisation that they are not assigned to. */
type Column = Actor | "contractorUnassigned";
/** A status, or "status code" where the route itself answers past the access check with an error of its own. */
type Expected = Partial<Record<Column, number | string>>;

const row = (codes: Array<number | string>): Expected => {
  const columns: Column[] = [...actors, "contractorUnassigned"];
  return Object.fromEntries(codes.map((code, i) => [columns[i]!, code]));
};

// prettier-ignore
const expected: Record<string, Expected> = {
  //                                                       anon  out  own  adm  mem  con  sup  con-unassigned
  "GET /healthz":                                     row([200, 200, 200, 200, 200, 200, 200]),
  "GET /readyz":                                      row([200, 200, 200, 200, 200, 200, 200]),
  "GET /metrics":                                     row([200, 200, 200, 200, 200, 200, 200]),
  "GET /.well-known/security.txt":                    row([200, 200, 200, 200, 200, 200, 200]),
  "GET /api/v1/meta":                                 row([200, 200, 200, 200, 200, 200, 200]),
  "GET /api/v1/openapi.json":                         row([200, 200, 200, 200, 200, 200, 200]),
  "GET /":                                            row([200, 200, 200, 200, 200, 200, 200]),
  "GET /*":                                           row([200, 200, 200, 200, 200, 200, 200]),
  "GET /assets/:file":                                 row([200, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/session":                             row([200, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/signup":                              row([202, 202, 202, 202, 202, 202, 202]),
  "POST /api/v1/signup/verify":                       row([200, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/password-reset":                      row([202, 202, 202, 202, 202, 202, 202]),
  "POST /api/v1/password-reset/confirm":              row([204, 204, 204, 204, 204, 204, 204]),

  "GET /api/v1/session":                              row([401, 200, 200, 200, 200, 200, 200]),
  "DELETE /api/v1/session":                           row([401, 204, 204, 204, 204, 204, 204]),
  "GET /api/v1/me":                                   row([401, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/me/password":                         row([401, 204, 204, 204, 204, 204, 204]),
  "PATCH /api/v1/me":                                 row([401, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/me/2fa":                              row([401, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/me/2fa/confirm":                      row([401, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/me/2fa/disable":                      row([401, 204, 204, 204, 204, 204, 204]),
  "GET /api/v1/tokens":                               row([401, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/tokens":                              row([401, 201, 201, 201, 201, 201, 201]),
  "DELETE /api/v1/tokens/:tokenId":                   row([401, 204, 204, 204, 204, 204, 204]),
  "GET /api/v1/me/secrets":                           row([401, 200, 200, 200, 200, 200, 200]),
  "PUT /api/v1/me/secrets/:name":                     row([401, 201, 201, 201, 201, 201, 201]),
  "DELETE /api/v1/me/secrets/:name":                  row([401, 204, 204, 204, 204, 204, 204]),
  "POST /api/v1/invitations/accept":                  row([401, 200, 200, 200, 200, 200, 200]),
  "GET /api/v1/orgs":                                 row([401, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/orgs":                                row([401, 201, 201, 201, 201, 201, 201]),
  "GET /api/v1/projects":                             row([401, 200, 200, 200, 200, 200, 200]),

  "GET /api/v1/orgs/:orgId":                          row([401, 404, 200, 200, 200, 200, 200]),
  "PATCH /api/v1/orgs/:orgId":                        row([401, 404, 200, 200, 403, 403, 403]),
  "GET /api/v1/orgs/:orgId/members":                  row([401, 404, 200, 200, 200, 403, 200]),
  "POST /api/v1/orgs/:orgId/invitations":             row([401, 404, 202, 202, 403, 403, 403]),
  "PATCH /api/v1/orgs/:orgId/members/:userId":        row([401, 404, 204, 204, 403, 403, 403]),
  "DELETE /api/v1/orgs/:orgId/members/:userId":       row([401, 404, 204, 204, 403, 403, 403]),
  "GET /api/v1/orgs/:orgId/audit":                    row([401, 404, 200, 200, 403, 403, 403]),
  "GET /api/v1/orgs/:orgId/audit/verify":             row([401, 404, 200, 200, 403, 403, 403]),
  "POST /api/v1/projects":                            row([401, 404, 201, 201, 201, 403, 403]),

  "GET /api/v1/projects/:projectId":                  row([401, 404, 200, 200, 200, 200, 200, 404]),
  "PATCH /api/v1/projects/:projectId":                row([401, 404, 200, 200, 403, 403, 403, 404]),
  "DELETE /api/v1/projects/:projectId":               row([401, 404, 204, 204, 403, 403, 403, 404]),
  "GET /api/v1/projects/:projectId/secrets":          row([401, 404, 200, 200, 200, 200, 403, 404]),
  "PUT /api/v1/projects/:projectId/secrets/:name":    row([401, 404, 201, 201, 201, 201, 403, 404]),
  "DELETE /api/v1/projects/:projectId/secrets/:name": row([401, 404, 204, 204, 204, 204, 403, 404]),
  "GET /api/v1/projects/:projectId/assignments":      row([401, 404, 200, 200, 403, 403, 403, 404]),
  "PUT /api/v1/projects/:projectId/assignments/:userId":    row([401, 404, 204, 204, 403, 403, 403, 404]),
  "DELETE /api/v1/projects/:projectId/assignments/:userId": row([401, 404, 204, 204, 403, 403, 403, 404]),
  "GET /api/v1/projects/:projectId/deploy-key":       row([401, 404, 200, 200, 200, 200, 200, 404]),
  "POST /api/v1/projects/:projectId/deploy-key":      row([401, 404, 200, 200, 403, 403, 403, 404]),
  "GET /api/v1/scm/errors/:errorId":                  row([200, 200, 200, 200, 200, 200, 200]),
  "GET /api/v1/projects/:projectId/badge":            row([401, 404, 200, 200, 200, 200, 200, 404]),
  "POST /api/v1/projects/:projectId/badge":           row([401, 404, 200, 200, 403, 403, 403, 404]),
  "GET /badge/:file":                                 row([200, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/projects/:projectId/webhook-secret":  row([401, 404, 200, 200, 403, 403, 403, 404]),
  // The public half is for anyone who may read the project; decrypting shows secret values: managers only.
  "GET /api/v1/projects/:projectId/env-file-key":     row([401, 404, 200, 200, 200, 200, 200, 404]),
  "POST /api/v1/projects/:projectId/env-file-key/decrypt": row([401, 404, 200, 200, 403, 403, 403, 404]),
  // Public: the signature authenticates the push, whoever (if anyone) is signed in.
  "POST /api/v1/hooks/:projectId":                    row([202, 202, 202, 202, 202, 202, 202, 202]),
  "POST /api/v1/hooks/:projectId/:provider":          row([202, 202, 202, 202, 202, 202, 202, 202]),

  // Git hosts: which are offered is public; connecting an account is the caller's own business
  // (session only where tokens are granted or revoked); linking changes the project: managers.
  "GET /api/v1/scm/providers":                        row([200, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/me/connections/:provider":            row([401, 200, 200, 200, 200, 200, 200]),
  // Public: the OAuth state (bound to the session or browser that began it) is what counts.
  "GET /api/v1/scm/:provider/callback":               row([303, 303, 303, 303, 303, 303, 303]),
  "POST /api/v1/session/scm/:provider":               row([200, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/session/scm":                         row([200, 200, 200, 200, 200, 200, 200]),
  "GET /api/v1/me/connections":                       row([401, 200, 200, 200, 200, 200, 200]),
  "DELETE /api/v1/me/connections/:provider":          row([401, 200, 200, 200, 200, 200, 200]),
  "GET /api/v1/me/connections/:provider/repositories": row([401, 200, 200, 200, 200, 200, 200]),
  "GET /api/v1/projects/:projectId/repository-link":  row([401, 404, 200, 200, 200, 200, 200, 404]),
  "PUT /api/v1/projects/:projectId/repository-link":  row([401, 404, 200, 200, 403, 403, 403, 404]),
  "DELETE /api/v1/projects/:projectId/repository-link": row([401, 404, 200, 200, 403, 403, 403, 404]),

  // Builds are the project's content (code, logs): support may not read them.
  "POST /api/v1/projects/:projectId/builds":          row([401, 404, 201, 201, 201, 201, 403, 404]),
  "GET /api/v1/projects/:projectId/builds":           row([401, 404, 200, 200, 200, 200, 403, 404]),
  "GET /api/v1/builds/:buildId":                      row([401, 404, 200, 200, 200, 200, 403, 404]),
  "POST /api/v1/builds/:buildId/cancel":              row([401, 404, 200, 200, 200, 200, 403, 404]),
  "POST /api/v1/builds/:buildId/approvals":           row([401, 404, 200, 200, 403, 403, 403, 404]),
  "GET /api/v1/builds/:buildId/jobs/:jobId/log":      row([401, 404, 200, 200, 200, 200, 403, 404]),

  // Workspaces: each caller's own, and only while they may still open workspaces of its project (P18);
  // anyone may delete their own. (Others' workspaces are 404 to everyone: test/workspaces.test.ts.)
  "GET /api/v1/me/ssh-keys":                          row([401, 200, 200, 200, 200, 200, 200]),
  "GET /api/v1/me/workspace-variables":               row([401, 200, 200, 200, 200, 200, 200]),
  "PUT /api/v1/me/workspace-variables/:name":         row([401, 204, 204, 204, 204, 204, 204]),
  "DELETE /api/v1/me/workspace-variables/:name":      row([401, 204, 204, 204, 204, 204, 204]),
  "POST /api/v1/me/ssh-keys":                         row([401, 201, 201, 201, 201, 201, 201]),
  "DELETE /api/v1/me/ssh-keys/:keyId":                row([401, 204, 204, 204, 204, 204, 204]),
  "GET /api/v1/workspaces":                           row([401, 200, 200, 200, 200, 200, 200]),
  "POST /api/v1/workspaces":                          row([401, 404, 201, 201, 201, 201, 403, 404]),
  "GET /api/v1/workspaces/:workspaceId":              row([401, 404, 200, 200, 200, 200, 403, 404]),
  "GET /api/v1/workspaces/:workspaceId/events":       row([401, 404, 200, 200, 200, 200, 403, 404]),
  "POST /api/v1/workspaces/:workspaceId/stop":        row([401, 404, 200, 200, 200, 200, 403, 404]),
  "POST /api/v1/workspaces/:workspaceId/start":       row([401, 404, 202, 202, 202, 202, 403, 404]),
  "POST /api/v1/workspaces/:workspaceId/extend":      row([401, 404, 200, 200, 200, 200, 403, 404]),
  "DELETE /api/v1/workspaces/:workspaceId":           row([401, 204, 204, 204, 204, 204, 204, 204]),
  // Terminals and ports of a workspace that is not running here: past the check, the route says so.
  "GET /api/v1/workspaces/:workspaceId/terminals":    row([401, 404, 200, 200, 200, 200, 403, 404]),
  "POST /api/v1/workspaces/:workspaceId/terminals":   row([401, 404, "409 conflict", "409 conflict", "409 conflict", "409 conflict", 403, 404]),
  "DELETE /api/v1/workspaces/:workspaceId/terminals/:terminalId": row([401, 404, "404 no_terminal", "404 no_terminal", "404 no_terminal", "404 no_terminal", 403, 404]),
  "GET /api/v1/workspaces/:workspaceId/terminals/:terminalId/attach": row([401, 404, "426 upgrade_required", "426 upgrade_required", "426 upgrade_required", "426 upgrade_required", 403, 404]),
  "GET /api/v1/workspaces/:workspaceId/ports":        row([401, 404, 200, 200, 200, 200, 403, 404]),
  "PUT /api/v1/workspaces/:workspaceId/ports/:port":  row([401, 404, 200, 200, 200, 200, 403, 404]),
  // Snapshots: each caller's own workspace's; one is read and opened by whoever may open workspaces of its project (P18).
  "GET /api/v1/workspaces/:workspaceId/snapshots":    row([401, 404, 200, 200, 200, 200, 403, 404]),
  "POST /api/v1/workspaces/:workspaceId/snapshots":   row([401, 404, "409 conflict", "409 conflict", "409 conflict", "409 conflict", 403, 404]),
  "DELETE /api/v1/workspaces/:workspaceId/snapshots/:snapshotId": row([401, 404, 204, 204, 204, 204, 403, 404]),
  "GET /api/v1/snapshots/:snapshotId":                row([401, 404, 200, 200, 200, 200, 404, 404]),
  "POST /api/v1/snapshots/:snapshotId/open":          row([401, 404, "410 snapshot_missing", "410 snapshot_missing", "410 snapshot_missing", "410 snapshot_missing", 404, 404]),
  // Sharing: the owner shares and decides; anyone signed in may ask to join someone else's shared workspace.
  "PUT /api/v1/workspaces/:workspaceId/sharing":      row([401, 404, 200, 200, 200, 200, 403, 404]),
  "POST /api/v1/workspaces/:workspaceId/join":        row([401, 202, "409 conflict", 202, 202, 202, 202, 202]),
  "GET /api/v1/workspaces/:workspaceId/guests":       row([401, 404, 200, 200, 200, 200, 403, 404]),
  "PUT /api/v1/workspaces/:workspaceId/guests/:userId": row([401, 404, 200, 200, 200, 200, 403, 404]),
  // The port proxy: a workspace that does not run has no ports, for anyone (test/workspaces.test.ts runs one).
  ...Object.fromEntries(
    ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].flatMap((method) =>
      ["/w/:workspaceId/p/:port", "/w/:workspaceId/p/:port/*"].map((url) => [`${method} ${url}`, row([404, 404, 404, 404, 404, 404, 404, 404])]),
    ),
  ),

  // The instance's runners: instance administrators only (none of these callers is one; see test/runners-api.test.ts).
  "GET /api/v1/runners":                              row([401, 403, 403, 403, 403, 403, 403]),
  "POST /api/v1/runners":                             row([401, 403, 403, 403, 403, 403, 403]),
  "DELETE /api/v1/runners/:runnerId":                 row([401, 403, 403, 403, 403, 403, 403]),

  // For runners only (a runner token): no user gets in, whatever the role.
  "POST /api/v1/runner/lease":                        row([401, 401, 401, 401, 401, 401, 401]),
  "POST /api/v1/runner/jobs/:jobId/heartbeat":        row([401, 401, 401, 401, 401, 401, 401]),
  "POST /api/v1/runner/jobs/:jobId/log":              row([401, 401, 401, 401, 401, 401, 401]),
  "POST /api/v1/runner/jobs/:jobId/steps":            row([401, 401, 401, 401, 401, 401, 401]),
  "POST /api/v1/runner/jobs/:jobId/secrets":          row([401, 401, 401, 401, 401, 401, 401]),
  "POST /api/v1/runner/jobs/:jobId/checkout":         row([401, 401, 401, 401, 401, 401, 401]),
  "POST /api/v1/runner/jobs/:jobId/image-cache":      row([401, 401, 401, 401, 401, 401, 401]),
  "POST /api/v1/runner/jobs/:jobId/known-hosts":      row([401, 401, 401, 401, 401, 401, 401]),
  "POST /api/v1/runner/jobs/:jobId/env-files":        row([401, 401, 401, 401, 401, 401, 401]),
  "POST /api/v1/runner/jobs/:jobId/finish":           row([401, 401, 401, 401, 401, 401, 401]),
  "POST /api/v1/runner/polls/lease":                  row([401, 401, 401, 401, 401, 401, 401]),
  "POST /api/v1/runner/polls/:projectId/result":      row([401, 401, 401, 401, 401, 401, 401, 401]),
};

/** Routes that take a runner's token and nothing else: a user's session or API token is refused as no runner token. */
const runnerOnly = new Set(Object.keys(expected).filter((k) => k.startsWith("POST /api/v1/runner/")));

/** Routes an API token may never use, whatever its scopes: they manage the account's own credentials. */
const sessionOnly = new Set([
  "GET /api/v1/me/ssh-keys",
  "POST /api/v1/me/ssh-keys",
  "DELETE /api/v1/me/ssh-keys/:keyId",
  "GET /api/v1/session",
  "DELETE /api/v1/session",
  "POST /api/v1/me/password",
  "PATCH /api/v1/me",
  "POST /api/v1/me/2fa",
  "POST /api/v1/me/2fa/confirm",
  "POST /api/v1/me/2fa/disable",
  "GET /api/v1/tokens",
  "POST /api/v1/tokens",
  "DELETE /api/v1/tokens/:tokenId",
  "POST /api/v1/invitations/accept",
  "POST /api/v1/me/connections/:provider",
  "DELETE /api/v1/me/connections/:provider",
  "GET /api/v1/runners",
  "POST /api/v1/runners",
  "DELETE /api/v1/runners/:runnerId",
]);

/** The error code that goes with each refusal, so a 403 from a missing CSRF token cannot pass for a role decision. */
const refusalCode: Record<number, string> = { 401: "unauthenticated", 403: "forbidden", 404: "not_found" };

/** Every route the app serves, read from Fastify's route tree so that a new route cannot hide from the table. */
function listRoutes(app: FastifyInstance): string[] {
  const routes: string[] = [];
  const path: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split("\n")) {
    if (!line.trim()) continue;
    const m = /^((?:[│ ] {3})*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) throw new Error(`cannot read route tree line: ${line}`);
    path.length = m[1]!.length / 4;
    path.push(m[2]!);
    // The tree prints a wildcard after a parameter without the slash between them.
    for (const method of m[3]?.split(", ") ?? []) routes.push(`${method} ${path.join("").replace(/(:\w+)\*$/, "$1/*")}`);
  }
  return routes;
}

const rand = () => randomBytes(5).toString("hex");
const ctxOf = (u: User): RequestContext => ({ principal: { userId: u.id, email: u.email, isAdmin: u.isAdmin, twoFactor: u.twoFactor, via: "session", scopes: "all" }, ip: null });

let h: Harness;
let sim: GitHubSim;
let simDir: string;
let users: Record<Exclude<Actor, "anonymous"> | "contractor2" | "host", User>;
let orgId: string;
let assignedProject: string;
let unassignedProject: string;
const bearer = new Map<string, string>();
/** A job a registered runner holds: the runner routes' recipes name it, so only the token decides. */
let heldJobId: string;
let matrixRunnerId: string;
/** One build per project for the routes that read a build; cancel makes its own. */
const buildsOf = new Map<string, Promise<{ buildId: string; jobId: string }>>();

/** A new signed-in browser session of the user (cookie + CSRF token), made without the rate-limited sign-in route. */
async function sessionOf(user: User): Promise<Client> {
  const token = await h.services.sessions.create(h.services.store.db, user.id, "127.0.0.1");
  const res = await h.app.inject({ method: "GET", url: "/api/v1/session", cookies: { slipway_session: token } });
  if (res.statusCode !== 200) throw new Error(`session bootstrap failed: ${res.statusCode} ${res.body}`);
  return new Client(h.app, { cookie: `slipway_session=${token}; ${cookieHeader(res)}`, csrf: res.json().csrfToken });
}

async function join(user: User, org: string, role: Role, by: User = users.owner): Promise<void> {
  const { token } = await h.services.orgs.invite(ctxOf(by), org, user.email, role);
  await h.services.orgs.acceptInvitation(ctxOf(user), token);
}

async function project(opts: { assigned: boolean }): Promise<string> {
  const p = await h.services.projects.create(ctxOf(users.owner), orgId, `p-${rand()}`, null);
  if (opts.assigned) await h.services.projects.assign(ctxOf(users.owner), p.id, users.contractor.id);
  return p.id;
}

/** A new build of the project; no runner runs in this file, so it stays queued (and can be canceled). */
async function newBuild(projectId: string): Promise<{ buildId: string; jobId: string }> {
  const build = await h.services.builds.create(projectId, { branch: "main", trigger: "api" });
  return { buildId: build.id, jobId: build.jobs[0]!.id };
}
/** Queues a build and leases the oldest queued job to the runner; returns that job's id. */
async function leaseOne(runnerId: string): Promise<string> {
  await newBuild(assignedProject);
  const job = await h.services.builds.lease(runnerId, 0);
  if (!job) throw new Error("nothing to lease");
  return job.jobId;
}
/** A new build that stopped at its manual step 2, as a runner reports it: what an approval needs. */
async function waitingBuild(projectId: string): Promise<{ buildId: string }> {
  const { buildId, jobId } = await newBuild(projectId);
  // The oldest queued job is leased first: builds queued earlier by other recipes are taken on the way.
  for (let i = 0; ; i++) {
    const job = await h.services.builds.lease(matrixRunnerId, 0);
    if (!job || i > 1000) throw new Error("the new build's job was not leased");
    if (job.jobId === jobId) break;
  }
  await h.services.builds.finish(matrixRunnerId, jobId, { status: "waiting-for-approval", step: { id: "2", name: "deploy" } });
  return { buildId };
}
/** An env file encrypted for the project, as `slipway secrets encrypt` writes it. */
const encryptedFor = async (projectId: string) => encryptEnvText(projectId, parsePublicKey(await h.services.envFileKeys.publicKey(projectId)), "DEPLOY_TOKEN=matrix-value\n", "app.env");
const buildOf = (projectId: string) => buildsOf.get(projectId) ?? buildsOf.set(projectId, newBuild(projectId)).get(projectId)!;

/** The user's GitHub connection (a GitHub identity of their own, with a token the simulator accepts). */
async function connected(user: User): Promise<void> {
  const tokens = { accessToken: sim.issueToken(["repo", "user:email"]), scopes: ["repo", "user:email"] };
  await h.services.scm.connections.connect(ctxOf(user), "github", tokens, { id: `matrix-${user.id}`, login: `matrix-${rand()}`, name: null, email: null, avatarUrl: null });
}

/** A link row for the project, as if linked earlier; nothing is installed at the provider, so unlinking has nothing to remove there. */
async function linkedRow(projectId: string): Promise<void> {
  await h.services.store.db
    .insertInto("repository_links")
    .values({ project_id: projectId, provider: "github", repo: "octocat/Hello-World", provider_repo_id: "1296269", connection_id: null, deploy_key_id: null, webhook_id: null, problem: null, linked_at: new Date().toISOString() })
    .onConflict((oc) => oc.column("project_id").doNothing())
    .execute();
}

async function enableTwoFactor(user: User): Promise<string[]> {
  const { otpauthUri } = await h.services.twoFactor.begin(ctxOf(user));
  return (await h.services.twoFactor.confirm(ctxOf(user), totpCode(otpauthUri))).recoveryCodes;
}

/** What one caller needs to make a request that passes validation, so that only access decides. */
interface Subject {
  column: Column;
  user?: User;
  /** The project the column is about: assigned to the contractor, except for contractorUnassigned. */
  projectId: string;
  /** A new project in the same relation to the caller, for routes that use it up. */
  freshProject(): Promise<string>;
}
interface Call {
  params?: Record<string, string>;
  /** "?…" appended to the path. */
  query?: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Puts the caller's account back as it was, so that the order of calls does not matter. */
  after?(res: LightMyRequestResponse): Promise<void>;
}
const none = async (): Promise<Call> => ({});

async function newMember(role: Role): Promise<User> {
  const u = await createUser(h, `target-${rand()}@example.com`);
  await join(u, orgId, role);
  return u;
}

const REPOSITORY = "ssh://git@git.example.com/app.git";

/** A workspace of the caller's own (the owner's for anonymous) of the column's project, brought to `state` as the host would. */
async function workspaceOf(s: Subject, state: "running" | "stopped" | "failed"): Promise<Call> {
  const ws = await h.services.workspaces.create(ctxOf(s.user ?? users.owner), { id: s.projectId, orgId, repositoryUrl: REPOSITORY }, null);
  const path = { running: ["creating", "initializing", "running"], stopped: ["creating", "initializing", "running", "stopping", "stopped"], failed: ["failed"] }[state];
  let from = "pending";
  for (const to of path) {
    await h.services.workspaces.transition(ws.id, [from as "pending"], to as "running");
    from = to;
  }
  return { params: { workspaceId: ws.id } };
}

/** A snapshot row of the workspace, whose stored copy was never written (what opening it says so). */
async function snapshotRow(workspaceId: string): Promise<string> {
  const id = `snap_${rand()}`;
  await h.services.store.db.insertInto("workspace_snapshots").values({ id, workspace_id: workspaceId, name: "matrix", object: `${workspaceId}-gone.tar.zst.sls`, bytes: 0, created_at: new Date().toISOString() }).execute();
  return id;
}

const calls: Record<string, (s: Subject) => Promise<Call>> = {
  "GET /healthz": none,
  "GET /readyz": none,
  "GET /metrics": none,
  "GET /.well-known/security.txt": none,
  "GET /api/v1/meta": none,
  "GET /api/v1/openapi.json": none,
  "GET /": none,
  "GET /*": async () => ({ params: { "*": "projects/prj_anything" } }),
  "GET /assets/:file": async () => ({ params: { file: webAsset() } }),
  "POST /api/v1/session": async (s) => ({ body: { email: (s.user ?? users.host).email, password: PASSWORD } }),
  "POST /api/v1/signup": async () => ({ body: { email: `new-${rand()}@example.com`, password: PASSWORD } }),
  "POST /api/v1/signup/verify": async () => {
    const u = await h.services.users.create({ email: `unverified-${rand()}@example.com`, password: PASSWORD, isAdmin: false, verified: false }, { actor: "test" });
    const token = rand() + rand();
    await h.services.store.db.insertInto("email_tokens").values({ token_hash: tokenHash(token), user_id: u.id, purpose: "verify", expires_at: new Date(Date.now() + 3_600_000).toISOString(), used_at: null }).execute();
    return { body: { token } };
  },
  "POST /api/v1/password-reset": async () => ({ body: { email: `someone-${rand()}@example.com` } }),
  "POST /api/v1/password-reset/confirm": async () => {
    const u = await createUser(h, `forgetful-${rand()}@example.com`);
    const token = rand() + rand();
    await h.services.store.db.insertInto("email_tokens").values({ token_hash: tokenHash(token), user_id: u.id, purpose: "reset", expires_at: new Date(Date.now() + 3_600_000).toISOString(), used_at: null }).execute();
    return { body: { token, password: PASSWORD } };
  },
  "GET /api/v1/session": none,
  "DELETE /api/v1/session": none,
  "GET /api/v1/me": none,
  "POST /api/v1/me/password": async () => ({ body: { currentPassword: PASSWORD, newPassword: PASSWORD } }),
  "PATCH /api/v1/me": async ({ user }) => ({ body: { name: user?.name || "Someone" } }),
  "POST /api/v1/me/2fa": async () => ({ body: { password: PASSWORD } }),
  "POST /api/v1/me/2fa/confirm": async ({ user }) => {
    if (!user) return { body: { code: "123456" } };
    const { otpauthUri } = await h.services.twoFactor.begin(ctxOf(user));
    return {
      body: { code: totpCode(otpauthUri) },
      after: async (res) => {
        if (res.statusCode === 200) await h.services.twoFactor.disable(ctxOf(user), res.json().recoveryCodes[0]);
      },
    };
  },
  "POST /api/v1/me/2fa/disable": async ({ user }) => {
    if (!user) return { body: { code: "123456" } };
    const codes = await enableTwoFactor(user);
    return {
      body: { code: codes[0] },
      after: async (res) => {
        if (res.statusCode !== 204) await h.services.twoFactor.disable(ctxOf(user), codes[1]!);
      },
    };
  },
  "GET /api/v1/tokens": none,
  "POST /api/v1/tokens": async () => ({ body: { name: "matrix", scopes: ["projects:read"] } }),
  "DELETE /api/v1/tokens/:tokenId": async ({ user }) => ({ params: { tokenId: user ? (await h.services.tokens.create(ctxOf(user), "doomed", ["projects:read"], null)).id : "tok_unknown" } }),
  "GET /api/v1/me/secrets": none,
  "PUT /api/v1/me/secrets/:name": async () => ({ params: { name: `S_${rand()}` }, body: { value: "value" } }),
  "DELETE /api/v1/me/secrets/:name": async ({ user }) => {
    const name = `S_${rand()}`;
    if (user) await h.services.secrets.set(ctxOf(user), { kind: "user", id: user.id }, null, name, "v");
    return { params: { name } };
  },
  "POST /api/v1/invitations/accept": async ({ user }) => {
    const guestOrg = await h.services.orgs.create(ctxOf(users.host), `guests-${rand()}`);
    const { token } = await h.services.orgs.invite(ctxOf(users.host), guestOrg.id, user?.email ?? `nobody-${rand()}@example.com`, "member");
    return { body: { token } };
  },
  "GET /api/v1/orgs": none,
  "POST /api/v1/orgs": async () => ({ body: { name: `org-${rand()}` } }),
  "GET /api/v1/projects": none,

  "GET /api/v1/orgs/:orgId": async () => ({ params: { orgId } }),
  "PATCH /api/v1/orgs/:orgId": async () => ({ params: { orgId }, body: { name: "Matrix" } }),
  "GET /api/v1/orgs/:orgId/members": async () => ({ params: { orgId } }),
  "POST /api/v1/orgs/:orgId/invitations": async () => ({ params: { orgId }, body: { email: `invitee-${rand()}@example.com`, role: "member" } }),
  "PATCH /api/v1/orgs/:orgId/members/:userId": async () => ({ params: { orgId, userId: (await newMember("member")).id }, body: { role: "contractor" } }),
  "DELETE /api/v1/orgs/:orgId/members/:userId": async () => ({ params: { orgId, userId: (await newMember("member")).id } }),
  "GET /api/v1/orgs/:orgId/audit": async () => ({ params: { orgId } }),
  "GET /api/v1/orgs/:orgId/audit/verify": async () => ({ params: { orgId } }),
  "POST /api/v1/projects": async () => ({ body: { name: `p-${rand()}`, organization: orgId } }),

  "GET /api/v1/projects/:projectId": async (s) => ({ params: { projectId: s.projectId } }),
  "PATCH /api/v1/projects/:projectId": async (s) => ({ params: { projectId: s.projectId }, body: { repositoryUrl: "https://git.example.com/app.git" } }),
  "DELETE /api/v1/projects/:projectId": async (s) => ({ params: { projectId: await s.freshProject() } }),
  "GET /api/v1/projects/:projectId/secrets": async (s) => ({ params: { projectId: s.projectId } }),
  "PUT /api/v1/projects/:projectId/secrets/:name": async (s) => ({ params: { projectId: s.projectId, name: `S_${rand()}` }, body: { value: "value" } }),
  "DELETE /api/v1/projects/:projectId/secrets/:name": async (s) => {
    const name = `S_${rand()}`;
    await h.services.secrets.set(ctxOf(users.owner), { kind: "project", id: s.projectId }, orgId, name, "v");
    return { params: { projectId: s.projectId, name } };
  },
  "GET /api/v1/projects/:projectId/assignments": async (s) => ({ params: { projectId: s.projectId } }),
  "PUT /api/v1/projects/:projectId/assignments/:userId": async (s) => ({ params: { projectId: await s.freshProject(), userId: users.contractor2.id } }),
  "DELETE /api/v1/projects/:projectId/assignments/:userId": async (s) => {
    const projectId = await s.freshProject();
    await h.services.projects.assign(ctxOf(users.owner), projectId, users.contractor2.id);
    return { params: { projectId, userId: users.contractor2.id } };
  },
  "GET /api/v1/projects/:projectId/deploy-key": async (s) => ({ params: { projectId: s.projectId } }),
  "POST /api/v1/projects/:projectId/deploy-key": async (s) => ({ params: { projectId: s.projectId } }),
  "GET /api/v1/projects/:projectId/badge": async (s) => ({ params: { projectId: s.projectId } }),
  // A note a failed callback left: public, as the page that reads it may not be signed in.
  "GET /api/v1/scm/errors/:errorId": async () => {
    const res = await h.app.inject({ method: "GET", url: "/api/v1/scm/github/callback?error=access_denied&state=matrix" });
    return { params: { errorId: new URLSearchParams(String(res.headers.location).split("#")[1]).get("scm-error")! } };
  },
  "POST /api/v1/projects/:projectId/badge": async (s) => ({ params: { projectId: s.projectId } }),
  // The badge's token, not the caller, opens it.
  "GET /badge/:file": async () => ({ params: { file: `${assignedProject}.svg` }, query: `?token=${await h.services.badges.token(assignedProject)}` }),
  "POST /api/v1/projects/:projectId/webhook-secret": async (s) => ({ params: { projectId: s.projectId } }),
  "GET /api/v1/projects/:projectId/env-file-key": async (s) => ({ params: { projectId: s.projectId } }),
  "POST /api/v1/projects/:projectId/env-file-key/decrypt": async (s) => ({ params: { projectId: s.projectId }, body: { text: await encryptedFor(s.projectId) } }),
  "POST /api/v1/hooks/:projectId": async (s) => {
    const body = { ref: "refs/heads/main", commit: randomBytes(20).toString("hex") };
    const secret = (await h.services.webhooks.reveal(s.projectId))!;
    return { params: { projectId: s.projectId }, body, headers: { "x-slipway-signature": signBody(secret, JSON.stringify(body)), "x-slipway-delivery": `matrix-${rand()}` } };
  },

  "POST /api/v1/hooks/:projectId/:provider": async (s) => {
    const body = { ref: "refs/heads/main", after: randomBytes(20).toString("hex") };
    const secret = (await h.services.webhooks.reveal(s.projectId))!;
    return { params: { projectId: s.projectId, provider: "github" }, body, headers: { "x-hub-signature-256": signBody(secret, JSON.stringify(body)), "x-github-delivery": `matrix-${rand()}`, "x-github-event": "push" } };
  },

  "GET /api/v1/scm/providers": none,
  "POST /api/v1/me/connections/:provider": async () => ({ params: { provider: "github" } }),
  "GET /api/v1/scm/:provider/callback": async ({ user }) => {
    // The simulator approves at once; which account gets GitHub's one user does not matter here.
    const back = await browse(await h.services.scm.connections.begin((user ?? users.host).id, "github"), sim.ca);
    return { params: { provider: "github" }, query: back.search, after: () => h.services.store.db.deleteFrom("scm_connections").where("provider_user_id", "=", String(sim.user.id)).execute().then(() => undefined) };
  },
  "POST /api/v1/session/scm/:provider": async () => ({ params: { provider: "github" } }),
  "POST /api/v1/session/scm": async () => {
    // A git host sign-in of an account with two-factor, waiting for its code.
    const u = await createUser(h, `ticket-${rand()}@example.com`);
    const codes = await enableTwoFactor(u);
    const started = await h.services.signIn.signInVerified(u.id, null, "github");
    if (!("ticket" in started)) throw new Error("expected a ticket");
    return { body: { ticket: started.ticket, totp: codes[0] } };
  },
  "GET /api/v1/me/connections": none,
  "DELETE /api/v1/me/connections/:provider": async ({ user }) => {
    if (user) await connected(user);
    return { params: { provider: "github" } };
  },
  "GET /api/v1/me/connections/:provider/repositories": async ({ user }) => {
    if (user) await connected(user);
    return { params: { provider: "github" } };
  },
  "GET /api/v1/projects/:projectId/repository-link": async (s) => {
    await linkedRow(s.projectId);
    return { params: { projectId: s.projectId } };
  },
  "PUT /api/v1/projects/:projectId/repository-link": async (s) => {
    if (s.user) await connected(s.user);
    return { params: { projectId: await s.freshProject() }, body: { provider: "github", repo: "octocat/Hello-World" } };
  },
  "DELETE /api/v1/projects/:projectId/repository-link": async (s) => {
    const projectId = await s.freshProject();
    await linkedRow(projectId);
    return { params: { projectId } };
  },

  "POST /api/v1/projects/:projectId/builds": async (s) => ({ params: { projectId: s.projectId }, body: { branch: "main", message: "matrix" } }),
  "GET /api/v1/projects/:projectId/builds": async (s) => ({ params: { projectId: s.projectId } }),
  "GET /api/v1/builds/:buildId": async (s) => ({ params: await buildOf(s.projectId) }),
  "POST /api/v1/builds/:buildId/cancel": async (s) => ({ params: await newBuild(s.projectId) }),
  "POST /api/v1/builds/:buildId/approvals": async (s) => ({ params: await waitingBuild(s.projectId), body: { step: "2" } }),
  // The text form: the default live stream (Server-Sent Events) of a queued job would not end.
  "GET /api/v1/builds/:buildId/jobs/:jobId/log": async (s) => ({ params: await buildOf(s.projectId), query: "?format=text" }),

  "GET /api/v1/runners": none,
  "POST /api/v1/runners": async () => ({ body: { name: `runner-${rand()}`, currentPassword: PASSWORD } }),
  "DELETE /api/v1/runners/:runnerId": async () => ({ params: { runnerId: (await h.services.runners.register(`doomed-${rand()}`)).id } }),
  "POST /api/v1/runner/lease": async () => ({ body: { waitMs: 0 } }),
  "POST /api/v1/runner/jobs/:jobId/heartbeat": async () => ({ params: { jobId: heldJobId }, body: {} }),
  "POST /api/v1/runner/jobs/:jobId/log": async () => ({ params: { jobId: heldJobId }, body: { offset: 0, data: Buffer.from("matrix\n").toString("base64") } }),
  "POST /api/v1/runner/jobs/:jobId/secrets": async () => ({ params: { jobId: heldJobId }, body: { names: ["API_KEY"] } }),
  "POST /api/v1/runner/jobs/:jobId/checkout": async () => ({ params: { jobId: heldJobId }, body: {} }),
  "POST /api/v1/runner/jobs/:jobId/image-cache": async () => ({ params: { jobId: heldJobId }, body: {} }),
  "POST /api/v1/runner/jobs/:jobId/steps": async () => ({ params: { jobId: heldJobId }, body: { step: "1", name: "build", status: "success", sandbox: 0, logOffset: 0, exitCode: 0 } }),
  "POST /api/v1/runner/jobs/:jobId/known-hosts": async () => {
    // Keys are taken only for the host the repository is cloned from.
    await h.services.store.db.updateTable("projects").set({ repository_url: "ssh://git@git.example.com/app.git" }).where("id", "=", assignedProject).execute();
    return { params: { jobId: heldJobId }, body: { knownHosts: `git.example.com ${SAMPLE_HOST_KEY}\n` } };
  },
  "POST /api/v1/runner/jobs/:jobId/env-files": async () => ({ params: { jobId: heldJobId }, body: { path: "app.env.encrypted", text: await encryptedFor(assignedProject) } }),
  "POST /api/v1/runner/jobs/:jobId/finish": async () => ({ params: { jobId: heldJobId }, body: { status: "success", reason: null } }),
  "POST /api/v1/runner/polls/lease": async () => {
    // A poll of the assigned project is due, so a runner gets one to hold.
    const db = h.services.store.db;
    await db.updateTable("projects").set({ repository_url: "ssh://git@git.example.com/app.git" }).where("id", "=", assignedProject).execute();
    await db
      .insertInto("repository_polls")
      .values({ project_id: assignedProject, interval_s: 60, refs: null, next_at: new Date(0).toISOString(), runner_id: null, lease_expires_at: null, polled_at: null, problem: null })
      .onConflict((oc) => oc.column("project_id").doUpdateSet({ next_at: new Date(0).toISOString(), runner_id: null, lease_expires_at: null }))
      .execute();
    return { body: {} };
  },
  "POST /api/v1/runner/polls/:projectId/result": async () => ({ params: { projectId: assignedProject }, body: { refs: { "refs/heads/main": "a".repeat(40) } } }),
  "GET /api/v1/me/ssh-keys": none,
  "GET /api/v1/me/workspace-variables": none,
  "PUT /api/v1/me/workspace-variables/:name": async () => ({ params: { name: `V_${rand()}` }, body: { value: "value", scope: "acme/*" } }),
  "DELETE /api/v1/me/workspace-variables/:name": async ({ user }) => {
    const name = `V_${rand()}`;
    if (user) await h.services.workspaceVariables.set(ctxOf(user), name, "*/*", "v");
    return { params: { name } };
  },
  "POST /api/v1/me/ssh-keys": async () => ({ body: { name: "laptop", publicKey: generateEd25519KeyPair("matrix").publicKey } }),
  "DELETE /api/v1/me/ssh-keys/:keyId": async ({ user }) => ({
    params: { keyId: user ? (await h.services.sshKeys.add(ctxOf(user), "doomed", generateEd25519KeyPair("doomed").publicKey)).id : "key_unknown" },
  }),
  "GET /api/v1/workspaces": none,
  "POST /api/v1/workspaces": async (s) => {
    // The workspace starts in the background, with no network here: its clone fails, as it may.
    await h.services.store.db.updateTable("projects").set({ repository_url: REPOSITORY }).where("id", "=", s.projectId).execute();
    return { body: { repository: s.projectId } };
  },
  "GET /api/v1/workspaces/:workspaceId": (s) => workspaceOf(s, "running"),
  "GET /api/v1/workspaces/:workspaceId/events": (s) => workspaceOf(s, "stopped"),
  "POST /api/v1/workspaces/:workspaceId/stop": (s) => workspaceOf(s, "running"),
  "POST /api/v1/workspaces/:workspaceId/start": (s) => workspaceOf(s, "failed"),
  "POST /api/v1/workspaces/:workspaceId/extend": (s) => workspaceOf(s, "running"),
  "DELETE /api/v1/workspaces/:workspaceId": (s) => workspaceOf(s, "stopped"),
  "GET /api/v1/workspaces/:workspaceId/terminals": (s) => workspaceOf(s, "running"),
  "POST /api/v1/workspaces/:workspaceId/terminals": async (s) => ({ ...(await workspaceOf(s, "running")), body: { cols: 80, rows: 24 } }),
  "DELETE /api/v1/workspaces/:workspaceId/terminals/:terminalId": async (s) => ({ params: { ...(await workspaceOf(s, "running")).params, terminalId: "term_none" } }),
  "GET /api/v1/workspaces/:workspaceId/terminals/:terminalId/attach": async (s) => ({ params: { ...(await workspaceOf(s, "running")).params, terminalId: "term_none" } }),
  "GET /api/v1/workspaces/:workspaceId/ports": (s) => workspaceOf(s, "running"),
  "GET /api/v1/workspaces/:workspaceId/snapshots": (s) => workspaceOf(s, "stopped"),
  "POST /api/v1/workspaces/:workspaceId/snapshots": async (s) => ({ ...(await workspaceOf(s, "stopped")), body: { name: "matrix" } }),
  "DELETE /api/v1/workspaces/:workspaceId/snapshots/:snapshotId": async (s) => {
    const { params } = await workspaceOf(s, "stopped");
    return { params: { ...params, snapshotId: await snapshotRow(params!.workspaceId!) } };
  },
  "GET /api/v1/snapshots/:snapshotId": async (s) => ({ params: { snapshotId: await snapshotRow((await workspaceOf({ ...s, user: users.owner }, "stopped")).params!.workspaceId!) } }),
  "POST /api/v1/snapshots/:snapshotId/open": async (s) => ({ params: { snapshotId: await snapshotRow((await workspaceOf({ ...s, user: users.owner }, "stopped")).params!.workspaceId!) } }),
  "PUT /api/v1/workspaces/:workspaceId/sharing": async (s) => ({ ...(await workspaceOf(s, "running")), body: { shared: true } }),
  "POST /api/v1/workspaces/:workspaceId/join": async (s) => {
    const { params } = await workspaceOf({ ...s, user: users.owner }, "running");
    await h.services.sharing.setShared(ctxOf(users.owner), { id: params!.workspaceId!, orgId }, true);
    return { params };
  },
  "GET /api/v1/workspaces/:workspaceId/guests": (s) => workspaceOf(s, "running"),
  "PUT /api/v1/workspaces/:workspaceId/guests/:userId": async (s) => {
    const { params } = await workspaceOf(s, "running");
    const ws = await h.services.workspaces.get(params!.workspaceId!);
    await h.services.store.db.updateTable("workspaces").set({ shared: 1 }).where("id", "=", ws.id).execute();
    await h.services.sharing.requestJoin(ctxOf(users.host), { ...ws, shared: true, orgId });
    return { params: { ...params, userId: users.host.id }, body: { approve: true } };
  },
  "PUT /api/v1/workspaces/:workspaceId/ports/:port": async (s) => ({ params: { ...(await workspaceOf(s, "running")).params, port: "8080" }, body: { visibility: "public" } }),
  ...Object.fromEntries(
    ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].flatMap((method) =>
      ["/w/:workspaceId/p/:port", "/w/:workspaceId/p/:port/*"].map((url) => [`${method} ${url}`, async (s: Subject) => ({ params: { ...(await workspaceOf(s, "running")).params, port: "8080", "*": "index.html" } })]),
    ),
  ),
};

function subject(column: Column): Subject {
  const user = column === "anonymous" ? undefined : users[column === "contractorUnassigned" ? "contractor" : column];
  const assigned = column !== "contractorUnassigned";
  return { column, user, projectId: assigned ? assignedProject : unassignedProject, freshProject: () => project({ assigned }) };
}

const fill = (template: string, params: Record<string, string> = {}) =>
  template.replace(/:(\w+)/g, (_, name: string) => encodeURIComponent(params[name] ?? `missing-${name}`)).replace(/\*$/, () => params["*"] ?? "*");

/** "204", or "403 forbidden" for a refusal, so that a refusal for the wrong reason does not match. */
function outcome(res: LightMyRequestResponse): string {
  if (res.statusCode < 400) return String(res.statusCode);
  const body = res.headers["content-type"]?.toString().includes("json") ? res.json() : undefined;
  return `${res.statusCode} ${body?.error?.code ?? "(no code)"}`;
}
const expectedOutcome = (key: string, status: number | string) =>
  typeof status === "string" ? status : status < 400 ? String(status) : runnerOnly.has(key) ? `${status} invalid_runner_token` : `${status} ${refusalCode[status]}`;

/** Runs one route for every column of its row; `via` says how signed-in callers authenticate. */
async function runRoute(key: string, via: "session" | "token"): Promise<{ actual: Record<string, string>; wanted: Record<string, string> }> {
  const [method, template] = key.split(" ") as [string, string];
  const actual: Record<string, string> = {};
  const wanted: Record<string, string> = {};
  for (const [column, status] of Object.entries(expected[key]!) as Array<[Column, number | string]>) {
    if (via === "token" && column === "anonymous") continue;
    const s = subject(column);
    const call = await calls[key]!(s);
    const client = !s.user ? new Client(h.app) : via === "session" ? await sessionOf(s.user) : new Client(h.app, { bearer: bearer.get(s.user.id)! });
    const url = fill(template, call.params) + (call.query ?? "");
    const res = await client.request(method as "GET", url, call.body, call.headers);
    await call.after?.(res);
    actual[column] = outcome(res);
    wanted[column] = via === "token" && sessionOnly.has(key) ? "403 session_required" : expectedOutcome(key, status);
    if (method === "GET" && via === "session") {
      // Fastify answers HEAD from the GET route; it must be guarded the same way.
      const head = await (s.user ? await sessionOf(s.user) : client).request("HEAD", url);
      actual[`${column} (HEAD)`] = String(head.statusCode);
      wanted[`${column} (HEAD)`] = String(status).split(" ")[0]!;
    }
  }
  return { actual, wanted };
}

beforeAll(async () => {
  sim = await GitHubSim.start({ callbackUrl: "http://127.0.0.1/api/v1/scm/github/callback" });
  simDir = mkdtempSync(path.join(tmpdir(), "slipway-matrix-"));
  writeFileSync(path.join(simDir, "ca.pem"), sim.ca);
  h = await startHarness({ signup: true, githubClientId: sim.clientId, githubClientSecret: sim.clientSecret, githubUrl: sim.url, githubCaFile: path.join(simDir, "ca.pem") });
  const names = ["owner", "admin", "member", "contractor", "support", "outsider", "contractor2", "host"] as const;
  users = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await createUser(h, `${n}@example.com`)]))) as typeof users;
  orgId = (await h.services.orgs.create(ctxOf(users.owner), "Matrix")).id;
  for (const role of ["admin", "member", "contractor", "support"] as const) await join(users[role], orgId, role);
  await join(users.contractor2, orgId, "contractor");
  assignedProject = await project({ assigned: true });
  unassignedProject = await project({ assigned: false });
  for (const u of Object.values(users)) bearer.set(u.id, (await h.services.tokens.create(ctxOf(u), "all scopes", [...scopes], null)).token);
  matrixRunnerId = (await h.services.runners.register("matrix")).id;
  heldJobId = await leaseOne(matrixRunnerId);
});
afterAll(async () => {
  await h?.close();
  await sim?.close();
  if (simDir) rmSync(simDir, { recursive: true, force: true });
});

describe("P11: authorization matrix", () => {
  it("P11: the table covers every route the app serves, and nothing else", () => {
    const routes = listRoutes(h.app);
    // The parser reads a printed tree: prove it read real routes, not a misparse.
    for (const r of routes) {
      const [method, url] = r.split(" ") as [string, string];
      expect(h.app.hasRoute({ method: method as "GET", url }), r).toBe(true);
    }
    expect(routes.length).toBeGreaterThan(40);
    const served = routes.filter((r) => !r.startsWith("HEAD "));
    expect(served.sort()).toEqual(Object.keys(expected).sort());
    // HEAD exists only as Fastify's shadow of a GET route, which the matrix also runs.
    for (const r of routes.filter((r) => r.startsWith("HEAD "))) expect(expected[r.replace(/^HEAD/, "GET")], r).toBeDefined();
    // Project (build, workspace) routes also need the unassigned-contractor column, all other routes only the actors.
    for (const [key, row] of Object.entries(expected)) {
      expect(Object.keys(row).length, key).toBe(/:projectId|:buildId|POST \/api\/v1\/workspaces$|:workspaceId|:snapshotId/.test(key) ? 8 : 7);
      expect(calls[key], `no request recipe for ${key}`).toBeDefined();
    }
  });

  it.each(Object.keys(expected))("P11: %s answers each caller as the policy says (browser session)", async (key) => {
    const { actual, wanted } = await runRoute(key, "session");
    expect(actual).toEqual(wanted);
  });

  it.each(Object.keys(expected).filter((k) => expected[k]!.anonymous === 401))(
    "P11: %s answers an API token with every scope as its user's session, except session-only routes",
    async (key) => {
      const { actual, wanted } = await runRoute(key, "token");
      expect(actual).toEqual(wanted);
    },
  );
});

describe("P11: runner routes", () => {
  it("P11: a registered runner's token reaches every runner route; its owner's session and an API token with every scope get 401", async () => {
    const keys = [...runnerOnly].sort((a, b) => Number(a.endsWith("/finish")) - Number(b.endsWith("/finish")));
    expect(keys).toContain("POST /api/v1/runner/lease");
    const { id, token } = await h.services.runners.register(`runner-${rand()}`);
    const jobId = await leaseOne(id);
    const callers: Array<[string, Client]> = [
      ["session", await sessionOf(users.owner)],
      ["API token", new Client(h.app, { bearer: bearer.get(users.owner.id)! })],
      ["runner", new Client(h.app, { bearer: token })],
    ];
    for (const key of keys) {
      const [method, template] = key.split(" ") as [string, string];
      const call = await calls[key]!(subject("owner"));
      const url = fill(template, { ...call.params, jobId });
      for (const [who, client] of callers) {
        const res = await client.request(method as "POST", url, call.body);
        // The runner's answers: a job or none to lease (200/204), then 200s, and 204 for finishing.
        if (who === "runner") expect(res.statusCode, `${who}: ${key} → ${res.body}`).toBeLessThan(300);
        else expect(outcome(res), `${who}: ${key}`).toBe("401 invalid_runner_token");
      }
    }
    expect((await h.services.store.db.selectFrom("jobs").select("status").where("id", "=", jobId).executeTakeFirstOrThrow()).status).toBe("success");
  });
});

describe("P11: beyond the status codes", () => {
  it("P11: project lists hold exactly the projects the caller may open", async () => {
    const listed = async (u: User) => ((await (await sessionOf(u)).get("/api/v1/projects")).json().projects as Array<{ id: string }>).map((p) => p.id);
    expect(await listed(users.member)).toEqual(expect.arrayContaining([assignedProject, unassignedProject]));
    expect(await listed(users.support)).toEqual(expect.arrayContaining([assignedProject, unassignedProject]));
    const contractors = await listed(users.contractor);
    expect(contractors).toContain(assignedProject);
    expect(contractors).not.toContain(unassignedProject);
    expect(await listed(users.outsider)).toEqual([]);
  });

  it("P11: a contractor who leaves, or stops being a contractor, keeps no assignment to come back to", async () => {
    const owner = await sessionOf(users.owner);
    const members = `/api/v1/orgs/${orgId}/members`;
    for (const leave of [(u: User) => owner.delete(`${members}/${u.id}`), (u: User) => owner.patch(`${members}/${u.id}`, { role: "member" })]) {
      const temp = await newMember("contractor");
      const projectId = await project({ assigned: false });
      expect(outcome(await owner.put(`/api/v1/projects/${projectId}/assignments/${temp.id}`))).toBe("204");
      const opens = async () => outcome(await (await sessionOf(temp)).get(`/api/v1/projects/${projectId}`));
      expect(await opens()).toBe("200");
      expect(outcome(await leave(temp))).toBe("204");
      // Back as a contractor (re-invited, or role changed back), with no assignment given this time.
      if (await h.services.orgs.roleOf(h.services.store.db, orgId, temp.id)) await owner.patch(`${members}/${temp.id}`, { role: "contractor" });
      else await join(temp, orgId, "contractor");
      expect(await opens()).toBe("404 not_found");
    }
  });

  it("P11: only an owner grants, changes or removes the owner role; an admin manages everyone else", async () => {
    const [coOwner, target] = [await newMember("member"), await newMember("member")];
    const admin = await sessionOf(users.admin);
    const owner = await sessionOf(users.owner);
    const members = `/api/v1/orgs/${orgId}/members`;
    expect(outcome(await admin.patch(`${members}/${coOwner.id}`, { role: "owner" }))).toBe("403 forbidden");
    expect(outcome(await owner.patch(`${members}/${coOwner.id}`, { role: "owner" }))).toBe("204");
    expect(outcome(await admin.patch(`${members}/${coOwner.id}`, { role: "member" }))).toBe("403 forbidden");
    expect(outcome(await admin.delete(`${members}/${coOwner.id}`))).toBe("403 forbidden");
    expect(outcome(await admin.post(`/api/v1/orgs/${orgId}/invitations`, { email: `x-${rand()}@example.com`, role: "owner" }))).toBe("403 forbidden");
    expect(outcome(await admin.patch(`${members}/${target.id}`, { role: "admin" }))).toBe("204");
    expect(outcome(await owner.delete(`${members}/${coOwner.id}`))).toBe("204");
  });
});

describe("P11: API token scopes", () => {
  async function tokenWith(user: User, granted: string[]): Promise<Client> {
    const res = await (await sessionOf(user)).post("/api/v1/tokens", { name: `scoped-${rand()}`, scopes: granted });
    expect(res.statusCode).toBe(201);
    return new Client(h.app, { bearer: res.json().token });
  }
  it("P11: a token lacking a scope is refused with insufficient_scope; the scope makes the same call succeed", async () => {
    const readOnly = await tokenWith(users.owner, ["projects:read"]);
    const readWrite = await tokenWith(users.owner, ["projects:read", "secrets:write", "secrets:read", "orgs:read"]);
    const secretUrl = () => `/api/v1/projects/${assignedProject}/secrets/S_${rand()}`;

    expect(outcome(await readOnly.get(`/api/v1/projects/${assignedProject}`))).toBe("200");
    expect(outcome(await readOnly.put(secretUrl(), { value: "value" }))).toBe("403 insufficient_scope");
    expect(outcome(await readWrite.put(secretUrl(), { value: "value" }))).toBe("201");

    expect(outcome(await readOnly.get("/api/v1/me/secrets"))).toBe("403 insufficient_scope");
    expect(outcome(await readWrite.get("/api/v1/me/secrets"))).toBe("200");

    expect(outcome(await readOnly.get(`/api/v1/orgs/${orgId}`))).toBe("403 insufficient_scope");
    expect(outcome(await readWrite.get(`/api/v1/orgs/${orgId}`))).toBe("200");
  });

  it("P11: builds need the builds scopes: builds:read to read them, builds:write to start, cancel and approve one", async () => {
    const none = await tokenWith(users.owner, ["projects:read"]);
    const read = await tokenWith(users.owner, ["builds:read"]);
    const write = await tokenWith(users.owner, ["builds:write"]);
    const list = `/api/v1/projects/${assignedProject}/builds`;
    expect(outcome(await none.get(list))).toBe("403 insufficient_scope");
    expect(outcome(await read.get(list))).toBe("200");
    expect(outcome(await read.post(list, { branch: "main" }))).toBe("403 insufficient_scope");
    const started = await write.post(list, { branch: "main" });
    expect(outcome(started)).toBe("201");
    const buildId = started.json().id as string;
    expect(outcome(await write.get(`/api/v1/builds/${buildId}`))).toBe("403 insufficient_scope");
    expect(outcome(await read.get(`/api/v1/builds/${buildId}`))).toBe("200");
    expect(outcome(await read.post(`/api/v1/builds/${buildId}/cancel`))).toBe("403 insufficient_scope");
    expect(outcome(await write.post(`/api/v1/builds/${buildId}/cancel`))).toBe("200");
    const waiting = (await waitingBuild(assignedProject)).buildId;
    expect(outcome(await read.post(`/api/v1/builds/${waiting}/approvals`, { step: "2" }))).toBe("403 insufficient_scope");
    expect(outcome(await write.post(`/api/v1/builds/${waiting}/approvals`, { step: "2" }))).toBe("200");
  });

  it("P11: a scope never widens the role: a member's write token still cannot change a project", async () => {
    const memberToken = await tokenWith(users.member, ["projects:write"]);
    const ownerToken = await tokenWith(users.owner, ["projects:write"]);
    const body = { repositoryUrl: "https://git.example.com/other.git" };
    expect(outcome(await memberToken.patch(`/api/v1/projects/${assignedProject}`, body))).toBe("403 forbidden");
    expect(outcome(await ownerToken.patch(`/api/v1/projects/${assignedProject}`, body))).toBe("200");
  });

  it("P11: session-only routes refuse a bearer token that has every scope, and accept the session", async () => {
    const all = new Client(h.app, { bearer: bearer.get(users.member.id)! });
    const browser = await sessionOf(users.member);
    for (const [method, url, body] of [
      ["GET", "/api/v1/tokens", undefined],
      ["POST", "/api/v1/tokens", { name: "x", scopes: ["projects:read"] }],
      ["POST", "/api/v1/me/2fa", { password: PASSWORD }],
    ] as const) {
      expect(outcome(await all.request(method, url, body)), `${method} ${url}`).toBe("403 session_required");
      expect((await browser.request(method, url, body)).statusCode, `${method} ${url}`).toBeLessThan(300);
    }
  });
});

describe("P11/P24: an organisation that requires two-factor authentication", () => {
  it("P24: refuses a member without 2FA (2fa_required) and lets them in once they turn it on", async () => {
    const owner = await createUser(h, `strict-owner-${rand()}@example.com`);
    const member = await createUser(h, `strict-member-${rand()}@example.com`);
    const org = await h.services.orgs.create(ctxOf(owner), "Strict");
    await join(member, org.id, "member", owner);
    const p = await h.services.projects.create(ctxOf(owner), org.id, "strict-app", null);
    const browser = await sessionOf(member);
    const reach = async () => [outcome(await browser.get(`/api/v1/orgs/${org.id}`)), outcome(await browser.get(`/api/v1/projects/${p.id}`))];
    const listed = async () => ((await browser.get("/api/v1/projects")).json().projects as Array<{ id: string }>).some((x) => x.id === p.id);

    expect(await reach()).toEqual(["200", "200"]);
    expect(await listed()).toBe(true);

    // Requiring 2FA needs it on the owner's own account first, so the owner cannot lock themselves out.
    const ownerBrowser = await sessionOf(owner);
    expect(outcome(await ownerBrowser.patch(`/api/v1/orgs/${org.id}`, { require2fa: true }))).toBe("409 2fa_required");
    await enableTwoFactor(owner);
    expect((await ownerBrowser.patch(`/api/v1/orgs/${org.id}`, { require2fa: true })).statusCode).toBe(200);
    expect(await reach()).toEqual(["403 2fa_required", "403 2fa_required"]);
    expect(await listed()).toBe(false);

    const setup = await browser.post("/api/v1/me/2fa", { password: PASSWORD });
    expect(setup.statusCode).toBe(200);
    expect((await browser.post("/api/v1/me/2fa/confirm", { code: totpCode(setup.json().otpauthUri) })).statusCode).toBe(200);
    expect(await reach()).toEqual(["200", "200"]);
    expect(await listed()).toBe(true);
  });
});
