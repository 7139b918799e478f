import { afterAll, beforeAll, expect, it } from "vitest";
import { createUser, signIn, startHarness, type Harness } from "./helpers/harness.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

it("signs in and creates a project", async () => {
  await createUser(h, "a@example.com");
  const a = await signIn(h, "a@example.com");
  const res = await a.post("/api/v1/projects", { name: "web" });
  expect(res.statusCode).toBe(201);
  expect((await a.get(`/api/v1/projects/${res.json().id}`)).statusCode).toBe(200);
});
