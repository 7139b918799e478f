import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { anonymous, createUser, signIn, startHarness, tokenClient, type Client, type Harness } from "./helpers/harness.js";
import { startPostgres, type PostgresServer } from "./helpers/postgres.js";

// The same migrations and code as on SQLite, end to end through the HTTP app, on PostgreSQL.
describe("the API on PostgreSQL", () => {
  let pg_: PostgresServer;
  let h: Harness;
  let browser: Client;

  beforeAll(async () => {
    pg_ = await startPostgres();
    h = await startHarness({ databaseUrl: pg_.url });
    await createUser(h, "ada@example.com");
    browser = await signIn(h, "ada@example.com");
  });
  afterAll(async () => {
    await h?.close();
    await pg_?.stop();
  });

  it("answers a write that loses a race for a unique name with 409, not 500", async () => {
    const orgId = (await browser.post("/api/v1/orgs", { name: "racers" })).json().id as string;
    // Another writer holds an uncommitted row with the name: the API's own check cannot see it,
    // its insert waits on the unique index and fails once that writer commits.
    const rival = new pg.Client({ connectionString: pg_.url });
    await rival.connect();
    try {
      await rival.query("begin");
      await rival.query("insert into projects (id, org_id, name, repository_url, created_at) values ('prj_rival', $1, 'contested', null, now()::text)", [orgId]);
      const pending = browser.post("/api/v1/projects", { name: "contested", organization: orgId });
      await new Promise((r) => setTimeout(r, 300));
      await rival.query("commit");
      const res = await pending;
      expect(res.statusCode).toBe(409);
      expect(res.json().error.code).toBe("conflict");
    } finally {
      await rival.end();
    }
  });

  it("runs on PostgreSQL and reports ready", async () => {
    expect(h.services.store.engine).toBe("postgres");
    const res = await anonymous(h).get("/readyz");
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: "ready" });
  });

  it("creates an organization and a project, keeps secrets write-only and sealed, and deletes the project", async () => {
    const org = await browser.post("/api/v1/orgs", { name: "acme" });
    expect(org.statusCode).toBe(201);
    const orgId = org.json().id as string;
    expect((await browser.get("/api/v1/orgs")).json().organizations.map((o: { id: string }) => o.id)).toContain(orgId);

    const api = await tokenClient(h, browser, ["projects:read", "projects:write", "secrets:read", "secrets:write"]);
    const created = await api.post("/api/v1/projects", { name: "web", organization: orgId });
    expect(created.statusCode).toBe(201);
    const projectId = created.json().id as string;
    expect((await api.get(`/api/v1/projects/${projectId}`)).json()).toMatchObject({ id: projectId, organization: orgId, name: "web" });

    const value = "s3cr3t-value-on-postgres";
    expect((await api.put(`/api/v1/projects/${projectId}/secrets/DEPLOY_KEY`, { value })).statusCode).toBe(201);
    expect((await api.put(`/api/v1/projects/${projectId}/secrets/DEPLOY_KEY`, { value: value + "2" })).statusCode).toBe(204);
    expect((await api.put(`/api/v1/projects/${projectId}/secrets/OTHER`, { value })).statusCode).toBe(201);
    const list = await api.get(`/api/v1/projects/${projectId}/secrets`);
    expect(list.statusCode).toBe(200);
    expect(list.json().secrets.map((s: { name: string }) => s.name)).toEqual(["DEPLOY_KEY", "OTHER"]);
    expect(list.body).not.toContain(value);

    // In the database the values are ciphertext, which the secret box (and nothing else) opens.
    const db = h.services.store.db;
    const rows = await db.selectFrom("secrets").select("value").where("owner_id", "=", projectId).execute();
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(row.value.startsWith("sb1:")).toBe(true);
      expect(row.value).not.toContain(value);
    }
    const owner = { kind: "project" as const, id: projectId };
    expect(await h.services.secrets.reveal(db, owner)).toEqual(new Map([["DEPLOY_KEY", value + "2"], ["OTHER", value]]));

    expect((await api.delete(`/api/v1/projects/${projectId}`)).statusCode).toBe(204);
    expect((await api.get(`/api/v1/projects/${projectId}`)).statusCode).toBe(404);
    expect(await db.selectFrom("data_keys").select("owner_id").where("owner_id", "=", projectId).execute()).toEqual([]);
    expect(await db.selectFrom("secrets").select("name").where("owner_id", "=", projectId).execute()).toEqual([]);

    expect(await h.services.audit.verify()).toMatchObject({ problems: [] });
  });
});
