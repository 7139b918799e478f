import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LeasedJob } from "../src/builds/builds.js";
import type { RequestContext } from "../src/auth/permissions.js";
import type { User } from "../src/auth/users.js";
import { validateCommand } from "../src/cli/validate.js";
import { classifyEncryptedFile, slipwayEncryptedPrefix } from "../src/pipeline/index.js";
import { injectTransport } from "../src/runner/embedded.js";
import { Runner } from "../src/runner/runner.js";
import type { Sandbox } from "../src/sandbox/backend.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { encryptEnvText, generateEnvFileKeyPair, openEnvFile, openLine, parsePublicKey, sealLine } from "../src/secrets/env-file-format.js";
import { cli, Client, createUser, signIn, startHarness, tokenClient, type Harness } from "./helpers/harness.js";

// Encrypted env files (Codeship's encrypted_env_file): sealed per line for the project's X25519
// key by `slipway secrets encrypt`, opened only on the server, for the runner holding the job or
// for an owner or admin (audited). Real CLI processes, a real server, real git and real sandboxes.

const rand = () => randomBytes(6).toString("hex");
const ctxOf = (u: User): RequestContext => ({ principal: { userId: u.id, email: u.email, isAdmin: u.isAdmin, twoFactor: false, via: "session", scopes: "all" }, ip: null });
const dirs: string[] = [];
const tempDir = (label: string) => {
  const d = mkdtempSync(path.join(tmpdir(), `slipway-env-${label}-`));
  dirs.push(d);
  return d;
};

describe("the slipway:v1: format", () => {
  const keys = generateEnvFileKeyPair();
  const plain = "# deploy\nDEPLOY_TOKEN=tok-1234abcd\n\nDB_URL=postgres://u:p@db/app?ssl=1\n";

  it("seals each NAME=value line for one project and opens only there, with this key", () => {
    const sealed = encryptEnvText("prj_a", keys.publicKey, plain, "deploy.env");
    const lines = sealed.trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l.startsWith(slipwayEncryptedPrefix)).toBe(true);
    expect(classifyEncryptedFile(sealed)).toBe("slipway");
    expect(sealed).not.toContain("tok-1234abcd");
    expect(openEnvFile("prj_a", keys, sealed, "deploy.env.encrypted")).toEqual([
      { name: "DEPLOY_TOKEN", value: "tok-1234abcd", line: 1 },
      { name: "DB_URL", value: "postgres://u:p@db/app?ssl=1", line: 2 },
    ]);
    // The same lines under another project's id, or with another key pair, do not open.
    expect(() => openEnvFile("prj_b", keys, sealed, "deploy.env.encrypted")).toThrow(/deploy\.env\.encrypted line 1 does not open with this project's key/);
    expect(() => openEnvFile("prj_a", generateEnvFileKeyPair(), sealed, "deploy.env.encrypted")).toThrow(/line 1 does not open/);
    expect(() => openEnvFile("prj_a", undefined, sealed, "deploy.env.encrypted")).toThrow(/line 1 does not open/);
  });

  it("a changed, truncated or forged line is named by its number, never a crash", () => {
    const sealed = encryptEnvText("prj_a", keys.publicKey, plain, "deploy.env").split("\n");
    const flip = (line: string, at: number) => line.slice(0, at) + (line[at] === "A" ? "B" : "A") + line.slice(at + 1);
    const ephemeralZero = slipwayEncryptedPrefix + Buffer.concat([Buffer.alloc(32), randomBytes(12 + 20)]).toString("base64url");
    for (const bad of [flip(sealed[1]!, 40), flip(sealed[1]!, sealed[1]!.length - 3), sealed[1]!.slice(0, 60), `${slipwayEncryptedPrefix}not*base64`, ephemeralZero]) {
      expect(() => openEnvFile("prj_a", keys, [sealed[0], bad, ""].join("\n"), "app.env.encrypted")).toThrow(/^app\.env\.encrypted line 2 does not open with this project's key: .*slipway secrets encrypt/);
      expect(openLine("prj_a", keys, bad)).toBeUndefined();
    }
    // Control: the untouched lines open.
    expect(openEnvFile("prj_a", keys, sealed.join("\n"), "app.env.encrypted")).toHaveLength(2);
  });

  it("Codeship's own format and plain files are refused with how to encrypt them again", () => {
    const codeship = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n";
    expect(() => openEnvFile("prj_a", keys, codeship, "app.env.encrypted")).toThrow(/app\.env\.encrypted is encrypted with Codeship's key.*jet decrypt.*slipway secrets encrypt --server https:\/\/SERVER --project prj_a plain\.env app\.env\.encrypted/);
    expect(() => openEnvFile("prj_a", keys, "TOKEN=abcdef\n", "app.env.encrypted")).toThrow(/is not encrypted in Slipway's format.*slipway secrets encrypt/);
    expect(() => encryptEnvText("prj_a", keys.publicKey, codeship, "app.env")).toThrow(/jet decrypt/);
  });

  it("refuses what it could not mask or pass on: short values, bad names, lines without =", () => {
    expect(() => encryptEnvText("prj_a", keys.publicKey, "GOOD=long-enough\nDEBUG=1\n", "app.env")).toThrow(/app\.env line 2: DEBUG: a secret value must be at least 4 characters long.*environment instead/);
    expect(() => encryptEnvText("prj_a", keys.publicKey, "1BAD=value-here\n", "app.env")).toThrow(/app\.env line 1: expected NAME=value/);
    expect(() => encryptEnvText("prj_a", keys.publicKey, "\nJUSTANAME\n", "app.env")).toThrow(/app\.env line 2: expected NAME=value/);
    // A sealed line whose plaintext is short (made by hand) is refused when opened too.
    expect(() => openEnvFile("prj_a", keys, sealLine("prj_a", keys.publicKey, "X=1") + "\n", "app.env.encrypted")).toThrow(/app\.env\.encrypted line 1: X: a secret value must be at least 4/);
    expect(() => parsePublicKey("c2hvcnQ=")).toThrow(/32 bytes/);
    // A low-order point (here all zeros) is 32 bytes but no one's key: a clear error, not OpenSSL's.
    expect(() => sealLine("prj_a", parsePublicKey(Buffer.alloc(32).toString("base64")), "TOKEN=value-1234")).toThrow(/not a project's key/);
  });
});

describe("env-file keys, the CLI and builds", () => {
  let h: Harness;
  let url: string;
  let runner: Runner;
  let owner: Client;
  let orgId: string;
  const tokens: Record<"owner" | "admin" | "member", string> = { owner: "", admin: "", member: "" };
  const repos = new Map<string, string>();

  /** The repository as committed (git archive of HEAD), unpacked into the sandbox's /workspace. */
  async function committedCheckout(job: LeasedJob, sandbox: Sandbox): Promise<void> {
    const archive = execFileSync("git", ["-C", repos.get(job.projectId)!, "archive", "--format=tar", "HEAD"]);
    const status = await sandbox.exec({ argv: ["tar", "-xf", "-", "-C", "/workspace"] }, { stdin: archive });
    if (status.code !== 0) throw new Error("checkout failed");
  }

  /** `slipway …` in its own process, as a user would run it (asynchronous: the server runs in this process). */
  function slipway(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, [cli, ...args], { env: { PATH: process.env.PATH!, SLIPWAY_DATA_DIR: tempDir("cli"), ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  }

  async function newProject(): Promise<string> {
    const res = await owner.post("/api/v1/projects", { name: `p${rand()}`, organization: orgId });
    expect(res.statusCode, res.body).toBe(201);
    return res.json().id as string;
  }

  /** A real git repository with these files committed; `check.sh` is made executable. */
  function commitRepo(projectId: string, files: Record<string, string>): string {
    const dir = tempDir("repo");
    for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
    if (files["check.sh"]) chmodSync(path.join(dir, "check.sh"), 0o755);
    const git = (...args: string[]) => execFileSync("git", ["-C", dir, "-c", "user.name=Ada", "-c", "user.email=ada@example.com", ...args]);
    git("init", "-q", "-b", "main");
    git("add", "-A");
    git("commit", "-qm", "encrypted env files");
    repos.set(projectId, dir);
    return dir;
  }

  async function build(projectId: string): Promise<{ status: string; reason: string | null; log: string }> {
    const created = await owner.post(`/api/v1/projects/${projectId}/builds`, { branch: "main" });
    expect(created.statusCode, created.body).toBe(201);
    const until = Date.now() + 90_000;
    for (;;) {
      const b = (await owner.get(`/api/v1/builds/${created.json().id}`)).json();
      if (!["queued", "running"].includes(b.status)) {
        let log = "";
        for (const job of b.jobs as Array<{ id: string }>) log += (await owner.get(`/api/v1/builds/${b.id}/jobs/${job.id}/log?format=text`)).body;
        return { status: b.status, reason: b.reason, log };
      }
      if (Date.now() > until) throw new Error(`build still ${b.status} after 90 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const services = (encrypted: string) => `app:
  image: host
  environment:
    PLAIN_VAR: plain-value
    SHARED: from-environment
  env_file: app.env
  encrypted_env_file: ${encrypted}
`;
  const steps = "- name: check\n  service: app\n  command: ./check.sh\n";
  const sha256 = (v: string) => createHash("sha256").update(v).digest("hex");

  beforeAll(async () => {
    expect(statSync(cli).isFile(), "run `npm run build` first (npm test does)").toBe(true);
    h = await startHarness();
    await h.app.listen({ host: "127.0.0.1", port: 0 });
    url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
    const ownerUser = await createUser(h, "owner@example.com");
    owner = await signIn(h, "owner@example.com");
    orgId = (await h.services.orgs.create(ctxOf(ownerUser), `acme-${rand()}`)).id;
    for (const role of ["admin", "member"] as const) {
      const user = await createUser(h, `${role}@example.com`);
      const { token } = await h.services.orgs.invite(ctxOf(ownerUser), orgId, user.email, role);
      await h.services.orgs.acceptInvitation(ctxOf(user), token);
      tokens[role] = (await tokenClient(h, await signIn(h, user.email), ["projects:read", "secrets:read", "secrets:write"])).auth.bearer!;
    }
    tokens.owner = (await tokenClient(h, owner, ["projects:read"])).auth.bearer!;
    // The embedded runner's way to the API (request injection), with the committed tree as checkout.
    const { token } = await h.services.runners.register("env-files runner");
    runner = new Runner({ server: "embedded", token, transport: injectTransport(h.app, token), leaseWaitMs: 2_000, backend: new BwrapBackend(), checkout: committedCheckout });
    runner.start(2);
  });

  afterAll(async () => {
    await runner?.stop();
    await h?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("P21: encrypted offline with the CLI, committed, built: the step gets the variables (with env_file and environment), the log shows *** for the values", async () => {
    const projectId = await newProject();
    const publicKey = (await owner.get(`/api/v1/projects/${projectId}/env-file-key`)).json().publicKey as string;
    expect(parsePublicKey(publicKey)).toHaveLength(32);
    const token = `tok-${rand()}${rand()}`;
    const work = tempDir("work");
    writeFileSync(path.join(work, "deploy.env"), `# secrets for deploys\nDEPLOY_TOKEN=${token}\nDB_URL=postgres://app:${rand()}@db/app?sslmode=require\n`);
    const enc = await slipway(["secrets", "encrypt", "--public-key", publicKey, "--project", projectId, path.join(work, "deploy.env"), path.join(work, "deploy.env.encrypted")]);
    expect(enc.stderr).toMatch(/encrypted 2 variables for project/);
    expect(enc.code).toBe(0);
    const encrypted = readFileSync(path.join(work, "deploy.env.encrypted"), "utf8");
    expect(encrypted).not.toContain(token);

    const repo = commitRepo(projectId, {
      "codeship-services.yml": services("deploy.env.encrypted"),
      "codeship-steps.yml": steps,
      "app.env": "FROM_ENV_FILE=file-value\nSHARED=from-env-file\n",
      "deploy.env.encrypted": encrypted,
      // The expected value is compared by hash: the repository holds no plaintext.
      "check.sh": `#!/bin/sh\necho "token=$DEPLOY_TOKEN"\necho "b64=$(printf %s "$DEPLOY_TOKEN" | base64)"\necho "plain=$PLAIN_VAR file=$FROM_ENV_FILE shared=$SHARED"\ntest "$(printf %s "$DEPLOY_TOKEN" | sha256sum | cut -d' ' -f1)" = "${sha256(token)}" || exit 3\ncase "$DB_URL" in postgres://app:*) ;; *) exit 4 ;; esac\n`,
    });
    // slipway validate agrees the repository is fine.
    let out = "";
    expect(validateCommand(repo, (t) => (out += t)), out).toBe(0);

    const result = await build(projectId);
    expect(result.log).toContain("token=***");
    expect(result.log).toContain("b64=***");
    expect(result.log).not.toContain(token);
    expect(result.log).not.toContain(Buffer.from(token).toString("base64"));
    // Plain service settings reach the step too; `environment` wins over `env_file`.
    expect(result.log).toContain("plain=plain-value file=file-value shared=from-environment");
    expect(result.status, result.log).toBe("success");
  });

  it("slipway run applies a service's env_file and environment, and says that it leaves encrypted files shut", async () => {
    const projectId = await newProject();
    const key = parsePublicKey((await owner.get(`/api/v1/projects/${projectId}/env-file-key`)).json().publicKey);
    const dir = commitRepo(`local-${rand()}`, {
      "codeship-services.yml": services("deploy.env.encrypted"),
      "codeship-steps.yml": steps,
      "app.env": "FROM_ENV_FILE=file-value\nSHARED=from-env-file\n",
      "deploy.env.encrypted": encryptEnvText(projectId, key, "DEPLOY_TOKEN=never-decrypted-here\n", "deploy.env"),
      "check.sh": '#!/bin/sh\necho "plain=$PLAIN_VAR file=$FROM_ENV_FILE shared=$SHARED token=${DEPLOY_TOKEN:-unset}"\n',
    });
    const child = spawn(process.execPath, [cli, "run"], { cwd: dir, env: { PATH: process.env.PATH! }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    child.stderr.on("data", (d: Buffer) => (err += d));
    const code = await new Promise((resolve) => child.on("close", resolve));
    expect(err).toMatch(/deploy\.env\.encrypted is not decrypted by slipway run .*--env-file/);
    expect(out).toContain("plain=plain-value file=file-value shared=from-environment token=unset");
    expect(code).toBe(0);
  });

  it("the CLI encrypts with the key fetched from the server; an admin decrypts with the CLI (audited), a member gets 403", async () => {
    const projectId = await newProject();
    const work = tempDir("cli");
    const value = `v-${rand()}`;
    writeFileSync(path.join(work, "plain.env"), `API_TOKEN=${value}\nOTHER=second-value\n`);
    const enc = await slipway(["secrets", "encrypt", "--server", url, "--project", projectId, path.join(work, "plain.env"), path.join(work, "out.enc")], { SLIPWAY_TOKEN: tokens.owner });
    expect(enc.stderr).toMatch(/encrypted 2 variables/);
    expect(enc.code).toBe(0);

    const decryptAs = (who: keyof typeof tokens, out: string) =>
      slipway(["secrets", "decrypt", "--server", url, "--project", projectId, path.join(work, "out.enc"), path.join(work, out)], { SLIPWAY_TOKEN: tokens[who] });
    const denied = await decryptAs("member", "member.env");
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/not allowed to decrypt env files .*owners and admins/);
    expect(existsSync(path.join(work, "member.env"))).toBe(false);
    const audited = async () => (await h.services.store.db.selectFrom("audit_log").select(["actor", "target"]).where("action", "=", "project.env_file_decrypted").where("target", "=", projectId).execute()).map((r) => r.actor);
    expect(await audited()).toEqual([]);

    const allowed = await decryptAs("admin", "admin.env");
    expect(allowed.stderr).toBe("");
    expect(allowed.code).toBe(0);
    expect(readFileSync(path.join(work, "admin.env"), "utf8")).toBe(`API_TOKEN=${value}\nOTHER=second-value\n`);
    expect(statSync(path.join(work, "admin.env")).mode & 0o777).toBe(0o600);
    expect(await audited()).toEqual(["admin@example.com"]);
  });

  it("the CLI refuses a token in its arguments, a missing project, short values, Codeship files and plain http to other hosts, with what to do", async () => {
    const work = tempDir("bad");
    writeFileSync(path.join(work, "plain.env"), "API_TOKEN=long-enough\n");
    writeFileSync(path.join(work, "short.env"), "PORT=80\n");
    writeFileSync(path.join(work, "codeship.env"), "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n");
    const key = parsePublicKey((await owner.get(`/api/v1/projects/${await newProject()}/env-file-key`)).json().publicKey).toString("base64");
    const cases: Array<[string[], RegExp]> = [
      [["--token", "slw_x", "--server", url, "--project", "p"], /SLIPWAY_TOKEN .*not as an argument/],
      [["--public-key", key], /--project ID/],
      [["--public-key", key, "--project", "p", "--server", url], /either --public-key .* or --server/],
      [["--project", "p"], /give --server URL .* or --public-key/],
      [["--public-key", "c2hvcnQ=", "--project", "p"], /32 bytes/],
      [["--server", "http://ci.example.com", "--project", "p"], /https:\/\/ URL/],
    ];
    for (const [flags, message] of cases) {
      const res = await slipway(["secrets", "encrypt", ...flags, path.join(work, "plain.env"), path.join(work, "out")], { SLIPWAY_TOKEN: tokens.owner });
      expect(res.stderr, flags.join(" ")).toMatch(message);
      expect(res.code, flags.join(" ")).toBe(2);
    }
    const short = await slipway(["secrets", "encrypt", "--public-key", key, "--project", "p", path.join(work, "short.env"), path.join(work, "out")]);
    expect(short.stderr).toMatch(/short\.env line 1: PORT: a secret value must be at least 4 characters/);
    expect(short.code).toBe(2);
    const codeship = await slipway(["secrets", "encrypt", "--public-key", key, "--project", "p", path.join(work, "codeship.env"), path.join(work, "out")]);
    expect(codeship.stderr).toMatch(/jet decrypt/);
    expect(codeship.code).toBe(2);
    expect(existsSync(path.join(work, "out"))).toBe(false);
    // Control: the same command with good input works, and --help shows examples.
    expect((await slipway(["secrets", "encrypt", "--public-key", key, "--project", "p", path.join(work, "plain.env"), path.join(work, "out")])).code).toBe(0);
    const help = await slipway(["secrets", "--help"]);
    expect(help.stdout).toMatch(/Examples:\n.*slipway secrets encrypt/s);
  });

  it("a file encrypted for another project, a tampered line and Codeship's format fail the build with what is wrong and how to fix it", async () => {
    const other = await newProject();
    const otherKey = parsePublicKey((await owner.get(`/api/v1/projects/${other}/env-file-key`)).json().publicKey);
    const check = "#!/bin/sh\necho ran-the-step\n";
    const [wrongProject, tampered, codeship] = [await newProject(), await newProject(), await newProject()];
    const ownKey = parsePublicKey((await owner.get(`/api/v1/projects/${tampered}/env-file-key`)).json().publicKey);
    const good = encryptEnvText(tampered, ownKey, "FIRST=first-value\nSECOND=second-value\n", "app.env").split("\n");
    const at = Math.floor(good[1]!.length / 2);
    const broken = [good[0], good[1]!.slice(0, at) + (good[1]![at] === "A" ? "B" : "A") + good[1]!.slice(at + 1), ""].join("\n");
    const base = { "codeship-steps.yml": steps, "app.env": "FROM_ENV_FILE=x\n", "check.sh": check };
    commitRepo(wrongProject, { ...base, "codeship-services.yml": services("app.env.encrypted"), "app.env.encrypted": encryptEnvText(other, otherKey, "TOKEN=for-another-project\n", "app.env") });
    commitRepo(tampered, { ...base, "codeship-services.yml": services("app.env.encrypted"), "app.env.encrypted": broken });
    const codeshipRepo = commitRepo(codeship, { ...base, "codeship-services.yml": services("app.env.encrypted"), "app.env.encrypted": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n" });

    const [a, b, c] = await Promise.all([build(wrongProject), build(tampered), build(codeship)]);
    expect(a.status).toBe("error");
    expect(a.log).toMatch(/app\.env\.encrypted line 1 does not open with this project's key: it was changed, or encrypted for another project/);
    expect(a.log).toContain(`slipway secrets encrypt --server https://SERVER --project ${wrongProject} plain.env app.env.encrypted`);
    expect(b.status).toBe("error");
    expect(b.log).toMatch(/app\.env\.encrypted line 2 does not open with this project's key/);
    expect(c.status).toBe("error");
    expect(c.reason).toBe("the pipeline config has errors");
    expect(c.log).toMatch(/codeship-services\.yml:\d+:\d+: error: app\.env\.encrypted is encrypted with Codeship's key.*jet decrypt.*slipway secrets encrypt --server/);
    for (const r of [a, b, c]) expect(r.log).not.toContain("ran-the-step");
    // slipway validate says the same as the build.
    let out = "";
    expect(validateCommand(codeshipRepo, (t) => (out += t))).toBe(2);
    expect(out).toMatch(/encrypted with Codeship's key.*slipway secrets encrypt --server/);
    // Control: the file of the other project builds there.
    commitRepo(other, { ...base, "codeship-services.yml": services("app.env.encrypted"), "app.env.encrypted": encryptEnvText(other, otherKey, "TOKEN=for-another-project\n", "app.env") });
    const d = await build(other);
    expect(d.log).toContain("ran-the-step");
    expect(d.status, d.log).toBe("success");
  });
});

describe("the runner route for env files", () => {
  let h: Harness;
  let owner: Client;

  beforeAll(async () => {
    h = await startHarness();
    await createUser(h, "owner@example.com");
    owner = await signIn(h, "owner@example.com");
  });
  afterAll(() => h?.close());

  it("opens a file only for the runner holding the job's lease, never for a pull-request build; the private key never leaves", async () => {
    const projectId = (await owner.post("/api/v1/projects", { name: "app" })).json().id as string;
    const key = parsePublicKey((await owner.get(`/api/v1/projects/${projectId}/env-file-key`)).json().publicKey);
    const text = encryptEnvText(projectId, key, "DEPLOY_TOKEN=route-value-1\n", "app.env");
    const runnerClient = async (name: string) => {
      const r = await h.services.runners.register(name);
      return { id: r.id, client: new Client(h.app, { bearer: r.token }) };
    };
    const holder = await runnerClient("holder");
    const stranger = await runnerClient("stranger");
    const lease = async (pullRequest?: number) => {
      await h.services.builds.create(projectId, { branch: "main", trigger: "api", ...(pullRequest !== undefined && { pullRequest }) });
      return (await h.services.builds.lease(holder.id, 0))!.jobId;
    };
    const job = await lease();
    const open = (c: Client, jobId: string, body: unknown = { path: "app.env.encrypted", text }) => c.post(`/api/v1/runner/jobs/${jobId}/env-files`, body);

    const ok = await open(holder.client, job);
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toEqual({ env: { DEPLOY_TOKEN: "route-value-1" } });
    expect((await open(stranger.client, job)).statusCode).toBe(409);
    expect((await open(owner, job)).statusCode).toBe(401);
    const at = Math.floor(text.length / 2);
    const bad = await open(holder.client, job, { path: "app.env.encrypted", text: text.slice(0, at) + (text[at] === "A" ? "B" : "A") + text.slice(at + 1) });
    expect(bad.statusCode).toBe(422);
    expect(bad.json().error).toMatchObject({ code: "env_file_unreadable", message: expect.stringMatching(/^app\.env\.encrypted line 1 does not open/) });

    const pr = await lease(7);
    const refused = await open(holder.client, pr);
    expect(refused.statusCode).toBe(403);
    expect(refused.json().error.code).toBe("untrusted_build");
  });
});
