import { afterAll, beforeAll, expect, it } from "vitest";
import { createUser, signIn, startHarness, tokenClient, type Harness } from "./helpers/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

it("refuses repository URLs that carry a password or token, which would be stored and shown in the clear", async () => {
  await createUser(h, "url@example.com");
  const c = await signIn(h, "url@example.com");
  for (const url of ["https://user:ghp_secret@github.com/acme/web.git", "ssh://git:pw@git.example.com/web.git"]) {
    const res = await c.post("/api/v1/projects", { name: `p${url.length}`, repositoryUrl: url });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.message).toMatch(/password or token/);
  }
  for (const url of ["https://github.com/acme/web.git", "git@github.com:acme/web.git", "ssh://git@git.example.com:2222/web.git"]) {
    expect((await c.post("/api/v1/projects", { name: `ok${url.length}`, repositoryUrl: url })).statusCode).toBe(201);
  }
});

it("makes a personal organization for a first project only for a caller allowed to create organizations", async () => {
  await createUser(h, "solo@example.com");
  const c = await signIn(h, "solo@example.com");
  const narrow = await tokenClient(h, c, ["projects:write"]);
  const refused = await narrow.post("/api/v1/projects", { name: "first" });
  expect(refused.statusCode).toBe(400);
  expect(refused.json().error.code).toBe("organization_required");
  const created = await c.post("/api/v1/projects", { name: "first" });
  expect(created.statusCode).toBe(201);
  expect((await c.get("/api/v1/orgs")).json().organizations).toMatchObject([{ id: created.json().organization, role: "owner" }]);
});
