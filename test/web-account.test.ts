import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanPage, screenshot, startWebLab, type WebLab } from "./helpers/browser.js";
import { createUser, PASSWORD, totpCode } from "./helpers/harness.js";
import { GitHubSim } from "./helpers/scm-sim/github.js";

// The account page in Debian's Chromium against a real server: a user changes the password, turns
// two-factor on and signs in with it, makes an API token that works until it is revoked, and
// connects and disconnects a GitHub account (the simulator, over TLS with its own CA).

const NEW_PASSWORD = "a brand new passphrase";
let sim: GitHubSim;
let lab: WebLab;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "slipway-web-account-"));
  sim = await GitHubSim.start({ callbackUrl: "http://127.0.0.1/api/v1/scm/github/callback" });
  const caFile = path.join(dir, "github-ca.pem");
  writeFileSync(caFile, sim.ca);
  lab = await startWebLab({ githubClientId: sim.clientId, githubClientSecret: sim.clientSecret, githubUrl: sim.url, githubCaFile: caFile });
});

afterAll(async () => {
  await lab?.close();
  await sim?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Signs in through the sign-in page, with the two-factor step when `totp` is given, and opens the account page. */
async function signInToAccount(page: Page, email: string, password: string, totp?: () => string) {
  await page.goto("/sign-in");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  if (totp) {
    await page.getByLabel("Two-factor code").fill(totp());
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
  }
  await page.waitForURL((url) => url.pathname === "/");
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Account" }).click();
  await page.getByRole("heading", { level: 1, name: "Account" }).waitFor();
}

async function signOut(page: Page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/sign-in/);
}

const section = (page: Page, name: string) => page.getByRole("region", { name });

describe("the account page", () => {
  let context: BrowserContext;
  let page: Page;
  let problems: string[];
  let otpauthUri: string;
  let recoveryCodes: string[];

  beforeAll(async () => {
    await createUser(lab.h, "ada@example.com");
    ({ context, page, problems } = await lab.newPage());
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: lab.base });
  });

  it("changes the password: the old one no longer signs in, the new one does", async () => {
    await signInToAccount(page, "ada@example.com", PASSWORD);
    await expect.poll(() => section(page, "Profile").textContent()).toContain("ada@example.com");
    // The display name first: the header follows it at once, and the account keeps it.
    await section(page, "Profile").getByLabel("Name").fill("Ada Lovelace");
    await section(page, "Profile").getByRole("button", { name: "Save name" }).click();
    await page.locator(".who").getByText("Ada Lovelace").waitFor();
    expect((await lab.h.services.store.db.selectFrom("users").select("name").where("email", "=", "ada@example.com").executeTakeFirstOrThrow()).name).toBe("Ada Lovelace");
    const password = section(page, "Password");
    await password.getByLabel("Current password").fill("not the password");
    await password.getByLabel("New password", { exact: true }).fill(NEW_PASSWORD);
    await password.getByLabel("New password again").fill(`${NEW_PASSWORD}!`);
    await password.getByRole("button", { name: "Change password" }).click();
    await expect.poll(() => password.getByRole("alert").textContent()).toMatch(/differ/);
    await password.getByLabel("New password again").fill(NEW_PASSWORD);
    await password.getByRole("button", { name: "Change password" }).click();
    await expect.poll(() => password.getByRole("alert").textContent()).toMatch(/password/i);
    await password.getByLabel("Current password").fill(PASSWORD);
    await password.getByRole("button", { name: "Change password" }).click();
    await password.getByText("Your password is changed").waitFor();
    await expect.poll(() => password.getByLabel("Current password").inputValue()).toBe("");

    await signOut(page);
    await page.getByLabel("Email").fill("ada@example.com");
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/email or password/i);
    await signInToAccount(page, "ada@example.com", NEW_PASSWORD);
  });

  it("turns two-factor on from the shown key, shows the recovery codes once, and asks for a code at sign-in", async () => {
    const twoFactor = section(page, "Two-factor authentication");
    await twoFactor.getByText("Two-factor authentication is off").waitFor();
    await twoFactor.getByLabel("Your password").fill(NEW_PASSWORD);
    await twoFactor.getByRole("button", { name: "Set up two-factor" }).click();
    const qr = twoFactor.getByRole("img", { name: /QR code/ });
    await qr.waitFor();
    expect(await qr.getAttribute("src")).toMatch(/^data:image\/svg\+xml;base64,/);
    await expect.poll(() => qr.evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth)).toBeGreaterThan(0);
    const secret = await twoFactor.getByLabel("Secret key").inputValue();
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    otpauthUri = await twoFactor.getByLabel("Setup link").inputValue();
    expect(new URL(otpauthUri).searchParams.get("secret")).toBe(secret);
    await screenshot(page, "account-2fa-setup");

    await twoFactor.getByLabel("Code the app shows").fill(totpCode(otpauthUri));
    await twoFactor.getByRole("button", { name: "Turn on two-factor" }).click();
    const codes = twoFactor.getByLabel("Your recovery codes");
    recoveryCodes = (await codes.inputValue()).split("\n");
    expect(recoveryCodes).toHaveLength(10);
    for (const code of recoveryCodes) expect(code).toMatch(/^[0-9a-f]{5}(-[0-9a-f]{5}){3}$/);
    const done = twoFactor.getByRole("button", { name: "Done" });
    expect(await done.isDisabled()).toBe(true);
    await twoFactor.getByLabel("I have saved these recovery codes").check();
    await done.click();
    await twoFactor.getByText("10 unused recovery codes left").waitFor();
    await twoFactor.getByLabel("Your recovery codes").waitFor({ state: "detached" });

    await signOut(page);
    // The next time step's code: the one that turned two-factor on may not be used again.
    await signInToAccount(page, "ada@example.com", NEW_PASSWORD, () => totpCode(otpauthUri, 1));
    await section(page, "Two-factor authentication").getByText("Two-factor authentication is on").waitFor();
  });

  it("creates an API token shown once with a copy button, which works until it is revoked", async () => {
    const tokens = section(page, "API tokens");
    await tokens.getByText("No tokens yet").waitFor();
    await tokens.getByLabel("Token name").fill("deploy script");
    await tokens.getByRole("button", { name: "Create token" }).click();
    await expect.poll(() => tokens.getByRole("alert").textContent()).toMatch(/at least one scope/);
    await tokens.getByRole("checkbox", { name: /projects:read/ }).check();
    await tokens.getByRole("checkbox", { name: /builds:read/ }).check();
    await tokens.getByLabel("Expires").selectOption({ label: "in 7 days" });
    await tokens.getByRole("button", { name: "Create token" }).click();
    const token = await tokens.getByLabel("Your new API token").inputValue();
    expect(token).toMatch(/^slw_/);
    await tokens.getByRole("button", { name: "Copy" }).click();
    await tokens.getByText("Copied.").waitFor();
    expect(await page.evaluate("navigator.clipboard.readText()")).toBe(token);
    await screenshot(page, "account-tokens");

    const projects = () => fetch(`${lab.base}/api/v1/projects`, { headers: { authorization: `Bearer ${token}` } });
    expect((await projects()).status).toBe(200);

    await tokens.getByLabel("I have saved this token").check();
    await tokens.getByRole("button", { name: "Done" }).click();
    await tokens.getByLabel("Your new API token").waitFor({ state: "detached" });
    const row = tokens.getByRole("row", { name: /deploy script/ });
    expect(await row.textContent()).toMatch(/projects:read, builds:read/);
    await row.getByRole("button", { name: "Revoke" }).click();
    await row.getByRole("button", { name: "Cancel" }).click();
    await row.getByRole("button", { name: "Revoke" }).click();
    await row.getByRole("button", { name: "Revoke token" }).click();
    await row.getByText("revoked").waitFor();
    expect((await projects()).status).toBe(401);
  });

  it("turns two-factor off with a recovery code", async () => {
    const twoFactor = section(page, "Two-factor authentication");
    await twoFactor.getByLabel("Code from your app, or a recovery code").fill("00000-00000-00000-00000");
    await twoFactor.getByRole("button", { name: "Turn off two-factor" }).click();
    await expect.poll(() => twoFactor.getByRole("alert").textContent()).toMatch(/recovery code/);
    await twoFactor.getByLabel("Code from your app, or a recovery code").fill(recoveryCodes[0]!);
    await twoFactor.getByRole("button", { name: "Turn off two-factor" }).click();
    await twoFactor.getByText("Two-factor authentication is off now").waitFor();
    expectCleanPage(problems);
  });
});

describe("connected git hosts on the account page", () => {
  it("connects a GitHub account through the provider's page and disconnects it", async () => {
    await createUser(lab.h, "grace@example.com");
    // The simulator's certificate is from its own CA, which only this browser profile accepts.
    const { page, problems } = await lab.newPage({ ignoreHTTPSErrors: true });
    await signInToAccount(page, "grace@example.com", PASSWORD);
    const hosts = section(page, "Connected git hosts");
    await hosts.getByText("Not connected. Slipway will ask for: repo, user:email.").waitFor();

    const authorize = page.waitForRequest((r) => r.url().startsWith(`${sim.url}/login/oauth/authorize?`));
    await hosts.getByRole("button", { name: "Connect GitHub" }).click();
    expect(new URL((await authorize).url()).protocol).toBe("https:");
    await page.waitForURL((url) => url.pathname === "/account" && url.hash === "");
    await page.getByRole("status").getByText("Your GitHub account is connected.").waitFor();
    await expect.poll(() => hosts.getByRole("listitem").textContent()).toMatch(/Accountoctocat \(The Octocat\)Connected.*Scopes grantedrepo, user:email/);
    await screenshot(page, "account");

    await hosts.getByRole("button", { name: "Disconnect GitHub" }).click();
    await hosts.getByRole("button", { name: "Disconnect", exact: true }).click();
    await hosts.getByText("Your GitHub account is disconnected. Slipway's access to it is revoked there too.").waitFor();
    await hosts.getByRole("button", { name: "Connect GitHub" }).waitFor();
    expect(await lab.h.services.store.db.selectFrom("scm_connections").selectAll().execute()).toEqual([]);

    // A fresh load, as when the callback redirects here: a change of fragment alone would not reload the page.
    await page.goto("about:blank");
    await page.goto("/api/v1/scm/github/callback?error=access_denied&state=declined");
    await expect.poll(() => page.getByRole("alert").first().textContent()).toMatch(/did not grant access \(access_denied\)/);
    // Text put into the link by someone else is not shown: only what Slipway wrote is.
    await page.goto("about:blank");
    await page.goto(`/account#scm-error=${encodeURIComponent("Your account is locked: call +1 555 0100")}`);
    await expect.poll(() => page.getByRole("alert").first().textContent()).toBe("Signing in with the git host did not work: start again");
    expectCleanPage(problems);
  });

  it("creates a project from a repository of the connected account, and the link installs its key and hook", async () => {
    await createUser(lab.h, "linus@example.com");
    const { page, problems } = await lab.newPage({ ignoreHTTPSErrors: true });
    await signInToAccount(page, "linus@example.com", PASSWORD);
    await section(page, "Connected git hosts").getByRole("button", { name: "Connect GitHub" }).click();
    await page.getByRole("status").getByText("Your GitHub account is connected.").waitFor();

    await page.goto("/projects/new");
    await page.getByLabel("GitHub (octocat)").check();
    await page.getByRole("list").getByText("octocat/Hello-World").waitFor();
    await page.getByLabel("Search this page").fill("hello");
    const shown = await page.locator(".repos li .mono").allTextContents();
    expect(shown.length).toBeGreaterThan(0);
    for (const name of shown) expect(name.toLowerCase()).toContain("hello");
    await screenshot(page, "new-project-from-github");
    await page.locator(".repos li", { hasText: "octocat/Hello-World" }).getByRole("button", { name: "Build this" }).click();
    await page.getByRole("heading", { name: "Hello-World", level: 1 }).waitFor();
    expect(sim.keys.get("octocat/hello-world")).toHaveLength(1);
    expect(sim.hooks.get("octocat/hello-world")).toHaveLength(1);
    await page.getByRole("link", { name: "Settings" }).click();
    await section(page, "Repository link").getByText("octocat/Hello-World").first().waitFor();
    expectCleanPage(problems);
  });
});
