import { randomBytes } from "node:crypto";
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from "fastify";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scopes } from "../src/auth/permissions.js";
import { tokenHash } from "../src/crypto/secret-box.js";
import { encryptEnvText, parsePublicKey } from "../src/secrets/env-file-format.js";
import { Client, cookieHeader, createUser, mailedToken, startHarness, totpCode, type Harness } from "./helpers/harness.js";
import { connectAccount } from "./helpers/scm-connect.js";
import { GitHubSim } from "./helpers/scm-sim/github.js";
import { listRoutes, webAsset } from "./helpers/web.js";

/**
 * P13: a realistic session is driven through the API and every response body is kept; then no
 * body may hold anything sensitive, except the one response that hands a value out on purpose
 * (a new API token, the TOTP secret at set-up, the recovery codes at confirmation).
 */

interface Seen {
  viewer: string;
  what: string;
  status: number;
  body: string;
}
interface Needle {
  label: string;
  match: string | RegExp;
  /** The one response allowed to carry it. */
  allowedIn?: Seen;
  /** Only these viewers must not see it (other users' emails); everyone when unset. */
  hiddenFrom?: string[];
}

const seen: Seen[] = [];
const needles: Needle[] = [
  { label: "argon2 password hash", match: "$argon2" },
  { label: "sealed value", match: "sb1:" },
  { label: "PEM private key", match: /-----BEGIN [A-Z ]*PRIVATE KEY-----/ },
];
const forbid = (label: string, value: string, opts: Omit<Needle, "label" | "match"> = {}) => needles.push({ label, match: value, ...opts });
/** A bearer secret and the hash Slipway keeps of it: neither may leave the server. */
const forbidWithHash = (label: string, value: string, opts: Omit<Needle, "label" | "match"> = {}) => {
  forbid(label, value, opts);
  forbid(`hash of ${label}`, tokenHash(value));
};

/** Every string inside a JSON body (keys too), so escaped characters cannot hide a value from the raw-text search. */
function stringsIn(v: unknown): string[] {
  if (typeof v === "string") return [v];
  if (Array.isArray(v)) return v.flatMap(stringsIn);
  if (v && typeof v === "object") return Object.entries(v).flatMap(([k, x]) => [k, ...stringsIn(x)]);
  return [];
}
function textsOf(s: Seen): string[] {
  try {
    return [s.body, ...stringsIn(JSON.parse(s.body))];
  } catch {
    return [s.body];
  }
}
const found = (n: Needle, text: string) => (typeof n.match === "string" ? text.includes(n.match) : n.match.test(text));

function leaks(s: Seen): string[] {
  const texts = textsOf(s);
  return needles
    .filter((n) => n.allowedIn !== s && (!n.hiddenFrom || n.hiddenFrom.includes(s.viewer)) && texts.some((t) => found(n, t)))
    .map((n) => `${s.viewer} ${s.what} → ${s.status}: ${n.label}`);
}

/** A client whose every response is kept for the scan, labelled with who saw it. */
class Recording extends Client {
  constructor(
    app: FastifyInstance,
    readonly viewer: string,
    auth: Client["auth"] = {},
  ) {
    super(app, auth);
  }
  last!: Seen;
  override async request(method: InjectOptions["method"], url: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse> {
    const res = await super.request(method, url, body, headers);
    this.last = { viewer: this.viewer, what: `${method} ${url}`, status: res.statusCode, body: res.body };
    seen.push(this.last);
    return res;
  }
}

const rand = (n = 12) => randomBytes(n).toString("hex");
const okStatus = (res: LightMyRequestResponse) => {
  if (res.statusCode >= 300) throw new Error(`${res.statusCode} ${res.body}`);
  return res;
};

let h: Harness;
let sim: GitHubSim;
let simDir: string;
const emails = { owner: `olivia-${rand(3)}@example.com`, member: `mo-${rand(3)}@example.com`, support: `sam-${rand(3)}@example.com` };
type Person = keyof typeof emails;
const passwords: Record<Person, string> = { owner: `pw-${rand()}`, member: `pw-${rand()}`, support: `pw-${rand()}` };
const ids = { orgId: "", projectId: "", buildId: "", jobId: "", workspaceId: "", terminalId: "term_none", port: "8080", keyId: "key_none", snapshotId: "snap_none", provider: "github", file: webAsset(), errorId: "unknown" };
/** Query strings for GET routes whose default answer never ends: a job's log is read as text, not followed live. */
const queries: Record<string, string> = { "/api/v1/builds/:buildId/jobs/:jobId/log": "?format=text" };
let ownerMembersView: Seen;
let tokenCreation: { seen: Seen; token: string };

async function signIn(who: Person, totp?: string): Promise<Recording> {
  const anon = new Recording(h.app, who);
  const res = okStatus(await anon.post("/api/v1/session", { email: emails[who], password: passwords[who], ...(totp && { totp }) }));
  forbidWithHash(`session token of ${who}`, res.cookies.find((c) => c.name === "slipway_session")!.value);
  return new Recording(h.app, who, { cookie: cookieHeader(res), csrf: res.json().csrfToken });
}

async function createToken(client: Recording, granted: readonly string[]): Promise<Recording> {
  const res = okStatus(await client.post("/api/v1/tokens", { name: `t-${rand(2)}`, scopes: granted }));
  const token = res.json().token as string;
  forbidWithHash("API token", token, { allowedIn: client.last });
  tokenCreation ??= { seen: client.last, token };
  return new Recording(h.app, client.viewer, { bearer: token });
}

async function setSecret(client: Recording, url: string, label: string, value = `sv-${rand()}`): Promise<void> {
  forbid(label, value);
  okStatus(await client.put(url, { value }));
}

async function invite(owner: Recording, who: Person, role: string): Promise<Recording> {
  okStatus(await owner.post(`/api/v1/orgs/${ids.orgId}/invitations`, { email: emails[who], role }));
  const token = await mailedToken(h, emails[who], "accept-invitation");
  forbidWithHash(`invitation token for ${who}`, token);
  const client = await signIn(who);
  okStatus(await client.post("/api/v1/invitations/accept", { token }));
  return client;
}

/** GET every GET route the app serves, with the ids of this session's organisation and project. */
async function readEverything(client: Recording): Promise<void> {
  for (const { method, url } of listRoutes(h.app)) {
    if (method !== "GET") continue;
    const concrete = url.replace(/:(\w+)/g, (_, p: string) => {
      const v = (ids as Record<string, string>)[p];
      if (!v) throw new Error(`no value for :${p} in ${url}: teach readEverything about it`);
      return v;
    });
    const res = await client.get(concrete + (queries[url] ?? ""));
    if (url.endsWith("/members") && client.viewer === "owner" && !client.auth.bearer) ownerMembersView = client.last;
    expect(res.statusCode, `${client.viewer} ${concrete}`).toBeLessThan(500);
  }
}

beforeAll(async () => {
  sim = await GitHubSim.start({ callbackUrl: "http://127.0.0.1/api/v1/scm/github/callback", expiringTokens: true });
  simDir = mkdtempSync(path.join(tmpdir(), "slipway-p13-sim-"));
  writeFileSync(path.join(simDir, "ca.pem"), sim.ca);
  h = await startHarness({ githubClientId: sim.clientId, githubClientSecret: sim.clientSecret, githubUrl: sim.url, githubCaFile: path.join(simDir, "ca.pem") });
  for (const who of Object.keys(emails) as Person[]) {
    await createUser(h, emails[who], { password: passwords[who] });
    forbid(`password of ${who}`, passwords[who]);
    // Other people's addresses: members and support must not see them (owners and admins may, in /members).
    forbid(`email of ${who}`, emails[who], { hiddenFrom: ["anonymous", ...Object.keys(emails).filter((p) => p !== who && p !== "owner")] });
  }
  forbid("master key", readFileSync(path.join(h.dataDir, "master.key"), "utf8").trim());

  let owner = await signIn("owner");
  ids.orgId = okStatus(await owner.post("/api/v1/orgs", { name: "Acme" })).json().id;
  ids.projectId = okStatus(await owner.post("/api/v1/projects", { name: "web", organization: ids.orgId, repositoryUrl: "https://git.example.com/web.git" })).json().id;
  const member = await invite(owner, "member", "member");
  const support = await invite(owner, "support", "support");
  // A workspace of the project; with no network here its clone fails, and it rests there.
  ids.workspaceId = okStatus(await owner.post("/api/v1/workspaces", { repository: ids.projectId })).json().id;
  await h.services.workspaceHost.settled(ids.workspaceId);

  const projectSecret = (name: string) => `/api/v1/projects/${ids.projectId}/secrets/${name}`;
  await setSecret(owner, projectSecret("DATABASE_URL"), "project secret", `postgres://app:${rand()}@db/app`);
  await setSecret(owner, projectSecret("JSON_CONFIG"), "project secret with JSON-escaped characters", `{"key":"${rand()}\\n"}\t"quoted"`);
  await setSecret(owner, projectSecret("DEPLOY_KEY"), "project deploy key", `-----BEGIN OPENSSH PRIVATE KEY-----\n${randomBytes(48).toString("base64")}\n-----END OPENSSH PRIVATE KEY-----\n`);
  await setSecret(owner, projectSecret("DATABASE_URL"), "replaced project secret");
  await setSecret(member, projectSecret("MEMBER_TOKEN"), "project secret set by a member");
  await setSecret(owner, "/api/v1/me/secrets/NPM_TOKEN", "owner's personal secret");
  await setSecret(member, "/api/v1/me/secrets/GH_TOKEN", "member's personal secret");

  // P01: only the public half of a deploy key is ever shown, before and after it is replaced.
  const forbidDeployKey = async () => {
    const { privateKey } = await h.services.deployKeys.revealDeployKey(ids.projectId);
    forbid("deploy key (private)", privateKey);
    forbid("deploy key (private), a base64 line of it", privateKey.split("\n")[2]!);
  };
  await forbidDeployKey();
  okStatus(await owner.post(`/api/v1/projects/${ids.projectId}/deploy-key`));
  await forbidDeployKey();
  // The env-file key: the public half is served, the private half never; a decrypted value only to the owner who asked.
  const publicKey = okStatus(await member.get(`/api/v1/projects/${ids.projectId}/env-file-key`)).json().publicKey as string;
  const row = await h.services.store.db.selectFrom("env_file_keys").select("private_key").where("project_id", "=", ids.projectId).executeTakeFirstOrThrow();
  const envFileKey = await h.services.box.open(h.services.store.db, { kind: "project", id: ids.projectId }, "env_file_key", row.private_key);
  for (const encoding of ["base64", "base64url", "hex"] as const) forbid(`env-file private key (${encoding})`, envFileKey.toString(encoding));
  const encryptedValue = `ev-${rand()}`;
  const encrypted = encryptEnvText(ids.projectId, parsePublicKey(publicKey), `DEPLOY_TOKEN=${encryptedValue}\n`, "deploy.env");
  expect((await member.post(`/api/v1/projects/${ids.projectId}/env-file-key/decrypt`, { text: encrypted })).statusCode).toBe(403);
  expect(okStatus(await owner.post(`/api/v1/projects/${ids.projectId}/env-file-key/decrypt`, { text: encrypted })).json().text).toBe(`DEPLOY_TOKEN=${encryptedValue}\n`);
  forbid("value of an encrypted env file", encryptedValue, { allowedIn: owner.last });
  // The webhook secret made with the project is never shown; a regenerated one once, to its maker.
  forbid("webhook secret made with the project", (await h.services.webhooks.reveal(ids.projectId))!);
  const hook = okStatus(await owner.post(`/api/v1/projects/${ids.projectId}/webhook-secret`));
  forbid("webhook secret", hook.json().secret, { allowedIn: owner.last });

  const ownerToken = await createToken(owner, scopes);
  await createToken(owner, ["projects:read"]);
  const memberToken = await createToken(member, ["projects:read", "secrets:read", "secrets:write", "orgs:read"]);
  await setSecret(ownerToken, projectSecret("VIA_TOKEN"), "project secret set with a token");
  await setSecret(memberToken, "/api/v1/me/secrets/VIA_TOKEN", "personal secret set with a token");

  // A connected GitHub account, with a linked repository: its tokens, and the OAuth app's secret, never come back.
  await connectAccount(owner, "github", sim.ca);
  forbid("GitHub access token", sim.lastToken());
  for (const refresh of sim.refreshTokensOutstanding()) forbid("GitHub refresh token", refresh);
  forbid("GitHub OAuth app secret", sim.clientSecret);
  okStatus(await owner.put(`/api/v1/projects/${ids.projectId}/repository-link`, { provider: "github", repo: "acme/private-app" }));
  forbid("webhook secret given to GitHub", (await h.services.webhooks.reveal(ids.projectId))!);

  // Two-factor set-up: the secret is shown once at set-up, the recovery codes once at confirmation.
  const setup = okStatus(await owner.post("/api/v1/me/2fa", { password: passwords.owner }));
  const uri = setup.json().otpauthUri as string;
  forbid("TOTP secret", setup.json().secret, { allowedIn: owner.last });
  const confirm = okStatus(await owner.post("/api/v1/me/2fa/confirm", { code: totpCode(uri) }));
  for (const code of confirm.json().recoveryCodes as string[]) {
    forbid("recovery code", code, { allowedIn: owner.last });
    forbid("hash of recovery code", tokenHash(code.replace(/[^0-9a-f]/g, "")));
  }
  okStatus(await owner.delete("/api/v1/session"));
  owner = await signIn("owner", totpCode(uri, 1));

  // Refusals echo nothing of what they refuse.
  const anon = new Recording(h.app, "anonymous");
  await anon.post("/api/v1/session", { email: emails.owner, password: passwords.member });
  await anon.post("/api/v1/session", { email: emails.owner, password: passwords.owner, totp: "000000" });
  const strayValue = `sv-${rand()}`;
  forbid("secret value in a rejected request", strayValue);
  await owner.put(projectSecret("REJECTED"), { value: strayValue, extra: strayValue });
  await member.put(projectSecret("bad name!"), { value: strayValue });
  const wrongPassword = `pw-${rand()}`;
  forbid("wrong current password", wrongPassword);
  await member.post("/api/v1/me/password", { currentPassword: wrongPassword, newPassword: passwords.member });
  const newPassword = `pw-${rand()}`;
  forbid("new password", newPassword);
  okStatus(await member.post("/api/v1/me/password", { currentPassword: passwords.member, newPassword }));

  // A build with some output: started through the API, its job leased and logged to by a runner.
  const build = okStatus(await owner.post(`/api/v1/projects/${ids.projectId}/builds`, { branch: "main", message: "Add login" })).json();
  [ids.buildId, ids.jobId] = [build.id, build.jobs[0].id];
  const runner = await h.services.runners.register("ci-1");
  forbidWithHash("runner token", runner.token);
  expect((await h.services.builds.lease(runner.id, 0))?.jobId).toBe(ids.jobId);
  await h.services.builds.appendLog(runner.id, ids.jobId, 0, Buffer.from("\x1b[32m✓ compiled\x1b[0m\n"));

  for (const client of [owner, ownerToken, member, memberToken, support, anon]) await readEverything(client);
});
afterAll(async () => {
  await h?.close();
  await sim?.close();
  if (simDir) rmSync(simDir, { recursive: true, force: true });
});

describe("P13: no sensitive data in API responses", () => {
  it("P13: the scan finds a value wherever it sits in a body (control)", () => {
    const planted = (body: string): Seen => ({ viewer: "member", what: "planted", status: 200, body });
    expect(leaks(planted(JSON.stringify({ deep: [{ x: `prefix ${passwords.owner} suffix` }] })))).toHaveLength(1);
    expect(leaks(planted(JSON.stringify({ v: 'say "hi"\\' + passwords.member })))).toHaveLength(1);
    expect(leaks(planted(`plain ${tokenHash(tokenCreation.token)}`))).toHaveLength(1);
    expect(leaks(planted(JSON.stringify({ email: emails.owner })))).toHaveLength(1);
    expect(leaks(planted(JSON.stringify({ fine: "nothing here" })))).toEqual([]);
    // The hand-outs really are in their responses: only the exception keeps them from being flagged.
    expect(textsOf(tokenCreation.seen).some((t) => t.includes(tokenCreation.token))).toBe(true);
  });

  it("P13: the session reached every GET route as owner, token, member, support and anonymous", () => {
    const gets = listRoutes(h.app).filter((r) => r.method === "GET");
    for (const viewer of ["owner", "member", "support", "anonymous"]) {
      const reached = seen.filter((s) => s.viewer === viewer && s.what.startsWith("GET ")).length;
      expect(reached, viewer).toBeGreaterThanOrEqual(gets.length);
    }
    expect(seen.length).toBeGreaterThan(100);
  });

  it("P13: a job's log reaches its readers as text, while its stored chunks are sealed (so the sb1: search is not vacuous)", async () => {
    const logViews = seen.filter((s) => s.what.endsWith(`/jobs/${ids.jobId}/log?format=text`));
    expect(logViews.find((s) => s.viewer === "member")?.body).toContain("✓ compiled");
    expect(logViews.find((s) => s.viewer === "support")?.status).toBe(403);
    const stored = await h.services.store.db.selectFrom("log_chunks").select("data").where("job_id", "=", ids.jobId).execute();
    expect(stored.map((c) => c.data.slice(0, 4))).toEqual(["sb1:"]);
  });

  it("P13: no response holds a secret value, token, hash, password, TOTP secret, recovery code, sealed value or private key", () => {
    expect(seen.flatMap(leaks)).toEqual([]);
  });

  it("P13: owners see member emails in /members (intended); members and support see only their own", () => {
    expect(ownerMembersView.body).toContain(emails.member);
    expect(ownerMembersView.body).toContain(emails.support);
    const views = seen.filter((s) => s.what === `GET /api/v1/orgs/${ids.orgId}/members` && s.status === 200);
    const memberView = views.find((s) => s.viewer === "member")!;
    const supportView = views.find((s) => s.viewer === "support")!;
    expect(memberView.body).toContain(emails.member);
    expect(supportView.body).toContain(emails.support);
    for (const view of [memberView, supportView]) {
      expect(view.body).not.toContain(emails.owner);
      // Both exist in the list (by id and name), just without the address.
      expect(JSON.parse(view.body).members).toHaveLength(3);
    }
    expect(memberView.body).not.toContain(emails.support);
    expect(supportView.body).not.toContain(emails.member);
  });
});
