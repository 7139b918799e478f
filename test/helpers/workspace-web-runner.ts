import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { screenshot, startWebLab, type WebLab } from "./browser.js";
import { projectAtGitServer } from "./clone-runner.js";
import { createUser, PASSWORD, signIn } from "./harness.js";

// The entry point of a process run inside the test's "runner" network namespace: a real Slipway
// server whose workspaces clone over SSH from the git server in the "services" namespace, and
// Chromium driving its pages as a user does (issue 8's browser run).

export interface WorkspaceWebInput {
  repositoryUrl: string;
  authorizedKeys: string;
  layoutsDir: string;
}

export interface WorkspaceWebOutput {
  /** Where the link /#<repository-url> led, after signing in, and the project it offered. */
  fromLink: { path: string; offered: string };
  /** The states the page showed, in order, while the workspace opened. */
  statesSeen: string[];
  terminal: { answer: boolean; foreground: string; taskTab: boolean };
  reconnect: { backlog: boolean; samePid: boolean };
  port: { body: string; anonymousPrivate: number; anonymousPublic: number };
  snapshot: boolean;
  guest: { asked: string; ownerSaw: boolean; inside: boolean; terminals: boolean };
  stopped: string;
  resumed: { state: string; marker: boolean };
  list: string[];
  sshKey: boolean;
  problems: string[];
}

const MARKER = "browser-marker-42";

/** What the shown terminal's screen says, spaces as spaces. */
const screen = async (page: Page) => (await page.locator(".terminal-screen .xterm-rows").innerText()).replace(/\u00a0/g, " ");

async function waitForScreen(page: Page, pattern: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const found = pattern.exec(await screen(page));
    if (found) return found;
    if (Date.now() > end) throw new Error(`the terminal never showed ${pattern}; it shows:\n${await screen(page)}`);
    await page.waitForTimeout(100);
  }
}

/** Types a command into the shown terminal, as keys. */
async function run(page: Page, command: string): Promise<void> {
  await page.locator(".terminal-screen").click();
  await page.keyboard.type(command);
  await page.keyboard.press("Enter");
}

async function signInAs(page: Page, email: string): Promise<void> {
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** The state in the page's heading, each change recorded, until it is one of `states`. */
async function watchState(page: Page, states: string[], timeoutMs: number, seen: string[] = []): Promise<string[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const state = (await page.locator("h1 .status").textContent().catch(() => null)) ?? "";
    if (state && seen.at(-1) !== state) seen.push(state);
    if (states.includes(state)) return seen;
    if (Date.now() > end) throw new Error(`the workspace page never showed ${states.join(" or ")}; it went ${seen.join(" → ")}`);
    await page.waitForTimeout(50);
  }
}

const status = async (url: string) => (await fetch(url, { redirect: "manual" })).status;

export async function main(input: WorkspaceWebInput): Promise<WorkspaceWebOutput> {
  const lab = await startWebLab({ imageLayoutsDir: input.layoutsDir, workspaceNetwork: "outbound" });
  const keys = mkdtempSync(path.join(tmpdir(), "slipway-web-keys-"));
  try {
    const { h } = lab;
    await createUser(h, "owner@example.com");
    await createUser(h, "guest@example.com");
    await projectAtGitServer(await signIn(h, "owner@example.com"), "app", input.repositoryUrl, input.authorizedKeys);
    const { page, problems, context } = await lab.newPage();
    try {
      return await journey(lab, input, page, problems, context, keys);
    } catch (err) {
      await screenshot(page, "workspace-web-failure").catch(() => undefined);
      throw new Error(`${(err as Error).message}\nproblems: ${problems.join("\n")}`);
    }
  } finally {
    rmSync(keys, { recursive: true, force: true });
    await lab.close();
  }
}

async function journey(lab: WebLab, input: WorkspaceWebInput, page: Page, problems: string[], context: BrowserContext, keys: string): Promise<WorkspaceWebOutput> {
  // A link to /#<repository-url>, followed before signing in: it comes back to the open form.
  await page.goto(`/#${input.repositoryUrl}`);
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await signInAs(page, "owner@example.com");
  await page.getByRole("heading", { name: "Open a workspace" }).waitFor();
  const fromLink = { path: new URL(page.url()).pathname + new URL(page.url()).search, offered: (await page.getByLabel("Project").locator("option:checked").textContent()) ?? "" };
  await page.getByRole("button", { name: "Open workspace" }).click();
  await page.waitForURL(/\/workspaces\/ws_/);
  const workspaceUrl = page.url();
  const id = workspaceUrl.split("/").pop()!;
  const statesSeen = await watchState(page, ["running", "failed"], 180_000);

  // A shell in the browser: it computes, and xterm's theme applies under the strict CSP.
  const taskTab = await page.getByRole("tab", { name: /^app/ }).isVisible();
  await page.getByRole("button", { name: "New terminal" }).click();
  await page.getByRole("tab", { name: "shell 1" }).waitFor();
  await page.getByText("Connected").waitFor();
  await run(page, "echo answer=$((6*7))");
  const answer = !!(await waitForScreen(page, /^answer=42 *$/m));
  const foreground = await page.locator(".terminal-screen .xterm-rows").evaluate((e) => (globalThis as unknown as { getComputedStyle(e: unknown): { color: string } }).getComputedStyle(e).color);
  await run(page, `echo ${MARKER.replace("42", "$((40+2))")} > /workspace/marker.txt; echo pid=$$`);
  const pid = (await waitForScreen(page, /^pid=(\d+) *$/m))[1];

  // A web server started in the terminal; its port appears, opens private, then public.
  await run(page, `perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>8080,Listen=>5,ReuseAddr=>1) or die; while($c=$s->accept){$b="served from the workspace"; print $c "HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: ".length($b)."\\r\\nConnection: close\\r\\n\\r\\n$b"; close $c}' &`);
  const link = page.getByRole("link", { name: "Open port 8080" });
  await link.waitFor({ timeout: 30_000 });
  const [tab] = await Promise.all([context.waitForEvent("page"), link.click()]);
  await tab.waitForLoadState();
  const body = (await tab.textContent("body")) ?? "";
  await tab.close();
  const portUrl = `${lab.base}/w/${id}/p/8080/`;
  const anonymousPrivate = await status(portUrl);
  await page.getByRole("button", { name: "Make public" }).click();
  await page.getByRole("button", { name: "Make private" }).waitFor();
  const anonymousPublic = await status(portUrl);

  // A reload attaches again: the same shell, its output drawn from what it kept.
  await page.reload();
  await watchState(page, ["running"], 30_000);
  await page.getByRole("tab", { name: "shell 1" }).click();
  await page.getByText("Connected").waitFor();
  const backlog = !!(await waitForScreen(page, /^answer=42 *$/m));
  await run(page, "echo again=$$");
  const samePid = (await waitForScreen(page, /^again=(\d+) *$/m))[1] === pid;

  await page.getByLabel("Snapshot name").fill("before-stop");
  await page.getByRole("button", { name: "Take a snapshot" }).click();
  const snapshot = await page.getByRole("cell", { name: "before-stop" }).waitFor({ timeout: 60_000 }).then(() => true);

  // Sharing: a guest asks, the owner approves in the page, the guest is in.
  await page.getByRole("button", { name: "Share this workspace" }).click();
  const guestSide = await lab.newPage();
  await guestSide.page.goto("/sign-in");
  await signInAs(guestSide.page, "guest@example.com");
  await guestSide.page.getByRole("heading", { name: "Projects", level: 1 }).waitFor();
  await guestSide.page.goto(`/workspaces/${id}`);
  await guestSide.page.getByRole("button", { name: "Ask to join" }).click();
  const asked = (await guestSide.page.getByRole("status").filter({ hasText: "asked to join" }).textContent()) ?? "";
  const approve = page.getByRole("button", { name: /^Approve/ });
  const ownerSaw = await approve.waitFor({ timeout: 15_000 }).then(() => true);
  await approve.click();
  const inside = await guestSide.page.getByText("You are a guest").waitFor({ timeout: 15_000 }).then(() => true);
  const terminals = await guestSide.page.getByText("Connected").waitFor({ timeout: 15_000 }).then(() => guestSide.page.getByRole("heading", { name: "Terminals" }).isVisible());
  await screenshot(guestSide.page, "workspace-guest");
  problems.push(...guestSide.problems);
  await guestSide.context.close();
  await screenshot(page, "workspace-running");

  await page.getByRole("button", { name: "Stop", exact: true }).click();
  const stopped = (await watchState(page, ["stopped", "failed"], 120_000)).at(-1)!;
  await screenshot(page, "workspace-stopped");
  await page.getByRole("button", { name: "Start", exact: true }).click();
  const resumedState = (await watchState(page, ["running", "failed"], 180_000, [])).at(-1)!;
  await page.getByRole("button", { name: "New terminal" }).click();
  await page.getByText("Connected").waitFor();
  await run(page, "cat /workspace/marker.txt");
  const marker = !!(await waitForScreen(page, new RegExp(`^${MARKER} *$`, "m")));
  await screenshot(page, "workspace-resumed");

  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Workspaces" }).click();
  await page.getByRole("heading", { name: "Workspaces", level: 1 }).waitFor();
  const list = (await page.locator("table tbody tr").allInnerTexts()).map((r) => r.replace(/\s+/g, " ").trim());
  await screenshot(page, "workspaces-list");

  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "laptop", "-f", path.join(keys, "id")]);
  await page.goto("/account");
  await page.getByLabel("Key name").fill("laptop");
  await page.getByLabel("Public key").fill(readFileSync(path.join(keys, "id.pub"), "utf8"));
  await page.getByRole("button", { name: "Add key" }).click();
  const fingerprint = execFileSync("ssh-keygen", ["-l", "-f", path.join(keys, "id.pub")], { encoding: "utf8" }).split(" ")[1]!;
  const sshKey = await page.getByRole("cell", { name: fingerprint }).waitFor({ timeout: 10_000 }).then(() => true);
  await screenshot(page, "account-ssh-keys");

  await page.goto(workspaceUrl);
  await page.getByRole("button", { name: "Stop", exact: true }).click();
  await watchState(page, ["stopped", "failed"], 120_000);
  return {
    fromLink,
    statesSeen,
    terminal: { answer, foreground, taskTab },
    reconnect: { backlog, samePid },
    port: { body, anonymousPrivate, anonymousPublic },
    snapshot,
    guest: { asked, ownerSaw, inside, terminals },
    stopped,
    resumed: { state: resumedState, marker },
    list,
    sshKey,
    problems,
  };
}
