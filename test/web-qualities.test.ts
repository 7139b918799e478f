import { readFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { AxeBuilder } from "@axe-core/playwright";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LeasedJob } from "../src/builds/builds.js";
import { WEB_ROOT } from "../src/http/routes/web.js";
import { expectCleanPage, screenshot, startWebLab, type WebLab } from "./helpers/browser.js";
import { Client, createUser, PASSWORD, signIn } from "./helpers/harness.js";

// What the browser app promises beyond its pages: nothing a user or a build wrote runs as code
// (P13 and XSS), a 10 MB log stays usable, the first load is small, and every page is accessible.

let lab: WebLab;
let owner: Client;
let runnerApi: Client;
let projectId: string;

const XSS_MESSAGE = `<img src=x onerror="window.__xss='message'">`;
const XSS_BRANCH = `x<img/src=x/onerror=window.__xss='branch'>`;
const XSS_LOG = `\x1b[31m<img src=x onerror="window.__xss='log'">\x1b[0m <script>window.__xss='script'</script>`;

/** A build whose only job this test holds as a runner, to write its log. */
async function heldBuild(body: Record<string, string>): Promise<{ buildId: string; jobId: string }> {
  const buildId = (await owner.post(`/api/v1/projects/${projectId}/builds`, body)).json().id as string;
  const { job } = (await runnerApi.post("/api/v1/runner/lease", { waitMs: 0 })).json() as { job: LeasedJob };
  expect(job.buildId).toBe(buildId);
  return { buildId, jobId: job.jobId };
}

async function writeLog(jobId: string, text: string | Buffer): Promise<void> {
  const bytes = Buffer.from(text);
  // Chunks as a runner sends them, each within the API's limit.
  for (let offset = 0; offset < bytes.length; offset += 384 * 1024) {
    const res = await runnerApi.post(`/api/v1/runner/jobs/${jobId}/log`, { offset, data: bytes.subarray(offset, offset + 384 * 1024).toString("base64") });
    expect(res.statusCode, res.body).toBeLessThan(300);
  }
}

async function signedInPage(): Promise<{ page: Page; problems: string[] }> {
  const { page, problems } = await lab.newPage();
  await page.goto("/sign-in");
  await page.getByLabel("Email").fill("owner@example.com");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Projects" }).waitFor();
  return { page, problems };
}

beforeAll(async () => {
  lab = await startWebLab();
  await createUser(lab.h, "owner@example.com");
  owner = await signIn(lab.h, "owner@example.com");
  projectId = (await owner.post("/api/v1/projects", { name: "qualities", repositoryUrl: "ssh://git@git.example.com/q.git" })).json().id;
  runnerApi = new Client(lab.h.app, { bearer: (await lab.h.services.runners.register("test runner")).token });
});
afterAll(() => lab?.close());

describe("the browser app's qualities", () => {
  it("P13: a commit message, a branch name and a log line full of HTML are shown as text, and nothing of them runs", async () => {
    const { jobId, buildId } = await heldBuild({ branch: XSS_BRANCH, message: XSS_MESSAGE });
    await writeLog(jobId, `${XSS_LOG}\nafter\n`);
    const { page, problems } = await signedInPage();
    await page.getByRole("cell", { name: XSS_MESSAGE }).waitFor();
    await page.getByRole("link", { name: "qualities", exact: true }).first().click();
    await page.getByRole("cell", { name: XSS_BRANCH }).waitFor();
    await page.goto(`/builds/${buildId}`);
    await page.getByText(`<img src=x onerror="window.__xss='log'">`).waitFor();
    await page.getByText("<script>window.__xss='script'</script>").waitFor();
    expect(await page.evaluate(() => (globalThis as { __xss?: string }).__xss)).toBeUndefined();
    expect(await page.locator("main img, main script").count()).toBe(0);
    // The ANSI colour became a class, not markup from the log.
    expect(await page.locator(".log-line .fg1").count()).toBe(1);
    await screenshot(page, "build-hostile-text");
    expectCleanPage(problems);
  });

  it("a 10 MB log loads, keeps only the lines in view in the page, follows to its end and finds a line", async () => {
    const { jobId, buildId } = await heldBuild({ branch: "big" });
    const lines = Array.from({ length: 160_000 }, (_, i) => `line ${i + 1}: \x1b[32mok\x1b[0m ${"x".repeat(48)}`);
    const log = `${lines.join("\n")}\n`;
    expect(log.length).toBeGreaterThan(10 * 1024 * 1024);
    await writeLog(jobId, log);
    expect((await runnerApi.post(`/api/v1/runner/jobs/${jobId}/finish`, { status: "success" })).statusCode).toBe(204);
    const { page, problems } = await signedInPage();
    const started = Date.now();
    await page.goto(`/builds/${buildId}`);
    // Follow mode brings the last line into view once all of it has arrived.
    await page.locator(".log-line .ln", { hasText: /^160000$/ }).waitFor({ timeout: 60_000 });
    console.log(`10 MB log (160,000 lines) loaded and followed to its end in ${Date.now() - started} ms`);
    expect(await page.locator(".log-line").count()).toBeLessThan(300);
    await page.getByLabel("Search the log").fill("line 4242:");
    await page.getByText("1 of 1").waitFor();
    await page.locator(".log-line.marked", { hasText: "line 4242:" }).waitFor();
    await screenshot(page, "build-big-log");
    expectCleanPage(problems);
  });

  it("loads under 250 KiB of gzipped JavaScript before the first page is shown", () => {
    const html = readFileSync(path.join(WEB_ROOT, "index.html"), "utf8");
    const entry = /src="\/assets\/([^"]+\.js)"/.exec(html)![1]!;
    // The entry and what it imports statically; pages are chunks of their own, loaded on visit.
    const seen = new Set<string>();
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const code = readFileSync(path.join(WEB_ROOT, "assets", file), "utf8");
      for (const m of code.matchAll(/\bimport\s*(?:[\w${}\s,*]+\s*from\s*)?["']\.\/([^"']+\.js)["']/g)) visit(m[1]!);
    };
    visit(entry);
    const gzipped = [...seen].reduce((sum, f) => sum + gzipSync(readFileSync(path.join(WEB_ROOT, "assets", f))).length, 0);
    console.log(`initial JavaScript: ${(gzipped / 1024).toFixed(1)} KiB gzipped in ${seen.size} file(s)`);
    expect(gzipped).toBeLessThan(250 * 1024);
  });

  it("signs in with the keyboard alone", async () => {
    const { page, problems } = await lab.newPage();
    await page.goto("/sign-in");
    // The email field has the focus when the page opens; Tab goes on to the password, Enter sends.
    await expect.poll(() => page.evaluate(() => (globalThis as unknown as { document: { activeElement: { getAttribute(n: string): string | null } } }).document.activeElement.getAttribute("type"))).toBe("email");
    await page.keyboard.type("owner@example.com");
    await page.keyboard.press("Tab");
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Projects", level: 1 }).waitFor();
    expectCleanPage(problems);
  });

  it("has no serious or critical accessibility problems on any page (axe-core)", async () => {
    const anon = await lab.newPage();
    const pages: Array<[Page, string]> = [];
    for (const url of ["/sign-in", "/sign-up", "/forgot-password", "/verify-email", "/reset-password"]) pages.push([anon.page, url]);
    const { page } = await signedInPage();
    const build = (await owner.get(`/api/v1/projects/${projectId}/builds?limit=1`)).json().builds[0].id as string;
    const orgId = (await owner.get("/api/v1/orgs")).json().organizations[0].id as string;
    for (const url of ["/", "/projects/new", `/projects/${projectId}`, `/projects/${projectId}/settings`, `/builds/${build}`, "/account", "/orgs", `/orgs/${orgId}`, "/accept-invitation", "/nowhere", "/projects/prj_missing"]) pages.push([page, url]);
    const found: string[] = [];
    for (const [p, url] of pages) {
      await p.goto(url);
      await p.getByRole("heading", { level: 1 }).first().waitFor();
      const result = await new AxeBuilder({ page: p }).analyze();
      for (const v of result.violations.filter((x) => x.impact === "serious" || x.impact === "critical")) found.push(`${url}: ${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
    }
    expect(found).toEqual([]);
  });
});
