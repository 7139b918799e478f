import { appendFileSync } from "node:fs";
import { createHmac, randomUUID } from "node:crypto";
import path from "node:path";
import { chromium, type Page } from "playwright-core";
import { CHROMIUM, SCREENSHOTS } from "./browser.js";
import { withCloneServer } from "./clone-runner.js";
import { AUTHORIZED_KEY_OPTIONS, pushCommit } from "./git-server.js";
import { mailedToken, totpCode, type Harness } from "./harness.js";

// The entry point of a process run inside the test's "runner" network namespace: a real Slipway
// server and Runner (see withCloneServer), a plain git server over SSH in the "services"
// namespace, and Chromium. A new user goes the whole way in the browser (issue 6's journey).

export interface JourneyInput {
  repositoryUrl: string;
  authorizedKeys: string;
  bare: string;
  ownerUid: number;
}

export interface JourneyOutput {
  twoFactorAsked: boolean;
  pushed: string;
  firstBuild: { status: string; log: string; commit: string };
  secretBuild: { status: string; log: string };
  secretInPage: boolean;
  contractor: { assigned: boolean; otherRefused: string; dashboard: string[] };
  problems: string[];
}

export const SECRET = "journey-secret-value-5150";
const PASSWORD = "a long enough password";

async function signUpAndIn(page: Page, h: Harness, email: string, name: string): Promise<void> {
  await page.goto("/sign-up");
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByText("Check your email").waitFor();
  await page.goto(`/verify-email#token=${await mailedToken(h, email, "verify-email")}`);
  await page.getByText("Your address is confirmed").waitFor();
  await signInWith(page, email);
}

async function signInWith(page: Page, email: string, totpUri?: string): Promise<void> {
  await page.goto("/sign-in");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  if (totpUri) {
    await page.getByLabel("Two-factor code").fill(totpCode(totpUri, 1));
    await page.getByRole("button", { name: "Sign in" }).click();
  }
  await page.getByRole("heading", { name: "Projects", level: 1 }).waitFor();
}

/** The build page's final status and the log text shown, once the build has ended. */
async function watchBuild(page: Page): Promise<{ status: string; log: string }> {
  const status = page.locator("h1 .status");
  await status.filter({ hasText: /^(success|failed|error|canceled)$/ }).waitFor({ timeout: 120_000 });
  // The log ends with the job: wait until the stream said so (no "(live)" marker).
  await page.locator(".log-head", { hasNotText: "(live)" }).waitFor();
  const log = (await page.locator(".log-line .text").allTextContents()).join("\n");
  return { status: (await status.textContent()) ?? "", log };
}

export const main = (input: JourneyInput): Promise<JourneyOutput> =>
  withCloneServer(
    async ({ h }) => {
      const base = h.services.publicUrl();
      const browser = await chromium.launch({ executablePath: CHROMIUM, chromiumSandbox: false });
      const problems: string[] = [];
      try {
        const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 860 } });
        const page = await context.newPage();
        page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
        const shot = (name: string) => page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });

        // Sign up, then turn on two-factor and sign in again with it.
        await signUpAndIn(page, h, "ada@example.com", "Ada");
        await page.getByRole("link", { name: "Account" }).click();
        await page.getByLabel("Your password").fill(PASSWORD);
        await page.getByRole("button", { name: "Set up two-factor" }).click();
        const totpUri = await page.getByLabel("Setup link").inputValue();
        await page.getByLabel("Code the app shows").fill(totpCode(totpUri));
        await page.getByRole("button", { name: "Turn on two-factor" }).click();
        await page.getByLabel("I have saved these recovery codes").check();
        await page.getByRole("button", { name: "Done" }).click();
        await page.getByRole("button", { name: "Sign out" }).click();
        await page.waitForURL(/\/sign-in/);
        await page.getByLabel("Email").fill("ada@example.com");
        await page.getByLabel("Password").fill(PASSWORD);
        await page.getByRole("button", { name: "Sign in" }).click();
        const twoFactorAsked = await page
          .getByLabel("Two-factor code")
          .waitFor({ timeout: 10_000 })
          .then(() => true, () => false);
        await signInWith(page, "ada@example.com", totpUri);

        // A project from the plain git URL; its deploy key goes to the git server, as its operator would add it.
        await page.getByRole("link", { name: "Create your first project" }).click();
        await page.getByLabel("Project name").fill("app");
        await page.getByLabel("Repository URL").fill(input.repositoryUrl);
        await page.getByRole("button", { name: "Create project" }).click();
        appendFileSync(input.authorizedKeys, `${AUTHORIZED_KEY_OPTIONS} ${await page.getByLabel("Deploy key").textContent()}\n`);
        await page.getByRole("link", { name: "Go to the project" }).click();
        await page.waitForURL(/\/projects\/prj_[^/]+$/);
        const projectUrl = page.url();

        // The webhook secret for the git server's post-receive hook, shown once.
        await page.getByRole("link", { name: "Settings" }).click();
        // Asked, then confirmed: a new secret stops the old one.
        await page.getByRole("button", { name: "Make a new secret" }).click();
        await page.getByRole("button", { name: "Make a new secret" }).click();
        const secret = await page.getByLabel("Webhook secret").inputValue();
        const hookUrl = `${base}/api/v1/hooks/${new URL(projectUrl).pathname.split("/").at(-1)}`;

        // A push, and the post-receive hook's signed delivery.
        const pushed = pushCommit(input.bare, input.ownerUid, "version", "42\n", "version 42");
        const body = JSON.stringify({ ref: "refs/heads/main", commit: pushed, message: "version 42" });
        const sig = createHmac("sha256", secret).update(body).digest("hex");
        const delivered = await fetch(hookUrl, { method: "POST", headers: { "content-type": "application/json", "x-slipway-signature": `sha256=${sig}`, "x-slipway-delivery": randomUUID() }, body });
        if (delivered.status >= 300) throw new Error(`the hook was refused: ${delivered.status} ${await delivered.text()}`);

        // The build appears on the project page; its log is watched live to the end.
        await page.goto(projectUrl);
        await page.getByRole("link", { name: "#1" }).click();
        await page.locator(".log-line").first().waitFor({ timeout: 120_000 });
        await shot("journey-build-live");
        const first = await watchBuild(page);
        const commit = (await page.locator("dt:text-is('Commit') + dd").textContent()) ?? "";
        await shot("journey-build-done");

        // A secret, set in the settings, is masked in the next build's log.
        await page.goto(`${projectUrl}/settings`);
        await page.getByLabel("Name", { exact: true }).fill("API_TOKEN");
        await page.getByLabel("Value", { exact: true }).fill(SECRET);
        await page.getByRole("button", { name: "Save secret" }).click();
        await page.getByRole("cell", { name: "API_TOKEN", exact: true }).waitFor();
        const secretInPage = (await page.content()).includes(SECRET);
        await page.goto(projectUrl);
        await page.getByLabel("Branch to build").fill("main");
        await page.getByRole("button", { name: "Run build" }).click();
        await page.waitForURL(/\/builds\//);
        const secretBuild = await watchBuild(page);
        await shot("journey-build-masked");

        // A second project, and a contractor invited to the organization and assigned to the first only.
        await page.goto("/projects/new");
        await page.getByLabel("Project name").fill("other");
        await page.getByLabel("Repository URL").fill(input.repositoryUrl);
        await page.getByRole("button", { name: "Create project" }).click();
        await page.getByRole("link", { name: "Go to the project" }).click();
        await page.waitForURL((url) => /^\/projects\/prj_[^/]+$/.test(url.pathname) && url.href !== projectUrl);
        const otherUrl = page.url();
        await page.getByRole("link", { name: "Organizations" }).click();
        await page.getByRole("main").getByRole("link").first().click();
        await page.getByLabel("Email", { exact: true }).fill("carl@example.com");
        await page.getByLabel("Role", { exact: true }).selectOption("contractor");
        await page.getByRole("button", { name: "Send invitation" }).click();
        await page.getByText("Invitation sent to carl@example.com").waitFor();

        const carlContext = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 860 } });
        const carl = await carlContext.newPage();
        carl.on("pageerror", (err) => problems.push(`page error (contractor): ${err.message}`));
        await signUpAndIn(carl, h, "carl@example.com", "Carl");
        await carl.goto(`/accept-invitation#token=${await mailedToken(h, "carl@example.com", "accept-invitation")}`);
        await carl.getByRole("button", { name: "Accept the invitation" }).click();
        await carl.getByText("You joined").waitFor();

        await page.goto(`${projectUrl}/settings`);
        await page.getByRole("button", { name: "Assign" }).click();
        await page.getByRole("button", { name: "Remove Carl" }).waitFor();

        await carl.goto("/");
        await carl.getByRole("link", { name: "app", exact: true }).waitFor();
        const dashboard = await carl.locator(".card h2").allTextContents();
        await carl.goto(projectUrl);
        const assigned = await carl
          .getByRole("heading", { name: "app", level: 1 })
          .waitFor({ timeout: 10_000 })
          .then(() => true, () => false);
        await carl.goto(otherUrl);
        const otherRefused = (await carl.getByRole("alert").first().textContent({ timeout: 10_000 })) ?? "";
        await carl.screenshot({ path: path.join(SCREENSHOTS, "journey-contractor-refused.png"), fullPage: true });
        return { twoFactorAsked, pushed, firstBuild: { ...first, commit }, secretBuild, secretInPage, contractor: { assigned, otherRefused, dashboard }, problems };
      } finally {
        await browser.close();
      }
    },
    { settings: { signup: true } },
  );
