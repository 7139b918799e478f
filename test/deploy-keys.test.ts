import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { sql } from "kysely";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MissingDataKeyError, type Owner } from "../src/crypto/secret-box.js";
import { buildApp } from "../src/http/app.js";
import { Client, createUser, signIn, startHarness, type Harness } from "./helpers/harness.js";

/**
 * P01: each project's own ed25519 deploy key. The private half works with the real OpenSSH
 * tools, and is found nowhere in plaintext: not in any API response, log line, database row or
 * file of the data dir. The app under test logs everything (trace) into a buffer we search.
 */

let h: Harness;
let app: FastifyInstance;
let owner: Client;
let member: Client;
let projectId: string;
const logs: string[] = [];
const responses: string[] = [];
/** Every private key the session made, so that the final scans look for all of them. */
const privateKeys = new Set<string>();
const scratch = mkdtempSync(path.join(tmpdir(), "slipway-ssh-"));

const db = () => h.services.store.db;
const url = (id = projectId) => `/api/v1/projects/${id}/deploy-key`;

/** A client of the logging app whose every response body is kept for the scan. */
function recording(client: Client): Client {
  const c = new Client(app, client.auth);
  const request = c.request.bind(c);
  c.request = async (...args: Parameters<Client["request"]>): Promise<LightMyRequestResponse> => {
    const res = await request(...args);
    responses.push(res.body);
    return res;
  };
  return c;
}

async function reveal(id = projectId): Promise<string> {
  const { privateKey } = await h.services.deployKeys.revealDeployKey(id);
  privateKeys.add(privateKey);
  return privateKey;
}

/** Writes a key file as ssh wants it (0600) in a scratch dir outside the data dir. */
function keyFile(name: string, content: string): string {
  const file = path.join(scratch, name);
  writeFileSync(file, content, { mode: 0o600 });
  return file;
}

const sshKeygen = (...args: string[]) => execFileSync("ssh-keygen", args, { encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });

/** The forms a leaked key could take: the file, its base64 without line breaks, and the raw 32-byte seed in binary, hex and base64. */
function forms(privateKey: string): Record<string, Buffer> {
  const base64 = privateKey.replace(/-----[A-Z ]+-----|\s/g, "");
  const decoded = Buffer.from(base64, "base64");
  // The private section ends with string(seed ‖ public key) then the comment: the seed sits just before the last copy of the public key.
  const pub = decoded.subarray(decoded.indexOf("ssh-ed25519") + 11 + 4, decoded.indexOf("ssh-ed25519") + 11 + 4 + 32);
  const at = decoded.lastIndexOf(pub);
  const seed = decoded.subarray(at - 32, at);
  return {
    "OpenSSH private key file": Buffer.from(privateKey),
    "its base64 on one line": Buffer.from(base64),
    "its first base64 line": Buffer.from(privateKey.split("\n")[1]!),
    "seed (binary)": seed,
    "seed (hex)": Buffer.from(seed.toString("hex")),
    "seed (base64)": Buffer.from(seed.toString("base64").replace(/=+$/, "")),
    "seed (base64url)": Buffer.from(seed.toString("base64url")),
  };
}

/** Every file under `dir` holding any form of any of the keys, as "file: form". */
function filesHolding(dir: string, keys: Iterable<string>): string[] {
  const hits: string[] = [];
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const file = path.join(dir, name);
    if (!statSync(file).isFile()) continue;
    const bytes = readFileSync(file);
    for (const key of keys) for (const [label, needle] of Object.entries(forms(key))) if (bytes.includes(needle)) hits.push(`${name}: ${label}`);
  }
  return hits;
}

function textsHolding(texts: string[], keys: Iterable<string>): string[] {
  const hits: string[] = [];
  for (const key of keys) {
    for (const [label, needle] of Object.entries(forms(key))) {
      if (label === "seed (binary)") continue;
      if (texts.some((t) => t.includes(needle.toString()))) hits.push(label);
    }
  }
  return hits;
}

beforeAll(async () => {
  h = await startHarness();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(chunk.toString());
      done();
    },
  });
  app = await buildApp(h.services, { logger: pino({ level: "trace" }, sink) });
  const ownerUser = await createUser(h, "keys-owner@example.com");
  const memberUser = await createUser(h, "keys-member@example.com");
  owner = recording(await signIn(h, "keys-owner@example.com"));
  const created = await owner.post("/api/v1/projects", { name: "web" });
  expect(created.statusCode, created.body).toBe(201);
  projectId = created.json().id;
  const orgId = created.json().organization as string;
  const principal = { userId: ownerUser.id, email: "keys-owner@example.com", isAdmin: false, twoFactor: false, via: "session", scopes: "all" } as const;
  const { token } = await h.services.orgs.invite({ principal, ip: null }, orgId, memberUser.email, "member");
  await h.services.orgs.acceptInvitation({ principal: { ...principal, userId: memberUser.id, email: memberUser.email }, ip: null }, token);
  member = recording(await signIn(h, "keys-member@example.com"));
});
afterAll(async () => {
  rmSync(scratch, { recursive: true, force: true });
  await app?.close();
  await h?.close();
});

describe("P01: deploy keys", () => {
  it("P01: a new project has an ed25519 deploy key; the API shows its public half and fingerprint to anyone who may read the project", async () => {
    const res = await member.get(url());
    expect(res.statusCode, res.body).toBe(200);
    const key = res.json();
    expect(Object.keys(key).sort()).toEqual(["createdAt", "fingerprint", "publicKey"]);
    expect(key.publicKey).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{43} slipway-deploy-web$/);
    expect(key.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    // Made at creation, not on this first read.
    expect(await db().selectFrom("deploy_keys").select("fingerprint").where("project_id", "=", projectId).executeTakeFirstOrThrow()).toEqual({ fingerprint: key.fingerprint });
  });

  it("P01: the private key is an identity file OpenSSH accepts: ssh-keygen derives the same public key and fingerprint, and it signs for that public key", async () => {
    const { publicKey, fingerprint } = (await owner.get(url())).json();
    const file = keyFile("id_web", await reveal());
    expect(sshKeygen("-y", "-f", file).trim()).toBe(publicKey);
    expect(sshKeygen("-lf", file)).toBe(`256 ${fingerprint} slipway-deploy-web (ED25519)\n`);
    const pubFile = keyFile("id_web.pub", `${publicKey}\n`);
    expect(sshKeygen("-lf", pubFile)).toContain(fingerprint);

    // -y only reads the public key stored beside the seed; a signature proves the seed matches it.
    const message = keyFile("message", "signed by the deploy key\n");
    sshKeygen("-Y", "sign", "-q", "-f", file, "-n", "slipway-test", message);
    const verify = (pub: string) => {
      const signers = keyFile("allowed_signers", `deploy@slipway ${pub}\n`);
      return spawnSync("ssh-keygen", ["-Y", "verify", "-f", signers, "-I", "deploy@slipway", "-n", "slipway-test", "-s", `${message}.sig`], { input: readFileSync(message) }).status;
    };
    expect(verify(publicKey)).toBe(0);
    // Control: with another project's key as the only allowed signer it fails, so the check can fail.
    const other = (await owner.post("/api/v1/projects", { name: "other" })).json().id as string;
    expect(verify((await owner.get(url(other))).json().publicKey)).not.toBe(0);
    await reveal(other);
  });

  it("P01: regenerating makes a new pair and audits it; a member may read the key but not replace it", async () => {
    const before = (await owner.get(url())).json();
    const oldPrivate = await reveal();
    const refused = await member.post(url());
    expect(refused.statusCode).toBe(403);
    expect((await owner.get(url())).json()).toEqual(before);

    const res = await owner.post(url());
    expect(res.statusCode, res.body).toBe(200);
    const after = res.json();
    expect(Object.keys(after).sort()).toEqual(["createdAt", "fingerprint", "publicKey"]);
    expect(after.fingerprint).not.toBe(before.fingerprint);
    expect(after.publicKey).not.toBe(before.publicKey);
    expect((await member.get(url())).json()).toEqual(after);
    const newPrivate = await reveal();
    expect(newPrivate).not.toBe(oldPrivate);
    expect(sshKeygen("-y", "-f", keyFile("id_web_2", newPrivate)).trim()).toBe(after.publicKey);

    const audit = await db().selectFrom("audit_log").selectAll().where("action", "=", "project.deploy_key_regenerated").execute();
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ actor: "keys-owner@example.com", target: projectId });
    expect(JSON.parse(audit[0]!.details)).toEqual({ fingerprint: after.fingerprint, previousFingerprint: before.fingerprint });
  });

  it("P01: a project made before deploy keys existed gets a pair on first read", async () => {
    const legacy = (await owner.post("/api/v1/projects", { name: "legacy" })).json().id as string;
    await db().deleteFrom("deploy_keys").where("project_id", "=", legacy).execute();
    const res = await owner.get(url(legacy));
    expect(res.statusCode).toBe(200);
    expect(res.json().publicKey).toMatch(/ slipway-deploy-legacy$/);
    expect(sshKeygen("-y", "-f", keyFile("id_legacy", await reveal(legacy))).trim()).toBe(res.json().publicKey);
    expect((await owner.get(url(legacy))).json()).toEqual(res.json());
  });

  it("P01: deleting the project shreds its key: the row goes, and a copy of the sealed value no longer opens", async () => {
    const doomed = (await owner.post("/api/v1/projects", { name: "doomed" })).json().id as string;
    await reveal(doomed);
    const owned: Owner = { kind: "project", id: doomed };
    const copy = (await db().selectFrom("deploy_keys").select("private_key").where("project_id", "=", doomed).executeTakeFirstOrThrow()).private_key;
    expect(await h.services.box.openString(db(), owned, "deploy_key", copy)).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----/);

    expect((await owner.delete(`/api/v1/projects/${doomed}`)).statusCode).toBe(204);
    for (const table of ["deploy_keys", "webhook_secrets"] as const) expect(await db().selectFrom(table).select("project_id").where("project_id", "=", doomed).execute()).toEqual([]);
    await expect(h.services.box.open(db(), owned, "deploy_key", copy)).rejects.toBeInstanceOf(MissingDataKeyError);
    expect((await owner.get(url(doomed))).statusCode).toBe(404);
  });

  it("P01: the private key is kept sealed, bound to its project and field", async () => {
    const row = await db().selectFrom("deploy_keys").selectAll().where("project_id", "=", projectId).executeTakeFirstOrThrow();
    expect(row.private_key).toMatch(/^sb1:/);
    expect(await h.services.box.openString(db(), { kind: "project", id: projectId }, "deploy_key", row.private_key)).toBe(await reveal());
    await expect(h.services.box.open(db(), { kind: "project", id: projectId }, "webhook_secret", row.private_key)).rejects.toThrow();
  });

  it("P01: no API response, log line, database row or data dir file holds any form of any private key; the scans find a planted one", async () => {
    for (const client of [owner, member]) for (const id of [projectId]) await client.get(url(id));
    expect(privateKeys.size).toBeGreaterThanOrEqual(4);
    expect(responses.length).toBeGreaterThan(10);
    expect(logs.length).toBeGreaterThan(10);

    expect(textsHolding(responses, privateKeys)).toEqual([]);
    expect(textsHolding(logs, privateKeys)).toEqual([]);
    const tables = (await sql<{ name: string }>`select name from sqlite_master where type = 'table'`.execute(db())).rows.map((r) => r.name);
    const dumps = await Promise.all(tables.map(async (t) => JSON.stringify((await sql`select * from ${sql.table(t)}`.execute(db())).rows)));
    expect(tables).toContain("deploy_keys");
    expect(textsHolding(dumps, privateKeys)).toEqual([]);
    expect(filesHolding(h.dataDir, privateKeys)).toEqual([]);

    // Controls: each scan finds a key where one is.
    const [one] = privateKeys;
    expect(textsHolding([JSON.stringify({ k: one })], [one!]).length).toBeGreaterThan(0);
    expect(filesHolding(scratch, privateKeys).length).toBeGreaterThan(0);
    const seedOnly = mkdtempSync(path.join(tmpdir(), "slipway-seed-"));
    try {
      writeFileSync(path.join(seedOnly, "x.bin"), forms(one!)["seed (binary)"]!);
      expect(filesHolding(seedOnly, [one!])).toEqual(["x.bin: seed (binary)"]);
    } finally {
      rmSync(seedOnly, { recursive: true, force: true });
    }
  });
});
