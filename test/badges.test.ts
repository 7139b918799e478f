import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { anonymous, Client, createUser, signIn, startHarness, type Harness } from "./helpers/harness.js";

// Status badges: an SVG for README files, opened by a token in its link (a README cannot send a
// header), which regenerating replaces.

let h: Harness;
let owner: Client;
let project: string;
let other: string;

const finish = async (branch: string, status: "success" | "failed", pullRequest?: number) => {
  const build = await h.services.builds.create(project, { branch, trigger: "webhook", ...(pullRequest !== undefined && { pullRequest, fromFork: true }) });
  await h.services.store.db.updateTable("builds").set({ status }).where("id", "=", build.id).execute();
};
const badge = (url: string) => anonymous(h).get(new URL(url).pathname + new URL(url).search);
const linkOf = async (id = project) => (await owner.get(`/api/v1/projects/${id}/badge`)).json() as { imageUrl: string; markdown: string };

beforeAll(async () => {
  h = await startHarness();
  h.services.setPublicUrl("https://ci.example.com");
  await createUser(h, "owner@example.com");
  owner = await signIn(h, "owner@example.com");
  project = (await owner.post("/api/v1/projects", { name: "app" })).json().id;
  other = (await owner.post("/api/v1/projects", { name: "other" })).json().id;
});
afterAll(() => h?.close());

describe("status badges", () => {
  it("give members a link with a token, and a README snippet", async () => {
    const link = await linkOf();
    expect(link.imageUrl).toMatch(new RegExp(`^https://ci\\.example\\.com/badge/${project}\\.svg\\?token=[A-Za-z0-9_-]{32}$`));
    expect(link.markdown).toBe(`[![build](${link.imageUrl})](https://ci.example.com/projects/${project})`);
  });

  it("show the latest build's status, of a branch when asked, as an uncached SVG", async () => {
    const { imageUrl } = await linkOf();
    const empty = await badge(imageUrl);
    expect(empty.statusCode).toBe(200);
    expect(empty.headers["content-type"]).toBe("image/svg+xml; charset=utf-8");
    expect(empty.headers["cache-control"]).toBe("no-cache, max-age=0");
    expect(empty.body).toContain("build: no builds");
    await finish("main", "success");
    await finish("dev", "failed");
    expect((await badge(imageUrl)).body).toContain("build: failing");
    expect((await badge(`${imageUrl}&branch=main`)).body).toContain("build: passing");
    expect((await badge(`${imageUrl}&branch=dev`)).body).toContain("build: failing");
    expect((await badge(`${imageUrl}&branch=nowhere`)).body).toContain("build: no builds");
    // Nothing of the project but its status: not its name.
    expect((await badge(imageUrl)).body).not.toContain("app");
  });

  it("leave out builds of pull requests, whose branch a fork names as it likes", async () => {
    const { imageUrl } = await linkOf();
    await finish("main", "success");
    await finish("main", "failed", 7);
    expect((await badge(`${imageUrl}&branch=main`)).body).toContain("build: passing");
    expect((await badge(imageUrl)).body).toContain("build: passing");
    await finish("feature", "failed", 8);
    expect((await badge(`${imageUrl}&branch=feature`)).body).toContain("build: no builds");
  });

  it("ignore query parameters of their own (cache busters), and are not limited per address (image proxies share theirs)", async () => {
    const { imageUrl } = await linkOf();
    const busted = await badge(`${imageUrl}&branch=main&v=2&_=${Date.now()}`);
    expect(busted.statusCode, busted.body).toBe(200);
    expect(busted.body).toContain("build: passing");
    expect((await badge(`${imageUrl}&branch=${"x".repeat(300)}`)).statusCode).toBe(400);
    const loads = await Promise.all(Array.from({ length: 700 }, () => badge(imageUrl)));
    expect(new Set(loads.map((r) => r.statusCode))).toEqual(new Set([200]));
  });

  it("refuse a wrong token, another project's token and an unknown project alike", async () => {
    const { imageUrl } = await linkOf();
    const token = new URL(imageUrl).searchParams.get("token")!;
    const otherToken = new URL((await linkOf(other)).imageUrl).searchParams.get("token")!;
    const refusals = [
      `/badge/${project}.svg?token=${"A".repeat(32)}`,
      `/badge/${project}.svg?token=${otherToken}`,
      `/badge/${project}.svg?token=${token.slice(0, -1)}`,
      `/badge/prj_unknown.svg?token=${token}`,
      `/badge/${project}.png?token=${token}`,
    ];
    const bodies = new Set<string>();
    for (const url of refusals) {
      const res = await anonymous(h).get(url);
      expect(res.statusCode, url).toBe(404);
      bodies.add(res.body);
    }
    expect(bodies.size).toBe(1);
    expect((await anonymous(h).get(`/badge/${project}.svg`)).statusCode).toBe(400);
  });

  it("regenerating kills every earlier link and is audited (who may: see the authorization matrix)", async () => {
    const before = (await linkOf()).imageUrl;
    const res = await owner.post(`/api/v1/projects/${project}/badge`);
    expect(res.statusCode).toBe(200);
    expect(res.json().imageUrl).not.toBe(before);
    expect((await badge(before)).statusCode).toBe(404);
    expect((await badge(res.json().imageUrl)).statusCode).toBe(200);
    expect((await linkOf()).imageUrl).toBe(res.json().imageUrl);
    const audit = await h.services.store.db.selectFrom("audit_log").select("target").where("action", "=", "project.badge_regenerated").execute();
    expect(audit).toEqual([{ target: project }]);
  });
});
