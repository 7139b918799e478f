import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanPage, screenshot, SCREENSHOTS, startWebLab, type WebLab } from "./helpers/browser.js";
import { createUser, PASSWORD, signIn, type Client } from "./helpers/harness.js";

// The project settings page in Debian's Chromium against a real server: an owner renames the
// project, replaces its deploy key and webhook secret, sets and deletes a secret, changes the
// build policy, confirms the git host's key, assigns a contractor and deletes the project. Each
// change is checked through the API, not only on the page.

let lab: WebLab;
let owner: Client;
let ownerId: string;

beforeAll(async () => {
  lab = await startWebLab();
  ownerId = (await createUser(lab.h, "owner@example.com")).id;
  owner = await signIn(lab.h, "owner@example.com");
});
afterAll(() => lab?.close());

describe("the project settings page", () => {
  it("changes every setting of a project through the API, never shows a secret value again, and deletes it with a typed confirmation", async () => {
    const created = await owner.post("/api/v1/projects", { name: "settings-demo", repositoryUrl: "ssh://git@git.example.com/team/demo.git" });
    expect(created.statusCode, created.body).toBe(201);
    const id = created.json<{ id: string; organization: string }>().id;
    const project = async () => (await owner.get(`/api/v1/projects/${id}`)).json<{ name: string; egressAllowlist: string[] | null; forkBuilds: string; knownHostsConfirmed: boolean }>();

    // A contractor of the organization, to assign.
    const contractor = await createUser(lab.h, "contractor@example.com");
    const principal = { userId: ownerId, email: "owner@example.com", isAdmin: false, twoFactor: false, via: "session", scopes: "all" } as const;
    const { token } = await lab.h.services.orgs.invite({ principal, ip: null }, created.json<{ organization: string }>().organization, "contractor@example.com", "contractor");
    expect((await (await signIn(lab.h, "contractor@example.com")).post("/api/v1/invitations/accept", { token })).statusCode).toBe(200);

    const { page, problems } = await lab.newPage();
    await page.goto(`/sign-in?next=${encodeURIComponent(`/projects/${id}`)}`);
    await page.getByLabel("Email").fill("owner@example.com");
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "settings-demo" }).waitFor();
    await page.getByRole("link", { name: "Settings" }).click();
    await page.getByRole("heading", { name: "Project settings" }).waitFor();

    await page.getByLabel("Project name").fill("renamed-demo");
    await page.getByRole("button", { name: "Rename" }).click();
    await page.getByRole("link", { name: "renamed-demo" }).waitFor();
    expect((await project()).name).toBe("renamed-demo");

    const fingerprint = page.getByTestId("deploy-key-fingerprint");
    const before = (await fingerprint.textContent())!;
    expect(before).toMatch(/^SHA256:/);
    await page.getByRole("button", { name: "Regenerate key" }).click();
    await page.getByRole("button", { name: "Make a new key" }).click();
    await expect.poll(() => fingerprint.textContent()).not.toBe(before);
    const key = (await owner.get(`/api/v1/projects/${id}/deploy-key`)).json<{ fingerprint: string; publicKey: string }>();
    expect(await fingerprint.textContent()).toBe(key.fingerprint);

    // The webhook secret: on the page right after it is made, gone once the user says it is saved.
    await page.getByRole("button", { name: "Make a new secret" }).click();
    await page.getByRole("button", { name: "Make a new secret" }).click();
    const webhookSecret = await page.getByLabel("Webhook secret").inputValue();
    expect(webhookSecret).toMatch(/^swh_/);
    await page.getByLabel("I have put the secret").check();
    await page.getByRole("button", { name: "Done" }).click();
    await page.getByLabel("Webhook secret").waitFor({ state: "detached" });
    expect(await page.content()).not.toContain(webhookSecret);

    const value = "tok-9f8e7d6c5b4a-never-shown";
    await page.getByLabel("Name", { exact: true }).fill("DEPLOY_TOKEN");
    await page.getByLabel("Value").fill(value);
    await page.getByRole("button", { name: "Save secret" }).click();
    await page.getByRole("cell", { name: "DEPLOY_TOKEN", exact: true }).waitFor();
    expect(await page.getByLabel("Value").inputValue()).toBe("");
    expect(await page.content()).not.toContain(value);
    expect((await owner.get(`/api/v1/projects/${id}/secrets`)).json().secrets.map((s: { name: string }) => s.name)).toEqual(["DEPLOY_TOKEN"]);
    await page.getByRole("button", { name: "Delete DEPLOY_TOKEN" }).click();
    await page.getByRole("button", { name: "Delete", exact: true }).click();
    await page.getByText("No secrets yet.").waitFor();
    expect((await owner.get(`/api/v1/projects/${id}/secrets`)).json().secrets).toEqual([]);

    await page.getByLabel("Egress allowlist").fill("git.example.com:22\n\n10.1.0.0/16:443\n");
    await page.getByRole("button", { name: "Save allowlist" }).click();
    await expect.poll(async () => (await project()).egressAllowlist).toEqual(["git.example.com:22", "10.1.0.0/16:443"]);
    await page.getByLabel("Egress allowlist").fill("not a host!");
    await page.getByRole("button", { name: "Save allowlist" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/is not host:port/);
    await page.getByLabel("Wait for an owner's or admin's approval").check();
    await page.getByRole("button", { name: "Save policy" }).click();
    await expect.poll(async () => (await project()).forkBuilds).toBe("approve");

    // The first clone pins the git host's key it sees, as a runner reports it (trust on first use).
    expect(await lab.h.services.projects.pinFirstSeenHostKeys(id, "test-runner", `git.example.com ${key.publicKey.split(" ").slice(0, 2).join(" ")}\n`)).toBe(true);
    const hostKey = (await owner.get(`/api/v1/projects/${id}`)).json<{ hostKeyFingerprints: string[] }>().hostKeyFingerprints[0]!.split(" ").at(-1)!;
    await page.reload();
    await page.getByText("Not confirmed").waitFor();
    await page.getByLabel("Fingerprints from the git server's operator").fill(`256 SHA256:${"A".repeat(43)} root@git (ED25519)`);
    await page.getByRole("button", { name: "Confirm host keys" }).click();
    await expect.poll(() => page.getByRole("alert").textContent()).toMatch(/not the pinned keys/);
    expect((await project()).knownHostsConfirmed).toBe(false);
    await page.getByLabel("Fingerprints from the git server's operator").fill(`256 ${hostKey} root@git (ED25519)`);
    await page.getByRole("button", { name: "Confirm host keys" }).click();
    await page.getByText("Confirmed", { exact: true }).waitFor();
    expect((await project()).knownHostsConfirmed).toBe(true);

    await page.getByRole("button", { name: "Assign" }).click();
    await page.getByRole("button", { name: "Remove contractor" }).waitFor();
    expect((await owner.get(`/api/v1/projects/${id}/assignments`)).json().userIds).toEqual([contractor.id]);
    await page.getByRole("button", { name: "Remove contractor" }).click();
    await page.getByText("No contractor is assigned.").waitFor();
    expect((await owner.get(`/api/v1/projects/${id}/assignments`)).json().userIds).toEqual([]);

    // The badge shows as an image from its tokened link; replacing the link kills the old one.
    const badge = page.getByRole("img", { name: "The project's build status badge" });
    await expect.poll(() => badge.evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth)).toBeGreaterThan(0);
    const oldBadge = (await badge.getAttribute("src"))!;
    await page.getByRole("button", { name: "Replace the link" }).click();
    await page.getByRole("button", { name: "Make a new link" }).click();
    await expect.poll(() => badge.getAttribute("src")).not.toBe(oldBadge);
    expect((await fetch(oldBadge)).status).toBe(404);

    await screenshot(page, "project-settings");

    const confirmName = page.getByLabel("Type renamed-demo to confirm");
    const deleteButton = page.getByRole("button", { name: "Delete this project" });
    await confirmName.fill("renamed-dem");
    expect(await deleteButton.isDisabled()).toBe(true);
    await confirmName.fill("settings-demo");
    expect(await deleteButton.isDisabled()).toBe(true);
    await confirmName.fill("renamed-demo");
    expect(await deleteButton.isDisabled()).toBe(false);
    await page.getByRole("region", { name: "Delete the project" }).screenshot({ path: path.join(SCREENSHOTS, "project-delete-confirm.png") });
    await deleteButton.click();
    await page.waitForURL(`${lab.base}/`);
    expect((await owner.get(`/api/v1/projects/${id}`)).statusCode).toBe(404);
    expectCleanPage(problems);
  });
});
