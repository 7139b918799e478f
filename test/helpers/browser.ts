import { existsSync, mkdirSync } from "node:fs";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from "playwright-core";
import { expect } from "vitest";
import { WEB_ROOT } from "../../src/http/routes/web.js";
import type { SettingsInput } from "../../src/config/settings.js";
import { startHarness, type Harness } from "./harness.js";

// A real Slipway server on loopback and Debian's Chromium driven by Playwright: the browser app
// as users get it, from the same origin as the API, under its real CSP.

export const CHROMIUM = "/usr/bin/chromium";
export const SCREENSHOTS = path.resolve("test/screenshots");

export interface WebLab {
  h: Harness;
  base: string;
  browser: Browser;
  /** A fresh browser profile (cookies, storage) whose page records CSP violations and page errors. */
  newPage(options?: BrowserContextOptions): Promise<{ context: BrowserContext; page: Page; problems: string[] }>;
  close(): Promise<void>;
}

export async function startWebLab(settings: SettingsInput = {}): Promise<WebLab> {
  if (!existsSync(path.join(WEB_ROOT, "index.html"))) throw new Error("the web app is not built: run `npm run build` first");
  const h = await startHarness({ signup: true, ...settings });
  await h.app.listen({ host: "127.0.0.1", port: 0 });
  const base = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  h.services.setPublicUrl(base);
  // Chromium's own sandbox needs user namespaces it cannot get as root; the test browses only this server.
  const browser = await chromium.launch({ executablePath: CHROMIUM, chromiumSandbox: process.getuid?.() !== 0 });
  mkdirSync(SCREENSHOTS, { recursive: true });
  return {
    h,
    base,
    browser,
    async newPage(options = {}) {
      const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 860 }, ...options });
      const page = await context.newPage();
      const problems: string[] = [];
      page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
      page.on("console", (msg) => {
        if (msg.type() === "error" && !/status of 4\d\d/.test(msg.text())) problems.push(`console: ${msg.text()}`);
      });
      await page.addInitScript({ content: 'document.addEventListener("securitypolicyviolation", (e) => console.error("CSP violation: " + e.violatedDirective + " " + e.blockedURI));' });
      return { context, page, problems };
    },
    async close() {
      await browser.close();
      await h.close();
    },
  };
}

/** Saves a screenshot of the whole page as test/screenshots/<name>.png, to look at. */
export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Nothing went wrong in the page: no script error, no CSP violation, no failed request but expected 4xx. */
export function expectCleanPage(problems: string[]): void {
  expect(problems).toEqual([]);
}
