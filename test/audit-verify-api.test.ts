import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createUser, signIn, startHarness, type Harness } from "./helpers/harness.js";

// GET /api/v1/orgs/:id/audit/verify walks the whole instance's log, and any user can make an
// organization to call it: the server walks at most once a minute for all of them.

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

/** A new user with an organization of their own, and their call to check its chain. */
async function checker(email: string) {
  await createUser(h, email);
  const client = await signIn(h, email);
  const org = (await client.post("/api/v1/orgs", { name: email })).json() as { id: string };
  return () => client.get(`/api/v1/orgs/${org.id}/audit/verify`);
}

describe("the audit chain check", () => {
  it("answers every organization from one walk for a minute, and says when that walk began", async () => {
    const ann = await checker("ann@example.com");
    const ben = await checker("ben@example.com");
    const first = await ann();
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toEqual({ verified: true, problem: null, checkedAt: expect.any(String) });
    expect(Date.now() - Date.parse(first.json().checkedAt)).toBeLessThan(60_000);

    // Not seen until the next walk: the answer is the log as it was at `checkedAt`.
    await h.services.store.db.updateTable("audit_log").set({ actor: "someone-else@example.com" }).where("seq", "=", 1).execute();
    for (const check of [ann, ben, ann]) expect((await check()).json()).toEqual(first.json());
    expect((await h.services.audit.verify()).problems).toHaveLength(1);
  });
});
