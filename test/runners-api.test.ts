import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tokenHash } from "../src/crypto/secret-box.js";
import { anonymous, Client, createUser, PASSWORD, signIn, startHarness, tokenClient, type Harness } from "./helpers/harness.js";

// The instance's runners, managed from the API by instance administrators: the same registration
// as `slipway admin create-runner`, a token shown once, and a removal that takes effect at once.
// Registering asks for the admin's password again: a runner token reads every organization's secrets.

let h: Harness;
let admin: Client;
let owner: Client;

beforeAll(async () => {
  h = await startHarness();
  await createUser(h, "root@example.com", { admin: true });
  await createUser(h, "owner@example.com");
  admin = await signIn(h, "root@example.com");
  owner = await signIn(h, "owner@example.com");
  expect((await owner.post("/api/v1/orgs", { name: "Acme" })).statusCode).toBe(201);
});
afterAll(() => h?.close());

const listed = async () => {
  const res = await admin.get("/api/v1/runners");
  expect(res.statusCode, res.body).toBe(200);
  return { body: res.body, runners: res.json().runners as Array<{ id: string; name: string; createdAt: string; lastSeenAt: string | null; online: boolean }> };
};
const register = (name: string, currentPassword = PASSWORD, client = admin) => client.post("/api/v1/runners", { name, currentPassword });
const auditOf = (action: string) => h.services.store.db.selectFrom("audit_log").selectAll().where("action", "=", action).execute();

describe("runners API", () => {
  it("an admin registers a runner (token shown once), lists it without its token, and its token leases", async () => {
    const created = await register("  build-01 ");
    expect(created.statusCode, created.body).toBe(201);
    const { runner, token } = created.json() as { runner: { id: string; name: string; lastSeenAt: string | null; online: boolean }; token: string };
    expect(token).toMatch(/^slr_/);
    expect(runner).toMatchObject({ name: "build-01", lastSeenAt: null, online: false });

    const before = await listed();
    expect(before.runners).toContainEqual({ ...runner, createdAt: expect.any(String) });
    expect(before.body).not.toContain(token);
    expect(before.body).not.toContain(tokenHash(token));

    const asRunner = new Client(h.app, { bearer: token });
    expect((await asRunner.post("/api/v1/runner/lease", { waitMs: 0 })).statusCode).toBe(204);
    const after = await listed();
    expect(after.runners.find((r) => r.id === runner.id)).toMatchObject({ online: true, lastSeenAt: expect.any(String) });
    expect(after.body).not.toContain(token);
    expect(after.body).not.toContain(tokenHash(token));

    const [entry] = (await auditOf("runner.registered")).filter((e) => e.target === runner.id);
    expect(entry).toMatchObject({ actor: "root@example.com", org_id: null });
    expect(JSON.parse(entry!.details)).toEqual({ name: "build-01" });
    expect(entry!.details).not.toContain(token);
  });

  it("removing a runner stops its token at once, is audited, and a second removal is 404", async () => {
    const { runner, token } = (await register("doomed")).json() as { runner: { id: string }; token: string };
    const asRunner = new Client(h.app, { bearer: token });
    expect((await asRunner.post("/api/v1/runner/lease", { waitMs: 0 })).statusCode).toBe(204);

    expect((await admin.delete(`/api/v1/runners/${runner.id}`)).statusCode).toBe(204);
    const refused = await asRunner.post("/api/v1/runner/lease", { waitMs: 0 });
    expect(refused.statusCode).toBe(401);
    expect(refused.json().error.code).toBe("invalid_runner_token");
    expect((await listed()).runners.map((r) => r.id)).not.toContain(runner.id);
    expect(await auditOf("runner.removed")).toMatchObject([{ actor: "root@example.com", target: runner.id, details: JSON.stringify({ name: "doomed" }) }]);

    const again = await admin.delete(`/api/v1/runners/${runner.id}`);
    expect(again.statusCode).toBe(404);
    expect(again.json().error.code).toBe("not_found");
  });

  it("non-admins get 403, an admin's API token 403 session_required, anonymous 401; nothing is registered or removed", async () => {
    const { id: kept } = await h.services.runners.register("kept");
    const adminToken = await tokenClient(h, admin, ["orgs:read", "orgs:write", "projects:write"]);
    const count = async () => (await h.services.runners.list()).length;
    const before = await count();
    for (const [who, client, status, code] of [
      ["org owner", owner, 403, "forbidden"],
      ["admin's API token", adminToken, 403, "session_required"],
      ["anonymous", anonymous(h), 401, "unauthenticated"],
    ] as const) {
      for (const res of [await client.get("/api/v1/runners"), await register("sneaky", PASSWORD, client), await client.delete(`/api/v1/runners/${kept}`)]) {
        expect(res.statusCode, `${who}: ${res.body}`).toBe(status);
        expect(res.json().error.code, who).toBe(code);
        expect(res.body).not.toMatch(/slr_/);
      }
    }
    expect(await count()).toBe(before);
  });

  it("a name is required, trimmed and at most 100 characters", async () => {
    for (const name of ["", "   ", "x".repeat(101)]) expect((await register(name)).statusCode, JSON.stringify(name)).toBe(400);
    expect((await admin.post("/api/v1/runners", { name: "x", currentPassword: PASSWORD, extra: 1 })).statusCode).toBe(400);
  });

  it("needs the admin's password again: without it or with a wrong one nothing is registered, and wrong ones count towards the sign-in lock-out", async () => {
    await createUser(h, "root2@example.com", { admin: true });
    const root2 = await signIn(h, "root2@example.com");
    const count = async () => (await h.services.runners.list()).length;
    const before = await count();
    expect((await root2.post("/api/v1/runners", { name: "no-password" })).statusCode).toBe(400);
    const wrong = await register("wrong-password", "not the password", root2);
    expect(wrong.statusCode, wrong.body).toBe(403);
    expect(wrong.json().error).toMatchObject({ code: "invalid_credentials", message: "the current password is wrong" });
    expect(wrong.body).not.toMatch(/slr_/);
    // The fifth wrong password locks the account, as five wrong sign-ins would: even the right one waits now.
    for (let i = 0; i < 4; i++) expect((await register("wrong-password", "not the password", root2)).statusCode).toBe(403);
    const locked = await register("right-password", PASSWORD, root2);
    expect(locked.statusCode).toBe(429);
    expect(locked.json().error.code).toBe("too_many_attempts");
    expect((await anonymous(h).post("/api/v1/session", { email: "root2@example.com", password: PASSWORD })).statusCode).toBe(429);
    expect(await count()).toBe(before);
    expect(await auditOf("runner.registered")).not.toContainEqual(expect.objectContaining({ actor: "root2@example.com" }));
  });
});
