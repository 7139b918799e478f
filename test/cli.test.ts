import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { pino } from "pino";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadSettings } from "../src/config/settings.js";
import { parseMasterKey } from "../src/crypto/master-key.js";
import { createServices, type Services } from "../src/services.js";
import { cli, PASSWORD } from "./helpers/harness.js";

const dirs: string[] = [];
function dataDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), "slipway-cli-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function slipway(dir: string, args: string[], input = "", env: Record<string, string> = {}) {
  const res = spawnSync(process.execPath, [cli, ...args], { input, encoding: "utf8", env: { PATH: process.env.PATH, SLIPWAY_DATA_DIR: dir, ...env }, timeout: 60_000 });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

async function withServices<T>(dir: string, fn: (s: Services) => Promise<T>, env: Record<string, string> = {}): Promise<T> {
  const s = await createServices(loadSettings({ dataDir: dir }, env), pino({ level: "silent" }));
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

const cliCtx = (userId: string) => ({ principal: { userId, email: "ops@example.com", isAdmin: true, twoFactor: false, via: "session" as const, scopes: "all" as const }, ip: null });

beforeAll(() => {
  expect(statSync(cli).isFile(), "run `npm run build` first (npm test does)").toBe(true);
});

describe("slipway admin create-user", () => {
  it("reads the password from stdin, never from the arguments, and creates an admin with an organization", async () => {
    const dir = dataDir();
    const res = slipway(dir, ["admin", "create-user", "--email", "Ops@Example.com", "--admin", "--org", "acme"], `${PASSWORD}\n`);
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/created admin user ops@example.com/);
    expect(res.stdout).toMatch(/created organization acme/);
    await withServices(dir, async (s) => {
      const ok = await s.signIn.signIn({ email: "ops@example.com", password: PASSWORD }, null);
      expect(ok.user.isAdmin).toBe(true);
      expect(await s.orgs.listFor(ok.user.id)).toMatchObject([{ name: "acme", role: "owner" }]);
    });
  });

  it("refuses a short password, a missing email and a taken address with a clear message", () => {
    const dir = dataDir();
    const short = slipway(dir, ["admin", "create-user", "--email", "a@example.com"], "short\n");
    expect(short.code).toBe(2);
    expect(short.stderr).toMatch(/at least 10 characters/);
    expect(slipway(dir, ["admin", "create-user"], `${PASSWORD}\n`).stderr).toMatch(/--email/);
    expect(slipway(dir, ["admin", "create-user", "--email", "a@example.com"], `${PASSWORD}\n`).code).toBe(0);
    const again = slipway(dir, ["admin", "create-user", "--email", "a@example.com"], `${PASSWORD}\n`);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already exists/);
  });

  it("prints usage and rejects unknown commands with exit code 2", () => {
    const dir = dataDir();
    const help = slipway(dir, ["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/slipway serve/);
    const bad = slipway(dir, ["frobnicate"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown command: frobnicate/);
    const badPort = slipway(dir, ["serve", "--port", "99999"]);
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toMatch(/port \(SLIPWAY_PORT\)/);
  });
});

describe("slipway admin rotate-master-key", () => {
  it("P17: rewraps every data key under a new master key; the old key opens nothing any more", async () => {
    const dir = dataDir();
    const user = slipway(dir, ["admin", "create-user", "--email", "ops@example.com", "--org", "acme"], `${PASSWORD}\n`);
    expect(user.code).toBe(0);
    const projectId = await withServices(dir, async (s) => {
      const u = (await s.users.findByEmail(s.store.db, "ops@example.com"))!;
      const org = (await s.orgs.listFor(u.id))[0]!;
      const p = await s.projects.create(cliCtx(u.id), org.id, "web", null);
      await s.secrets.set(cliCtx(u.id), { kind: "project", id: p.id }, org.id, "API_KEY", "value-before-rotation");
      return p.id;
    });
    const oldKey = readFileSync(path.join(dir, "master.key"), "utf8").trim();
    copyFileSync(path.join(dir, "slipway.db"), path.join(dir, "before.db"));

    const rotated = slipway(dir, ["admin", "rotate-master-key"]);
    expect(rotated.stderr).toBe("");
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toMatch(/rewrapped \d+ data keys/);
    const newKey = readFileSync(path.join(dir, "master.key"), "utf8").trim();
    expect(newKey).not.toBe(oldKey);
    expect(statSync(path.join(dir, "master.key")).mode & 0o777).toBe(0o600);

    await withServices(dir, async (s) => {
      expect((await s.secrets.reveal(s.store.db, { kind: "project", id: projectId })).get("API_KEY")).toBe("value-before-rotation");
    });
    // The old key, given explicitly, no longer opens the rotated database.
    await expect(withServices(dir, async (s) => s.secrets.reveal(s.store.db, { kind: "project", id: projectId }), { SLIPWAY_MASTER_KEY: oldKey })).rejects.toThrow(/master key/);
    // Control: the old key does open the copy taken before rotation, so the refusal above is the rotation's doing.
    const before = new Database(path.join(dir, "before.db"), { readonly: true });
    const wrapped = before.prepare("select kek_id from data_keys where owner_kind = 'project'").get() as { kek_id: string };
    before.close();
    expect(wrapped.kek_id).toBe(parseMasterKey(oldKey).id);

    const verify = slipway(dir, ["admin", "audit", "verify"]);
    expect(verify.code).toBe(0);
  });

  it("refuses to rotate while a server uses the data dir", () => {
    const dir = dataDir();
    expect(slipway(dir, ["admin", "create-user", "--email", "a@example.com"], `${PASSWORD}\n`).code).toBe(0);
    writeFileSync(path.join(dir, "server.pid"), `${process.pid}\n`);
    const res = slipway(dir, ["admin", "rotate-master-key"]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/server \(pid \d+\) is using .*stop it first/);
  });
});

describe("the data dir lock", () => {
  it("keeps every command away from a key rotation in progress, and admin commands beside a server", () => {
    const dir = dataDir();
    expect(slipway(dir, ["admin", "create-user", "--email", "a@example.com"], `${PASSWORD}\n`).code).toBe(0);
    writeFileSync(path.join(dir, "server.pid"), `${process.pid} rotate-master-key\n`);
    for (const args of [["admin", "audit", "verify"], ["admin", "create-user", "--email", "b@example.com"], ["serve", "--port", "0"]]) {
      const res = slipway(dir, args, `${PASSWORD}\n`);
      expect(res.code, args.join(" ")).toBe(2);
      expect(res.stderr).toMatch(/rotate-master-key \(pid \d+\) is using/);
    }
    // A live server is different: admin commands run beside it.
    writeFileSync(path.join(dir, "server.pid"), `${process.pid} serve\n`);
    expect(slipway(dir, ["admin", "audit", "verify"]).code).toBe(0);
    expect(slipway(dir, ["admin", "create-user", "--email", "b@example.com"], `${PASSWORD}\n`).code).toBe(0);
    // A lock left by a dead process is taken over.
    writeFileSync(path.join(dir, "server.pid"), `999999999 rotate-master-key\n`);
    expect(slipway(dir, ["admin", "audit", "verify"]).code).toBe(0);
  });

  it("refuses to verify or rotate a data dir that holds no Slipway database", () => {
    const dir = dataDir();
    for (const args of [["admin", "audit", "verify"], ["admin", "rotate-master-key"]]) {
      const res = slipway(path.join(dir, "typo"), args);
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(/no Slipway database in/);
    }
  });
});

describe("slipway admin audit verify", () => {
  async function dirWithHistory(): Promise<string> {
    const dir = dataDir();
    expect(slipway(dir, ["admin", "create-user", "--email", "ops@example.com", "--org", "acme"], `${PASSWORD}\n`).code).toBe(0);
    await withServices(dir, async (s) => {
      const u = (await s.users.findByEmail(s.store.db, "ops@example.com"))!;
      const org = (await s.orgs.listFor(u.id))[0]!;
      for (const name of ["a", "b", "c"]) await s.projects.create(cliCtx(u.id), org.id, name, null);
    });
    return dir;
  }

  function tamper(dir: string, sql: string) {
    const db = new Database(path.join(dir, "slipway.db"));
    db.exec(sql);
    db.close();
  }

  it("P25: reports an intact chain", async () => {
    const dir = await dirWithHistory();
    const res = slipway(dir, ["admin", "audit", "verify"]);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/audit log intact: 5 rows verified/);
  });

  it("P25: names an edited row", async () => {
    const dir = await dirWithHistory();
    tamper(dir, "update audit_log set actor = 'someone-else' where seq = 3");
    const res = slipway(dir, ["admin", "audit", "verify"]);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/row 3 .*changed/);
  });

  it("P25: names a deleted row", async () => {
    const dir = await dirWithHistory();
    tamper(dir, "delete from audit_log where seq = 2");
    const res = slipway(dir, ["admin", "audit", "verify"]);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/row 2 before row 3 were deleted|rows? 2.* deleted/);
  });

  it("P25: names reordered rows", async () => {
    const dir = await dirWithHistory();
    // Swap the sequence numbers of rows 3 and 4: each row is intact, their order is not.
    tamper(dir, "update audit_log set seq = -1 where seq = 3; update audit_log set seq = 3 where seq = 4; update audit_log set seq = 4 where seq = -1;");
    const res = slipway(dir, ["admin", "audit", "verify"]);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/row 3/);
  });
});
