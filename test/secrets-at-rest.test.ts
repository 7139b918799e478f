import { createHash, createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { verify as argon2Verify } from "@node-rs/argon2";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DecryptError, MissingDataKeyError, tokenHash, type Owner } from "../src/crypto/secret-box.js";
import { Client, PASSWORD, createUser, signIn, startHarness, tokenClient, totpCode, type Harness } from "./helpers/harness.js";
import { connectAccount } from "./helpers/scm-connect.js";
import { GitHubSim } from "./helpers/scm-sim/github.js";

/**
 * P17: every secret kind is kept the same way. Values Slipway must read back are secret-box
 * ciphertext ("sb1:", AES-256-GCM under the owner's data key); bearer secrets it only has to
 * recognise are kept as hashes. No plaintext reaches the database or any other file of the data dir.
 */

type Kind = "sealed" | "sha256" | "argon2" | "plain";
const plainColumns = (...names: string[]): Record<string, Kind> => Object.fromEntries(names.map((n) => [n, "plain"]));
/**
 * Every column of the database, classified by hand. A column added later fails the first test
 * until someone decides what it holds.
 */
const columns: Record<string, Record<string, Kind>> = {
  users: { id: "plain", email: "plain", name: "plain", password_hash: "argon2", is_admin: "plain", email_verified: "plain", totp_secret: "sealed", totp_pending: "sealed", totp_last_counter: "plain", created_at: "plain" },
  recovery_codes: { user_id: "plain", code_hash: "sha256", used_at: "plain" },
  sessions: { id_hash: "sha256", user_id: "plain", created_at: "plain", last_seen_at: "plain", expires_at: "plain", ip: "plain" },
  api_tokens: { id: "plain", user_id: "plain", name: "plain", token_hash: "sha256", scopes: "plain", created_at: "plain", expires_at: "plain", revoked_at: "plain", last_used_at: "plain" },
  email_tokens: { token_hash: "sha256", user_id: "plain", purpose: "plain", expires_at: "plain", used_at: "plain" },
  auth_throttle: { key: "plain", failures: "plain", window_start: "plain", locked_until: "plain" },
  organizations: { id: "plain", name: "plain", require_2fa: "plain", created_at: "plain", workspace_sharing: "plain", workspace_idle_minutes: "plain", workspace_max_hours: "plain" },
  memberships: { org_id: "plain", user_id: "plain", role: "plain", created_at: "plain" },
  invitations: { token_hash: "sha256", org_id: "plain", email: "plain", role: "plain", invited_by: "plain", expires_at: "plain", accepted_at: "plain" },
  projects: { id: "plain", org_id: "plain", name: "plain", repository_url: "plain", created_at: "plain", egress_allowlist: "plain", known_hosts: "plain", fork_builds: "plain", known_hosts_confirmed: "plain", badge_generation: "plain" },
  project_assignments: { project_id: "plain", user_id: "plain" },
  data_keys: { owner_kind: "plain", owner_id: "plain", wrapped: "sealed", kek_id: "plain", created_at: "plain" },
  secrets: { owner_kind: "plain", owner_id: "plain", name: "plain", value: "sealed", updated_at: "plain" },
  audit_log: { seq: "plain", at: "plain", actor_id: "plain", actor: "plain", org_id: "plain", action: "plain", target: "plain", ip: "plain", details: "plain", prev_hash: "plain", hash: "plain" },
  deploy_keys: { project_id: "plain", public_key: "plain", fingerprint: "plain", private_key: "sealed", created_at: "plain" },
  env_file_keys: { project_id: "plain", public_key: "plain", private_key: "sealed", created_at: "plain" },
  webhook_secrets: { project_id: "plain", secret: "sealed", created_at: "plain" },
  webhook_deliveries: { project_id: "plain", delivery_id: "plain", received_at: "plain" },
  builds: plainColumns("id", "project_id", "number", "branch", "tag", "commit_sha", "message", "author_name", "author_email", "pr_number", "trigger", "status", "reason", "created_at", "started_at", "finished_at"),
  jobs: plainColumns("id", "build_id", "name", "status", "runner_id", "lease_expires_at", "attempts", "cancel_requested", "reason", "created_at", "started_at", "finished_at", "log_bytes"),
  build_approvals: plainColumns("build_id", "step_id", "step_name", "waiting_job_id", "requested_at", "approved_by", "approved_at", "resume_job_id"),
  // A job's output may hold whatever the build printed: sealed with its project's key.
  // Reasons are the runner's own words (exit codes, timeouts); step output lives only in the sealed log.
  job_steps: plainColumns("job_id", "step_id", "name", "status", "sandbox", "log_offset", "exit_code", "reason", "started_at", "finished_at"),
  log_chunks: { job_id: "plain", offset: "plain", size: "plain", data: "sealed" },
  runners: { id: "plain", name: "plain", token_hash: "sha256", created_at: "plain", last_seen_at: "plain" },
  // A git host account: only the basic profile in clear; its tokens sealed for the user.
  scm_connections: { ...plainColumns("id", "user_id", "provider", "provider_user_id", "login", "name", "email", "avatar_url", "scopes", "expires_at", "problem", "created_at", "updated_at"), access_token: "sealed", refresh_token: "sealed" },
  scm_sign_ins: { state_hash: "sha256", user_id: "plain", provider: "plain", code_verifier: "sealed", created_at: "plain" },
  // Refs and commit ids of the polled repository, and the runner's words when a poll failed.
  repository_polls: plainColumns("project_id", "interval_s", "refs", "next_at", "runner_id", "lease_expires_at", "polled_at", "problem"),
  repository_links: plainColumns("project_id", "provider", "repo", "provider_repo_id", "connection_id", "deploy_key_id", "webhook_id", "problem", "linked_at"),
  // A workspace's config is what its repository's files say, public to whoever reads the repository;
  // variables it gets from users and projects stay sealed in `secrets`, and /workspace in sealed archives.
  workspaces: plainColumns("id", "owner_id", "project_id", "repository_url", "ref", "commit_sha", "state", "reason", "config", "problems", "initialized", "archive", "archive_bytes", "created_at", "started_at", "stopped_at", "last_activity_at", "shared", "extended", "push_access"),
  // Names and places of sealed copies; their content is in storage, sealed with the workspace's key.
  workspace_snapshots: plainColumns("id", "workspace_id", "name", "object", "bytes", "created_at"),
  // A user's workspace variables: the value sealed with the user's key.
  workspace_variables: { user_id: "plain", name: "plain", scope: "plain", value: "sealed", updated_at: "plain" },
  workspace_guests: plainColumns("workspace_id", "user_id", "state", "requested_at", "decided_at"),
  workspace_transitions: plainColumns("workspace_id", "seq", "state", "reason", "at"),
  workspace_ports: plainColumns("workspace_id", "port", "visibility"),
  // Public keys: what a user shows anyone they want to be let in by.
  user_ssh_keys: plainColumns("id", "user_id", "name", "public_key", "fingerprint", "created_at", "last_used_at"),
  kysely_migration: { name: "plain", timestamp: "plain" },
  kysely_migration_lock: { id: "plain", is_locked: "plain" },
};
const shapes: Record<Exclude<Kind, "plain">, RegExp> = { sealed: /^sb1:[A-Za-z0-9_-]{40,}$/, sha256: /^[0-9a-f]{64}$/, argon2: /^\$argon2id\$v=19\$/ };

const rand = () => randomBytes(12).toString("hex");
const normaliseRecovery = (code: string) => code.toLowerCase().replace(/[^0-9a-f]/g, "");

let h: Harness;
let closed = false;
const password = `pw-${rand()}`;
/** Every plaintext secret of the session, by what it is. */
const plain: Record<string, string> = {};
let userId: string;
let pendingUserId: string;
let pendingTotp: string;
let projectId: string;
let recoveryCodes: string[];
let browser: Client;
let sim: GitHubSim;
let simDir: string;
let pendingChallenge: string;
let jobId: string;

const db = () => h.services.store.db;
const sessionTokenOf = (c: Client) => /slipway_session=([^;]+)/.exec(c.auth.cookie!)![1]!;

/** Every file under `dir` that holds any of the plaintexts, as "file: label". */
function filesHolding(dir: string, plaintexts: Record<string, string>): string[] {
  const hits: string[] = [];
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const file = path.join(dir, name);
    if (!statSync(file).isFile()) continue;
    const bytes = readFileSync(file);
    for (const [label, value] of Object.entries(plaintexts)) if (bytes.includes(Buffer.from(value, "utf8"))) hits.push(`${name}: ${label}`);
  }
  return hits;
}

/** The raw X25519 private key, opened from its row the way the server opens it. */
async function envFilePrivateKey(project: string): Promise<Buffer> {
  const row = await db().selectFrom("env_file_keys").select("private_key").where("project_id", "=", project).executeTakeFirstOrThrow();
  return h.services.box.open(db(), { kind: "project", id: project }, "env_file_key", row.private_key);
}

async function tables(): Promise<string[]> {
  const rows = await sql<{ name: string }>`select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name`.execute(db());
  return rows.rows.map((r) => r.name);
}

beforeAll(async () => {
  sim = await GitHubSim.start({ callbackUrl: "http://127.0.0.1/api/v1/scm/github/callback", expiringTokens: true });
  simDir = mkdtempSync(path.join(tmpdir(), "slipway-at-rest-sim-"));
  writeFileSync(path.join(simDir, "ca.pem"), sim.ca);
  h = await startHarness({ signup: true, githubClientId: sim.clientId, githubClientSecret: sim.clientSecret, githubUrl: sim.url, githubCaFile: path.join(simDir, "ca.pem") });
  userId = (await createUser(h, "keeper@example.com", { password })).id;
  plain.password = password;
  browser = await signIn(h, "keeper@example.com", password);
  plain["session token"] = sessionTokenOf(browser);
  plain["API token"] = (await tokenClient(h, browser, ["projects:read"])).auth.bearer!;

  projectId = (await browser.post("/api/v1/projects", { name: "vault" })).json().id;
  for (const name of ["DB_PASSWORD", "STRIPE_KEY"]) {
    plain[`project secret ${name}`] = `atrest-${rand()}`;
    expect((await browser.put(`/api/v1/projects/${projectId}/secrets/${name}`, { value: plain[`project secret ${name}`] })).statusCode).toBe(201);
  }
  plain["deploy key"] = (await h.services.deployKeys.revealDeployKey(projectId)).privateKey;
  plain["webhook secret"] = (await browser.post(`/api/v1/projects/${projectId}/webhook-secret`)).json().secret;
  // The env-file key pair is made on first use; the public half comes from the API, the private half only from the box.
  expect((await browser.get(`/api/v1/projects/${projectId}/env-file-key`)).statusCode).toBe(200);
  const envFileKey = await envFilePrivateKey(projectId);
  for (const encoding of ["base64", "base64url", "hex"] as const) plain[`env-file private key (${encoding})`] = envFileKey.toString(encoding);
  plain["personal secret"] = `atrest-${rand()}`;
  expect((await browser.put("/api/v1/me/secrets/HOME_TOKEN", { value: plain["personal secret"] })).statusCode).toBe(201);
  plain["workspace variable"] = `atrest-${rand()}`;
  expect((await browser.put("/api/v1/me/workspace-variables/NPM_TOKEN", { value: plain["workspace variable"], scope: "acme/*" })).statusCode).toBe(204);

  const setup = await browser.post("/api/v1/me/2fa", { password });
  plain["TOTP secret"] = setup.json().secret;
  recoveryCodes = (await browser.post("/api/v1/me/2fa/confirm", { code: totpCode(setup.json().otpauthUri) })).json().recoveryCodes;
  recoveryCodes.forEach((c, i) => (plain[`recovery code ${i}`] = c));

  // A second user who started 2FA set-up but never confirmed it: the pending secret is sealed too.
  pendingUserId = (await createUser(h, "halfway@example.com")).id;
  pendingTotp = (await (await signIn(h, "halfway@example.com")).post("/api/v1/me/2fa", { password: PASSWORD })).json().secret;
  plain["pending TOTP secret"] = pendingTotp;

  // A runner (its token kept as a hash) that sends a line of build output (kept sealed).
  const runner = await h.services.runners.register("ci-1");
  plain["runner token"] = runner.token;
  const build = await browser.post(`/api/v1/projects/${projectId}/builds`, { branch: "main" });
  expect(build.statusCode, build.body).toBe(201);
  jobId = build.json().jobs[0].id;
  expect((await h.services.builds.lease(runner.id, 0))?.jobId).toBe(jobId);
  plain["build log line"] = `printed-by-the-build-${rand()}`;
  await h.services.builds.appendLog(runner.id, jobId, 0, Buffer.from(`${plain["build log line"]}\n`));

  // A connected GitHub account (an expiring token and its refresh token) and a sign-in left half-way.
  await connectAccount(browser, "github", sim.ca);
  plain["GitHub access token"] = sim.lastToken();
  plain["GitHub refresh token"] = sim.refreshTokensOutstanding()[0]!;
  pendingChallenge = new URL((await browser.post("/api/v1/me/connections/github")).json().authorizeUrl).searchParams.get("code_challenge")!;

  const orgId = (await browser.get("/api/v1/orgs")).json().organizations[0].id;
  expect((await browser.post(`/api/v1/orgs/${orgId}/invitations`, { email: "guest@example.com", role: "member" })).statusCode).toBe(202);
  plain["sign-up password"] = `pw-${rand()}`;
  expect((await new Client(h.app).post("/api/v1/signup", { email: "newcomer@example.com", password: plain["sign-up password"] })).statusCode).toBe(202);
});

afterAll(async () => {
  if (!closed) await h.close();
  else rmSync(h.dataDir, { recursive: true, force: true });
  await sim?.close();
  if (simDir) rmSync(simDir, { recursive: true, force: true });
});

describe("P17: secrets at rest", () => {
  it("P17: every column of every table is classified as ciphertext, hash or plain", async () => {
    const actual: Record<string, string[]> = {};
    for (const t of await tables()) actual[t] = (await sql<{ name: string }>`select name from pragma_table_info(${t})`.execute(db())).rows.map((r) => r.name).sort();
    expect(actual).toEqual(Object.fromEntries(Object.entries(columns).map(([t, cols]) => [t, Object.keys(cols).sort()])));
  });

  it("P17: every sealed, hashed and argon2 column holds only values of that shape", async () => {
    for (const [table, cols] of Object.entries(columns)) {
      for (const [column, kind] of Object.entries(cols)) {
        if (kind === "plain") continue;
        const values = (await sql<{ v: string | null }>`select ${sql.ref(column)} as v from ${sql.table(table)}`.execute(db())).rows.map((r) => r.v).filter((v) => v !== null);
        // Each such column has rows in this session, so the shape check is not vacuous.
        expect(values.length, `${table}.${column}`).toBeGreaterThan(0);
        for (const v of values) expect(v, `${table}.${column}`).toMatch(shapes[kind]);
      }
    }
  });

  it("P17: TOTP secrets and secret variables are ciphertext that opens only through the secret box, for its own owner", async () => {
    const user: Owner = { kind: "user", id: userId };
    const box = h.services.box;
    const users = await db().selectFrom("users").select(["id", "totp_secret", "totp_pending"]).execute();
    const keeper = users.find((u) => u.id === userId)!;
    const halfway = users.find((u) => u.id === pendingUserId)!;
    expect(await box.openString(db(), user, "totp", keeper.totp_secret!)).toBe(plain["TOTP secret"]);
    expect(await box.openString(db(), { kind: "user", id: pendingUserId }, "totp", halfway.totp_pending!)).toBe(pendingTotp);
    // Bound to its owner: the same ciphertext does not open as another user's.
    await expect(box.open(db(), { kind: "user", id: pendingUserId }, "totp", keeper.totp_secret!)).rejects.toBeInstanceOf(DecryptError);

    const secrets = await db().selectFrom("secrets").selectAll().where("owner_kind", "in", ["project", "user"]).execute();
    expect(secrets).toHaveLength(3);
    for (const s of secrets) {
      const owner: Owner = { kind: s.owner_kind as Owner["kind"], id: s.owner_id };
      const expected = s.owner_kind === "project" ? plain[`project secret ${s.name}`] : plain["personal secret"];
      expect(await box.openString(db(), owner, `secret:${s.name}`, s.value)).toBe(expected);
      // Bound to its field: moved to another variable's name it does not open.
      await expect(box.open(db(), owner, "secret:OTHER", s.value)).rejects.toBeInstanceOf(DecryptError);
    }
    // Bound to its owner: a project's secret does not open as the user's.
    await expect(box.open(db(), user, "secret:DB_PASSWORD", secrets.find((s) => s.name === "DB_PASSWORD")!.value)).rejects.toBeInstanceOf(DecryptError);
  });

  it("P17/P01: the deploy key and the webhook secret are ciphertext that opens only for their own project and field", async () => {
    const box = h.services.box;
    const project: Owner = { kind: "project", id: projectId };
    const key = await db().selectFrom("deploy_keys").select("private_key").where("project_id", "=", projectId).executeTakeFirstOrThrow();
    const hook = await db().selectFrom("webhook_secrets").select("secret").where("project_id", "=", projectId).executeTakeFirstOrThrow();
    expect(await box.openString(db(), project, "deploy_key", key.private_key)).toBe(plain["deploy key"]);
    expect(await box.openString(db(), project, "webhook_secret", hook.secret)).toBe(plain["webhook secret"]);
    // Bound to its field and owner: swapped between the two, or read as the user's, neither opens.
    await expect(box.open(db(), project, "webhook_secret", key.private_key)).rejects.toBeInstanceOf(DecryptError);
    await expect(box.open(db(), project, "deploy_key", hook.secret)).rejects.toBeInstanceOf(DecryptError);
    await expect(box.open(db(), { kind: "user", id: userId }, "deploy_key", key.private_key)).rejects.toBeInstanceOf(DecryptError);
  });

  it("P17: the env-file private key is ciphertext that opens only for its own project and field, and matches the public key served", async () => {
    const box = h.services.box;
    const row = await db().selectFrom("env_file_keys").selectAll().where("project_id", "=", projectId).executeTakeFirstOrThrow();
    const raw = await envFilePrivateKey(projectId);
    expect(raw).toHaveLength(32);
    const derived = createPrivateKey({ key: { kty: "OKP", crv: "X25519", d: raw.toString("base64url"), x: Buffer.from(row.public_key, "base64").toString("base64url") }, format: "jwk" });
    expect(Buffer.from(createPublicKey(derived).export({ format: "jwk" }).x!, "base64url").toString("base64")).toBe(row.public_key);
    await expect(box.open(db(), { kind: "project", id: projectId }, "deploy_key", row.private_key)).rejects.toBeInstanceOf(DecryptError);
    await expect(box.open(db(), { kind: "user", id: userId }, "env_file_key", row.private_key)).rejects.toBeInstanceOf(DecryptError);
  });

  it("P17: a job's log is ciphertext that opens only for its own project and place in the log, and is served opened", async () => {
    const box = h.services.box;
    const chunk = await db().selectFrom("log_chunks").selectAll().where("job_id", "=", jobId).executeTakeFirstOrThrow();
    const field = `log:${jobId}:0`;
    expect(await box.openString(db(), { kind: "project", id: projectId }, field, chunk.data)).toBe(`${plain["build log line"]}\n`);
    await expect(box.open(db(), { kind: "project", id: projectId }, `log:${jobId}:1`, chunk.data)).rejects.toBeInstanceOf(DecryptError);
    await expect(box.open(db(), { kind: "user", id: userId }, field, chunk.data)).rejects.toBeInstanceOf(DecryptError);
    const build = (await browser.get(`/api/v1/projects/${projectId}/builds`)).json().builds[0];
    expect((await browser.get(`/api/v1/builds/${build.id}/jobs/${jobId}/log?format=text`)).body).toBe(`${plain["build log line"]}\n`);
  });

  it("P17: git host tokens and sign-in verifiers are ciphertext that opens only for their owner and field", async () => {
    const box = h.services.box;
    const user: Owner = { kind: "user", id: userId };
    const row = await db().selectFrom("scm_connections").selectAll().where("user_id", "=", userId).executeTakeFirstOrThrow();
    expect(await box.openString(db(), user, "scm_access_token", row.access_token)).toBe(plain["GitHub access token"]);
    expect(await box.openString(db(), user, "scm_refresh_token", row.refresh_token!)).toBe(plain["GitHub refresh token"]);
    await expect(box.open(db(), user, "scm_refresh_token", row.access_token)).rejects.toBeInstanceOf(DecryptError);
    await expect(box.open(db(), { kind: "user", id: pendingUserId }, "scm_access_token", row.access_token)).rejects.toBeInstanceOf(DecryptError);
    // The half-way sign-in's PKCE verifier: sealed, and the one whose challenge went to GitHub.
    const pending = await db().selectFrom("scm_sign_ins").selectAll().executeTakeFirstOrThrow();
    const verifier = await box.openString(db(), { kind: "system", id: "scm-sign-in" }, "scm_code_verifier", pending.code_verifier);
    expect(createHash("sha256").update(verifier).digest("base64url")).toBe(pendingChallenge);
    await expect(box.open(db(), user, "scm_code_verifier", pending.code_verifier)).rejects.toThrow();
  });

  it("P17: bearer secrets and passwords are kept only as hashes of them", async () => {
    const row = await db().selectFrom("users").select("password_hash").where("id", "=", userId).executeTakeFirstOrThrow();
    expect(await argon2Verify(row.password_hash, password)).toBe(true);
    expect(await argon2Verify(row.password_hash, "not the password")).toBe(false);

    const sessionHashes = (await db().selectFrom("sessions").select("id_hash").where("user_id", "=", userId).execute()).map((r) => r.id_hash);
    expect(sessionHashes).toContain(tokenHash(plain["session token"]!));
    const tokenHashes = (await db().selectFrom("api_tokens").select("token_hash").where("user_id", "=", userId).execute()).map((r) => r.token_hash);
    expect(tokenHashes).toEqual([tokenHash(plain["API token"]!)]);
    const runnerHashes = (await db().selectFrom("runners").select("token_hash").execute()).map((r) => r.token_hash);
    expect(runnerHashes).toEqual([tokenHash(plain["runner token"]!)]);
    const codeHashes = (await db().selectFrom("recovery_codes").select("code_hash").where("user_id", "=", userId).execute()).map((r) => r.code_hash);
    expect(codeHashes.sort()).toEqual(recoveryCodes.map((c) => tokenHash(normaliseRecovery(c))).sort());
  });

  it("P17: no row of any table holds any plaintext secret", async () => {
    const hits: string[] = [];
    for (const t of await tables()) {
      const dump = JSON.stringify((await sql`select * from ${sql.table(t)}`.execute(db())).rows);
      for (const [label, value] of Object.entries(plain)) if (dump.includes(value)) hits.push(`${t}: ${label}`);
    }
    expect(hits).toEqual([]);
  });

  it("P17: master.key is readable by its owner only (0600)", () => {
    expect((statSync(path.join(h.dataDir, "master.key")).mode & 0o777).toString(8)).toBe("600");
  });

  it("P17: deleting a project destroys its data key: its secrets are gone and an old copy no longer opens", async () => {
    const doomed = (await browser.post("/api/v1/projects", { name: "doomed" })).json().id as string;
    const value = `shred-${rand()}`;
    expect((await browser.put(`/api/v1/projects/${doomed}/secrets/KEY`, { value })).statusCode).toBe(201);
    const owner: Owner = { kind: "project", id: doomed };
    const copy = (await db().selectFrom("secrets").select("value").where("owner_kind", "=", "project").where("owner_id", "=", doomed).executeTakeFirstOrThrow()).value;
    expect(await h.services.box.openString(db(), owner, "secret:KEY", copy)).toBe(value);

    expect((await browser.delete(`/api/v1/projects/${doomed}`)).statusCode).toBe(204);
    expect(await db().selectFrom("secrets").select("name").where("owner_id", "=", doomed).execute()).toEqual([]);
    expect(await db().selectFrom("data_keys").select("owner_id").where("owner_id", "=", doomed).execute()).toEqual([]);
    await expect(h.services.box.open(db(), owner, "secret:KEY", copy)).rejects.toBeInstanceOf(MissingDataKeyError);
    // Only that project was shredded: the other project's secrets still open.
    const kept = await db().selectFrom("secrets").select(["name", "value"]).where("owner_id", "=", projectId).execute();
    for (const s of kept) expect(await h.services.box.openString(db(), { kind: "project", id: projectId }, `secret:${s.name}`, s.value)).toBe(plain[`project secret ${s.name}`]);
  });

  // Last: it closes the app.
  it("P17: no file of the data dir holds a plaintext, running or closed; a control file with them is caught", async () => {
    const files = () => readdirSync(h.dataDir);
    expect(files()).toContain("slipway.db");
    expect(files()).toContain("slipway.db-wal");
    expect(filesHolding(h.dataDir, plain)).toEqual([]);

    await h.app.close();
    await h.services.close();
    closed = true;
    expect(statSync(path.join(h.dataDir, "slipway.db")).size).toBeGreaterThan(0);
    expect(filesHolding(h.dataDir, plain)).toEqual([]);

    const control = mkdtempSync(path.join(tmpdir(), "slipway-control-"));
    try {
      writeFileSync(path.join(control, "control.bin"), Buffer.concat([randomBytes(64), ...Object.values(plain).map((v) => Buffer.from(`${v}\0`))]));
      expect(filesHolding(control, plain)).toHaveLength(Object.keys(plain).length);
    } finally {
      rmSync(control, { recursive: true, force: true });
    }
  });
});
