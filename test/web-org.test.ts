import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanPage, screenshot, startWebLab, type WebLab } from "./helpers/browser.js";
import { mailedToken, PASSWORD } from "./helpers/harness.js";

// The organization pages in Debian's Chromium against a real server: an owner creates an
// organization and invites someone, who accepts from the mailed link in a browser of their own;
// the owner changes their role and reads it all in the audit log, whose chain verifies. An
// instance administrator registers a runner (with their password again), sees its token once, and removes it.

let lab: WebLab;

beforeAll(async () => {
  lab = await startWebLab();
  const people = [
    ["olive@example.com", "Olive Owner", false],
    ["bob@example.com", "Bob Builder", false],
    ["root@example.com", "Rita Root", true],
  ] as const;
  for (const [email, name, isAdmin] of people) await lab.h.services.users.create({ email, name, password: PASSWORD, isAdmin, verified: true }, { actor: "test" });
});
afterAll(() => lab?.close());

async function signIn(page: Page, email: string) {
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
}

const region = (page: Page, name: string) => page.getByRole("region", { name });
const row = (page: Page, text: string) => page.getByRole("table", { name: "Members" }).getByRole("row").filter({ hasText: text });
/** A runner token's answer at the lease route: 204 (nothing to do) while it works, 401 once it does not. */
const lease = async (token: string) => (await fetch(`${lab.base}/api/v1/runner/lease`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: '{"waitMs":0}' })).status;

describe("the organization pages", () => {
  it("an owner creates an organization, invites someone who accepts, changes their role, and reads it in the verified audit log", async () => {
    const { page, problems } = await lab.newPage();
    await page.goto("/sign-in");
    await signIn(page, "olive@example.com");
    await page.waitForURL((url) => url.pathname === "/");
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Organizations" }).click();
    await page.getByRole("heading", { level: 1, name: "Organizations" }).waitFor();
    await page.getByText("You belong to no organization yet").waitFor();
    // Runners are for instance administrators only.
    expect(await page.getByRole("heading", { name: "Runners" }).count()).toBe(0);

    await page.getByLabel("Organization name").fill("Acme");
    await page.getByRole("button", { name: "Create organization" }).click();
    await page.waitForURL(/\/orgs\/org_/);
    await page.getByRole("heading", { level: 1, name: "Acme" }).waitFor();
    await row(page, "Olive Owner").waitFor();

    const members = region(page, "Members");
    await members.getByLabel("Email").fill("bob@example.com");
    await members.getByLabel("Role", { exact: true }).selectOption("member");
    await members.getByRole("button", { name: "Send invitation" }).click();
    await members.getByText("Invitation sent to bob@example.com as member").waitFor();
    const token = await mailedToken(lab.h, "bob@example.com", "accept-invitation");

    // The invitee, signed out in a browser of their own: sent to sign in, then back to accept.
    const invitee = await lab.newPage();
    await invitee.page.goto(`/accept-invitation#token=${token}`);
    await invitee.page.waitForURL(/\/sign-in\?next=%2Faccept-invitation$/);
    expect(invitee.page.url()).not.toContain(token);
    await signIn(invitee.page, "bob@example.com");
    await invitee.page.waitForURL((url) => url.pathname === "/accept-invitation");
    await invitee.page.getByText("You are signed in as bob@example.com").waitFor();
    await invitee.page.getByRole("button", { name: "Accept the invitation" }).click();
    await invitee.page.getByText("You joined Acme as member").waitFor();
    await invitee.page.getByRole("link", { name: "Go to Acme" }).click();
    await row(invitee.page, "Olive Owner").waitFor();
    // A member sees who is in, but neither the controls of managers nor the audit log.
    expect(await invitee.page.getByRole("button", { name: "Change role" }).count()).toBe(0);
    expect(await invitee.page.getByRole("heading", { name: "Audit log" }).count()).toBe(0);
    expectCleanPage(invitee.problems);
    await invitee.context.close();

    await page.reload();
    const bob = row(page, "Bob Builder");
    await bob.waitFor();
    expect(await bob.getByLabel("Role of Bob Builder").inputValue()).toBe("member");
    await bob.getByLabel("Role of Bob Builder").selectOption("admin");
    await bob.getByRole("button", { name: "Change role" }).click();
    await expect.poll(() => bob.getByRole("button", { name: "Change role" }).isDisabled()).toBe(true);
    await page.reload();
    expect(await row(page, "Bob Builder").getByLabel("Role of Bob Builder").inputValue()).toBe("admin");
    await screenshot(page, "org-members");

    // The API's refusal, in its own words: the last owner cannot step down.
    const olive = row(page, "Olive Owner");
    await olive.getByLabel("Role of Olive Owner").selectOption("member");
    await olive.getByRole("button", { name: "Change role" }).click();
    await expect.poll(() => members.getByRole("alert").textContent()).toMatch(/keeps at least one owner; make someone else owner first/);
    await olive.getByLabel("Role of Olive Owner").selectOption("owner");

    const audit = region(page, "Audit log");
    await audit.getByText("Chain verified").waitFor();
    expect(Date.parse((await audit.locator(".chain-ok time").getAttribute("datetime"))!)).toBeLessThanOrEqual(Date.now());
    const actions = () => audit.locator("tbody td.mono:nth-child(3)").allTextContents();
    await expect.poll(actions).toEqual(["org.role_changed", "org.member_added", "org.member_invited", "org.created"]);
    const entry = (action: string) => audit.getByRole("row").filter({ hasText: action });
    const changed = entry("org.role_changed");
    expect(await changed.textContent()).toContain("olive@example.com");
    expect(await changed.textContent()).toContain("Bob Builder");
    expect(await changed.textContent()).toContain("from: member, to: admin");
    await screenshot(page, "org-audit");

    await audit.getByLabel("Action").selectOption("org.member_invited");
    await expect.poll(actions).toEqual(["org.member_invited"]);
    expect(await entry("org.member_invited").textContent()).toContain("invitation:bob@example.com");
    await audit.getByLabel("Action").selectOption("");
    await audit.getByLabel("Actor").selectOption({ label: "Bob Builder" });
    await expect.poll(actions).toEqual(["org.member_added"]);
    await audit.getByLabel("Actor").selectOption("");
    await audit.getByLabel("From").fill("2099-01-01T00:00");
    await audit.getByText("No entry matches.").waitFor();
    await audit.getByLabel("From").fill("");
    await expect.poll(actions).toHaveLength(4);
    expectCleanPage(problems);
  });

  it("an instance administrator registers a runner, sees its token once, and removes it", async () => {
    const { page, problems } = await lab.newPage();
    await page.goto("/orgs");
    await page.waitForURL(/\/sign-in\?next=%2Forgs$/);
    await signIn(page, "root@example.com");
    await page.waitForURL((url) => url.pathname === "/orgs");
    const runners = region(page, "Runners");
    await runners.getByText("No runner is registered").waitFor();

    await runners.getByLabel("Runner name").fill("build-01");
    await runners.getByLabel("Your password").fill("not the password");
    await runners.getByRole("button", { name: "Register runner" }).click();
    await expect.poll(() => runners.getByRole("alert").textContent()).toMatch(/current password is wrong/);
    await screenshot(page, "runners-wrong-password");
    await runners.getByLabel("Your password").fill(PASSWORD);
    await runners.getByRole("button", { name: "Register runner" }).click();
    const runnerRow = runners.getByRole("row").filter({ hasText: "build-01" });
    const shown = runners.getByLabel("Token of the runner “build-01”");
    const token = await shown.inputValue();
    expect(token).toMatch(/^slr_/);
    expect(await runners.locator("code").textContent()).toBe(`SLIPWAY_RUNNER_TOKEN=… slipway runner --server ${lab.base}`);
    await runnerRow.waitFor();
    await screenshot(page, "runners");
    expect(await lease(token)).toBe(204);

    expect(await runners.getByRole("button", { name: "Done" }).isDisabled()).toBe(true);
    await runners.getByLabel("I have saved this token").check();
    await runners.getByRole("button", { name: "Done" }).click();
    expect(await runners.getByLabel("Your password").inputValue()).toBe("");
    expect(await page.content()).not.toContain(token);
    // Shown once: nothing of it comes back with the page.
    await page.reload();
    await runnerRow.getByText("online").waitFor();
    expect(await page.content()).not.toContain(token);

    await runnerRow.getByRole("button", { name: "Remove" }).click();
    await runnerRow.getByRole("button", { name: "Remove runner" }).click();
    await runners.getByText("No runner is registered").waitFor();
    expect(await lease(token)).toBe(401);
    expectCleanPage(problems);
  });
});
