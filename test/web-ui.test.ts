import { get } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanPage, screenshot, startWebLab, type WebLab } from "./helpers/browser.js";
import { mailedToken } from "./helpers/harness.js";

// The browser app in Debian's Chromium against a real server: a new user signs up, confirms the
// address from the mail, signs in, creates a project from a git URL and runs a build.

let lab: WebLab;

beforeAll(async () => {
  lab = await startWebLab();
});
afterAll(() => lab?.close());

/** A GET of the path exactly as written: fetch() would resolve ".." and "%2e%2e" segments before sending. */
const rawGet = (path: string) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    get(`${lab.base}${path}`, { path }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    }).on("error", reject);
  });

describe("the web app", () => {
  it("serves the app for page paths with a strict CSP, its assets for good, and JSON 404s under /api", async () => {
    const page = await fetch(`${lab.base}/projects/anything`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(page.headers.get("cache-control")).toBe("no-cache");
    const csp = page.headers.get("content-security-policy")!;
    expect(csp).toMatch(/script-src 'self'(;|$)/);
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    const html = await page.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)![1]!;
    const js = await fetch(`${lab.base}${asset}`);
    expect(js.status).toBe(200);
    expect(js.headers.get("cache-control")).toMatch(/immutable/);
    for (const missing of ["/assets/nothing.js", "/assets/..%2Fsrc%2Fhttp%2Fapp.js", "/assets/..", "/assets/%2e%2e", "/assets/.hidden", "/api/v1/nothing", "/api"]) {
      const res = await rawGet(missing);
      expect(res.status, missing).toBe(404);
      expect((JSON.parse(res.body) as { error: { code: string } }).error.code).toBe("not_found");
    }
  });

  it("takes a new user from sign-up to a first build", async () => {
    const { page, problems } = await lab.newPage();
    await page.goto("/");
    await page.waitForURL(/\/sign-in\?next=%2F$/);
    await screenshot(page, "sign-in");
    await page.getByRole("link", { name: "Create an account" }).click();
    await page.getByLabel("Name").fill("Ada Lovelace");
    await page.getByLabel("Email").fill("ada@example.com");
    await page.getByLabel("Password").fill("a long enough password");
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByText("Check your email").waitFor();

    await page.goto(`/verify-email#token=${await mailedToken(lab.h, "ada@example.com", "verify-email")}`);
    await page.getByText("Your address is confirmed").waitFor();
    await page.getByRole("main").getByRole("link", { name: "Sign in" }).click();
    await page.getByLabel("Email").fill("ada@example.com");
    await page.getByLabel("Password").fill("wrong password!");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/email or password/i);
    await page.getByLabel("Password").fill("a long enough password");
    await page.getByRole("button", { name: "Sign in" }).click();

    await page.getByRole("link", { name: "Create your first project" }).click();
    await screenshot(page, "dashboard-empty");
    await page.getByLabel("Project name").fill("webapp");
    await page.getByLabel("Repository URL").fill("ssh://git@git.example.com/team/webapp.git");
    await page.getByRole("button", { name: "Create project" }).click();
    const key = await page.getByLabel("Deploy key").textContent();
    expect(key).toMatch(/^ssh-ed25519 /);
    await screenshot(page, "project-created");
    await page.getByRole("link", { name: "Go to the project" }).click();
    await page.getByText("No builds yet").waitFor();

    await page.getByLabel("Branch to build").fill("main");
    await page.getByRole("button", { name: "Run build" }).click();
    await page.waitForURL(/\/builds\/[^/]+$/);
    await page.getByRole("heading", { name: /Build #1/ }).waitFor();
    await expect.poll(() => page.locator("h1 .status").textContent()).toBe("queued");
    await screenshot(page, "build-queued");
    await page.getByRole("button", { name: "Cancel" }).click();
    await expect.poll(() => page.locator("h1 .status").textContent()).toBe("canceled");

    await page.getByRole("link", { name: "webapp" }).click();
    await page.getByRole("cell", { name: "main" }).waitFor();
    await screenshot(page, "project-builds");
    await page.getByRole("link", { name: "Slipway" }).click();
    await page.getByRole("list", { name: "Last build per branch of webapp" }).waitFor();
    await screenshot(page, "dashboard");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(/\/sign-in/);
    expectCleanPage(problems);
  });
});
