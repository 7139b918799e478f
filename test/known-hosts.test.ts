import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { knownHostsName, parseKnownHosts } from "../src/projects/known-hosts.js";
import type { HostKeysRunInput, HostKeysRunOutput } from "./helpers/known-hosts-runner.js";
import { createGitUser, makeRepos, startSshd, type GitUser, type Sshd } from "./helpers/git-server.js";
import { Client, createUser, signIn, startHarness, type Harness } from "./helpers/harness.js";
import { createLab, LAB, runModuleInNetns, type Lab } from "./helpers/sandbox-network.js";

// P01: a project's git host keys. Pinned through the API (owner/admin), or captured by the first
// clone (trust on first use) and reported by the runner holding the job; from then on the clone
// insists on them. A changed key stops the clone before the deploy key is offered. Cancel kills
// a clone in progress.

const isRoot = process.getuid?.() === 0;
const here = path.dirname(fileURLToPath(import.meta.url));
let keysDir: string;

/** A fresh public key of `type` as `type base64` (what follows the host names in known_hosts). */
function newKey(type: "ed25519" | "ecdsa"): { line: string; fingerprint: string } {
  const file = path.join(keysDir, `k${Math.random().toString(36).slice(2)}`);
  execFileSync("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", "", "-f", file]);
  return { line: readFileSync(`${file}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" "), fingerprint: fingerprintOf(`${file}.pub`) };
}

/** The SHA256 fingerprint, as ssh-keygen itself computes it. */
const fingerprintOf = (pubFile: string) => execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", pubFile], { encoding: "utf8" }).split(" ")[1]!;

beforeAll(() => {
  keysDir = mkdtempSync(path.join(tmpdir(), "slipway-host-keys-"));
});
afterAll(() => rmSync(keysDir, { recursive: true, force: true }));

describe("P01: known_hosts text", () => {
  it("P01: reads OpenSSH's known_hosts lines: host lists, [host]:port, markers, hashed names, comments", () => {
    const [a, b] = [newKey("ed25519"), newKey("ecdsa")];
    const text = `# pinned by ops\n\ngit.example.com,192.0.2.7 ${a.line} comment words\n[git.example.com]:2222 ${b.line}\n@cert-authority *.example.com ${a.line}\n|1|c2FsdA==|aGFzaA== ${b.line}\n`;
    const { entries, problems } = parseKnownHosts(text);
    expect(problems).toEqual([]);
    expect(entries.map((e) => [e.line, e.hosts, e.type, e.marker ?? null])).toEqual([
      [3, ["git.example.com", "192.0.2.7"], "ssh-ed25519", null],
      [4, ["[git.example.com]:2222"], "ecdsa-sha2-nistp256", null],
      [5, ["*.example.com"], "ssh-ed25519", "@cert-authority"],
      [6, ["|1|c2FsdA==|aGFzaA=="], "ecdsa-sha2-nistp256", null],
    ]);
  });

  it("P01: names the host of a repository URL as known_hosts does", () => {
    expect(knownHostsName("ssh://git@Git.Example.com/app.git")).toBe("git.example.com");
    expect(knownHostsName("ssh://git@git.example.com:22/app.git")).toBe("git.example.com");
    expect(knownHostsName("ssh://git@git.example.com:2222/app.git")).toBe("[git.example.com]:2222");
    expect(knownHostsName("ssh://git@[2001:db8::1]:2222/app.git")).toBe("[2001:db8::1]:2222");
    expect(knownHostsName("git@git.example.com:org/app.git")).toBe("git.example.com");
    expect(knownHostsName("https://git.example.com/app.git")).toBeUndefined();
  });
});

describe("P01: pinning through the API", () => {
  let h: Harness;
  let owner: Client;
  let member: Client;
  let projectId: string;

  beforeAll(async () => {
    h = await startHarness();
    const ownerUser = await createUser(h, "owner@example.com");
    await createUser(h, "member@example.com");
    owner = await signIn(h, "owner@example.com");
    member = await signIn(h, "member@example.com");
    const created = (await owner.post("/api/v1/projects", { name: "app", repositoryUrl: "ssh://git@git.example.com:2222/app.git" })).json();
    projectId = created.id;
    const principal = { userId: ownerUser.id, email: ownerUser.email, isAdmin: false, twoFactor: false, via: "session", scopes: "all" } as const;
    const { token } = await h.services.orgs.invite({ principal, ip: null }, created.organization, "member@example.com", "member");
    expect((await member.post("/api/v1/invitations/accept", { token })).statusCode).toBe(200);
  });
  afterAll(() => h?.close());

  const project = () => `/api/v1/projects/${projectId}`;
  const pinAudit = (action: string) => h.services.store.db.selectFrom("audit_log").selectAll().where("action", "=", action).where("target", "=", projectId).orderBy("seq").execute();

  it("P01: an owner pins keys; the project shows them (comments dropped); the change is audited with the keys' fingerprints", async () => {
    expect((await owner.get(project())).json().knownHosts).toBeNull();
    const key = newKey("ed25519");
    const res = await owner.patch(project(), { knownHosts: `# from ssh-keyscan\n[git.example.com]:2222 ${key.line}\n` });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().knownHosts).toBe(`[git.example.com]:2222 ${key.line}\n`);
    expect((await owner.get(project())).json().knownHosts).toBe(`[git.example.com]:2222 ${key.line}\n`);
    // Members see them (public keys), but only owners and admins change them.
    expect((await member.get(project())).json().knownHosts).toBe(`[git.example.com]:2222 ${key.line}\n`);
    expect((await member.patch(project(), { knownHosts: null })).statusCode).toBe(403);
    const [entry] = await pinAudit("project.known_hosts_changed");
    expect(entry!.actor).toBe("owner@example.com");
    expect(JSON.parse(entry!.details)).toEqual({ previous: null, now: [`[git.example.com]:2222 ssh-ed25519 ${key.fingerprint}`] });
    // null unpins: the next clone pins what it sees.
    expect((await owner.patch(project(), { knownHosts: null })).json().knownHosts).toBeNull();
    expect(JSON.parse((await pinAudit("project.known_hosts_changed"))[1]!.details)).toEqual({ previous: [`[git.example.com]:2222 ssh-ed25519 ${key.fingerprint}`], now: null });
  });

  it("P01: bad known_hosts text is 400 with the line that is wrong, and nothing is pinned", async () => {
    const ed = newKey("ed25519").line;
    const edKey = ed.split(" ")[1]!;
    const cases: Array<[string, RegExp]> = [
      ["git.example.com ssh-ed25519", /line 1: a known_hosts line is "host\[,host…\] key-type base64-key/],
      [`# ok\n\ngit.example.com ${ed}\ngit.example.com ssh-dss ${edKey}`, /line 4: "ssh-dss" is not an SSH host key type/],
      ["git.example.com ssh-ed25519 not*base64!", /line 1: the key is not base64/],
      [`git.example.com ecdsa-sha2-nistp256 ${edKey}`, /line 1: the key is not a ecdsa-sha2-nistp256 key/],
      [`@trusted git.example.com ${ed}`, /line 1: the marker @trusted is not one of @cert-authority, @revoked/],
      [`git.exa\u0001mple.com ${ed}`, /line 1: the host names have characters a host name does not/],
      ["# only a comment\n", /no host key in it/],
      ["", /no host key in it/],
      [`git.example.com ${ed}\n`.repeat(800), /body\.knownHosts: .*65536/],
    ];
    for (const [knownHosts, message] of cases) {
      const res = await owner.patch(project(), { knownHosts });
      expect(res.statusCode, JSON.stringify(knownHosts.slice(0, 80))).toBe(400);
      expect(res.json().error.code).toBe("invalid_request");
      expect(res.json().error.message).toMatch(message);
    }
    expect((await owner.get(project())).json().knownHosts).toBeNull();
    // Control: the good line of those cases is taken.
    expect((await owner.patch(project(), { knownHosts: `git.example.com ${ed}` })).statusCode).toBe(200);
    expect((await owner.patch(project(), { knownHosts: null })).statusCode).toBe(200);
  });

  it("P01: the runner holding the job reports the first key seen, which is pinned once, only for the repository's host", async () => {
    const register = async (name: string) => new Client(h.app, { bearer: (await h.services.runners.register(name)).token });
    const [holder, other] = [await register("holder"), await register("other")];
    expect((await owner.post(`${project()}/builds`, { branch: "main" })).statusCode).toBe(201);
    const { job } = (await holder.post("/api/v1/runner/lease", { waitMs: 0 })).json();
    const report = `/api/v1/runner/jobs/${job.jobId}/known-hosts`;
    const [seen, later] = [newKey("ed25519"), newKey("ecdsa")];
    const checkout = () => holder.post(`/api/v1/runner/jobs/${job.jobId}/checkout`, {});
    expect((await checkout()).json().knownHosts).toBeNull();

    expect((await other.post(report, { knownHosts: `[git.example.com]:2222 ${seen.line}` })).json().error.code).toBe("lease_lost");
    expect((await owner.post(report, { knownHosts: `[git.example.com]:2222 ${seen.line}` })).statusCode).toBe(401);
    // The URL says port 2222: an entry for port 22, or for another host, does not pin this repository's host.
    for (const host of ["git.example.com", "[evil.example.com]:2222"]) {
      const wrong = await holder.post(report, { knownHosts: `${host} ${seen.line}` });
      expect(wrong.statusCode).toBe(400);
      expect(wrong.json().error).toEqual({ code: "wrong_host", message: "line 1: the entry does not name the repository's host [git.example.com]:2222" });
    }
    expect((await holder.post(report, { knownHosts: "[git.example.com]:2222 ssh-ed25519 AAAA" })).statusCode).toBe(400);
    expect((await owner.get(project())).json().knownHosts).toBeNull();

    expect((await holder.post(report, { knownHosts: `[git.example.com]:2222 ${seen.line}\n` })).json()).toEqual({ pinned: true });
    expect((await owner.get(project())).json().knownHosts).toBe(`[git.example.com]:2222 ${seen.line}\n`);
    expect((await checkout()).json().knownHosts).toBe(`[git.example.com]:2222 ${seen.line}\n`);
    // A pin is never replaced this way: a later report (another clone, or a host that changed its key) is ignored.
    expect((await holder.post(report, { knownHosts: `[git.example.com]:2222 ${later.line}` })).json()).toEqual({ pinned: false });
    expect((await owner.get(project())).json().knownHosts).toBe(`[git.example.com]:2222 ${seen.line}\n`);
    const pinned = await pinAudit("project.known_hosts_pinned");
    expect(pinned.map((e) => [e.actor, JSON.parse(e.details).now])).toEqual([["runner", [`[git.example.com]:2222 ssh-ed25519 ${seen.fingerprint}`]]]);
  });
});

describe.runIf(isRoot)("P01: clones check the git host's key (real sshd, git and sandboxes)", () => {
  let lab: Lab;
  let root: string;
  let user: GitUser;
  let authorizedKeys: string;
  let first: Sshd | undefined;
  let second: Sshd | undefined;
  let hostKeys: Array<{ line: string; fingerprint: string }>;
  let before: HostKeysRunOutput;
  let after: HostKeysRunOutput;
  const marker = () => path.join(root, "marks", "clone-started");
  const run = (projects: HostKeysRunInput["projects"]) =>
    runModuleInNetns<HostKeysRunInput, HostKeysRunOutput>(lab.runner, path.join(here, "helpers", "known-hosts-runner.ts"), { repositoryUrl, authorizedKeys, projects }, { timeoutMs: 240_000 });
  let repositoryUrl: string;

  /** The sshd's host key as a known_hosts line for the repository's host. */
  const hostKeyOf = (dir: string) => ({ line: `${LAB.allowed} ${readFileSync(path.join(dir, "host_key.pub"), "utf8").trim().split(" ").slice(0, 2).join(" ")}\n`, fingerprint: fingerprintOf(path.join(dir, "host_key.pub")) });
  const accepted = (sshd: Sshd, fingerprint: string) => sshd.log().split("\n").filter((l) => l.includes(`Accepted publickey for ${user.name}`) && l.includes(fingerprint)).length;

  beforeAll(async () => {
    lab = createLab();
    root = mkdtempSync(path.join(tmpdir(), "slipway-host-keys-server-"));
    chmodSync(root, 0o755);
    user = createGitUser(root);
    const urlOf = (repo: string) => `ssh://${user.name}@${LAB.allowed}:22${repo}`;
    const repos = makeRepos(root, "image: host\nsteps:\n  - name: show\n    command: echo step-ran-$(cat version)\n", urlOf(path.join(root, "srv", "lib.git")), user);
    repositoryUrl = urlOf(repos.app);
    authorizedKeys = path.join(root, "authorized_keys");
    writeFileSync(authorizedKeys, "");
    // Where the hanging command leaves its mark: writable by the git user alone.
    mkdirSync(path.join(root, "marks"));
    chownSync(path.join(root, "marks"), user.uid, user.uid);

    first = await startSshd(lab.services, LAB.allowed, root, user, authorizedKeys);
    before = await run([{ builds: 2 }]);
    await first.stop();
    // The same address and repositories, served with another host key: to the clone, the host's key changed.
    const secondDir = path.join(root, "second");
    mkdirSync(secondDir);
    second = await startSshd(lab.services, LAB.allowed, secondDir, user, authorizedKeys);
    hostKeys = [hostKeyOf(root), hostKeyOf(secondDir)];
    expect(hostKeys[0]!.fingerprint).not.toBe(hostKeys[1]!.fingerprint);
    after = await run([
      { pin: before.projects[0]!.builds[0]!.knownHosts, builds: 1 },
      { pin: hostKeys[1]!.line, builds: 1 },
      { hangMarker: marker(), cancelWhenHung: true, builds: 1 },
    ]);
  }, 600_000);

  afterAll(async () => {
    await first?.stop();
    await second?.stop();
    user?.remove();
    lab?.destroy();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("P01: the first clone of a project with no pinned key pins the key the git host showed (trust on first use), audited", () => {
    const [tofu] = before.projects[0]!.builds;
    expect({ status: tofu!.status, reason: tofu!.reason }).toEqual({ status: "success", reason: null });
    expect(tofu!.log).toContain("step-ran-2");
    expect(tofu!.knownHosts).toBe(hostKeys[0]!.line);
    expect(before.projects[0]!.audit).toEqual([{ action: "project.known_hosts_pinned", actor: "runner", details: { runner: expect.any(String), now: [`${LAB.allowed} ssh-ed25519 ${hostKeys[0]!.fingerprint}`] } }]);
  });

  it("P01: a pinned key is accepted: the next build clones with it, and a key pinned through the API works the same", () => {
    const [, pinned] = before.projects[0]!.builds;
    expect({ status: pinned!.status, reason: pinned!.reason }).toEqual({ status: "success", reason: null });
    expect(pinned!.log).toContain("step-ran-2");
    expect(pinned!.knownHosts).toBe(hostKeys[0]!.line);
    expect(before.projects[0]!.audit).toHaveLength(1);
    const [byApi] = after.projects[1]!.builds;
    expect({ status: byApi!.status, reason: byApi!.reason }).toEqual({ status: "success", reason: null });
    expect(byApi!.log).toContain("step-ran-2");
    expect(after.projects[1]!.audit.map((a) => [a.action, a.actor])).toEqual([["project.known_hosts_changed", "owner@example.com"]]);
  });

  it("P01: a changed host key stops the clone with a message saying so and how to re-pin; no step runs, the deploy key is never offered", () => {
    const [changed] = after.projects[0]!.builds;
    const message = `could not clone ${repositoryUrl}: the git host's key has changed: it is not the key pinned for this project, so nothing was fetched. If the change is expected, check the new key with the host's operator and update the project's known hosts ("knownHosts" in PATCH /api/v1/projects/<id>: the host's keys as \`ssh-keyscan\` prints them, or null to pin the key the next clone sees)`;
    expect({ status: changed!.status, reason: changed!.reason }).toEqual({ status: "error", reason: message });
    expect(changed!.log).toContain(`slipway: ${message}`);
    expect(changed!.log).not.toContain("step-ran");
    // The pin stays as it was, and the impostor never saw the deploy key: ssh stopped before authenticating.
    expect(changed!.knownHosts).toBe(hostKeys[0]!.line);
    expect(accepted(second!, after.projects[0]!.fingerprint)).toBe(0);
    // Control: that same server let in the key of the project pinned to its real key.
    expect(accepted(second!, after.projects[1]!.fingerprint)).toBeGreaterThan(0);
  });

  it("P01: cancel kills a clone in progress: the build ends canceled while the git server still has not answered, and no step runs", () => {
    const [hung] = after.projects[2]!.builds;
    // The clone was connected and waiting on the git server when the cancel came; that server never answers.
    expect(accepted(second!, after.projects[2]!.fingerprint)).toBeGreaterThan(0);
    expect(hung!.statusWhenHung).toBe("running");
    expect({ status: hung!.status, reason: hung!.reason }).toEqual({ status: "canceled", reason: "canceled" });
    expect(hung!.log).toContain(`slipway: git was canceled before it could clone ${repositoryUrl}`);
    expect(hung!.log).not.toContain("step-ran");
    console.info(`cancel → build canceled in ${hung!.cancelMs} ms`);
  });
});
