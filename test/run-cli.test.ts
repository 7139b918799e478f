import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cli } from "./helpers/harness.js";

const repos: string[] = [];
afterAll(() => {
  for (const r of repos) rmSync(r, { recursive: true, force: true });
});

/** A git repository with the given .slipway.yml and files, committed on branch main. */
function repo(config: string, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), "slipway-run-"));
  repos.push(dir);
  writeFileSync(path.join(dir, ".slipway.yml"), config);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  const git = (...args: string[]) => execFileSync("git", ["-C", dir, ...args], { stdio: "ignore" });
  git("init", "-q", "-b", "main");
  git("-c", "user.name=Ada", "-c", "user.email=ada@example.com", "add", "-A");
  git("-c", "user.name=Ada", "-c", "user.email=ada@example.com", "commit", "-qm", "first commit");
  return dir;
}

/** Runs `slipway run` in `dir`; collects stdout and stderr as they stream, with the time each line arrived. */
function slipwayRun(dir: string, args: string[] = []): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, "run", ...args], { cwd: dir, env: { PATH: process.env.PATH } });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    child.stderr.on("data", (d: Buffer) => (err += d));
    child.on("close", (code) => resolve({ code, out, err }));
  });
}

describe("slipway run", () => {
  it("runs the pipeline in sandboxes, with CI variables, live output and a summary; exit 0 when all pass", async () => {
    const dir = repo(
      `image: host
steps:
  - name: build
    command: echo "branch=$CI_BRANCH commit=$CI_COMMIT_ID by $CI_COMMITTER_NAME"; cat input.txt; echo built > out.txt
  - name: test
    command: cat out.txt
`,
      { "input.txt": "from the working tree\n" },
    );
    const res = await slipwayRun(dir);
    expect(res.err).toBe("");
    expect(res.code).toBe(0);
    const commit = execFileSync("git", ["-C", dir, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
    expect(res.out).toContain(`branch=main commit=${commit} by Ada`);
    expect(res.out).toContain("from the working tree");
    // Steps of the top level share one sandbox: the second step sees the first one's file.
    expect(res.out).toMatch(/▶ test\nbuilt\n/);
    expect(res.out).toMatch(/step\s+status\s+duration\nbuild\s+success[^\n]*\ntest\s+success/);
    expect(res.out).toContain("all 2 steps passed");
  });

  it("stops at a failed step (exit 1) unless it says on_fail: continue", async () => {
    const dir = repo(`image: host
steps:
  - name: flaky
    command: exit 4
    on_fail: continue
  - name: broken
    command: echo trying; exit 3
  - name: deploy
    command: echo deploying
`);
    const res = await slipwayRun(dir);
    expect(res.code).toBe(1);
    expect(res.out).toMatch(/✗ failed flaky .*exited with code 4/);
    expect(res.out).toMatch(/✗ failed broken .*exited with code 3/);
    expect(res.out).toMatch(/skipped deploy .*an earlier step failed/);
    expect(res.out).not.toContain("deploying");
  });

  it("skips a manual step (there is no one to approve it here), says why in the summary, and runs the rest", async () => {
    const dir = repo(`image: host
steps:
  - name: build
    command: echo built
  - name: deploy
    type: manual
    command: echo deploying
  - name: after
    command: echo after-deploy
`);
    const res = await slipwayRun(dir);
    expect(res.code).toBe(0);
    expect(res.out).not.toContain("deploying");
    expect(res.out).toContain("after-deploy");
    expect(res.out).toMatch(/\ndeploy\s+skipped\s+\S+\s+\(manual step: needs an approval\)\n/);
  });

  it("runs the branches of a parallel group side by side, each in a sandbox of its own", async () => {
    const dir = repo(`image: host
steps:
  - type: parallel
    steps:
      - name: left
        command: echo left > mine.txt; sleep 1; ls
      - name: right
        command: echo right > other.txt; sleep 1; ls
`);
    const started = Date.now();
    const res = await slipwayRun(dir);
    expect(res.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(res.out).toMatch(/\[left\] mine\.txt/);
    expect(res.out).not.toMatch(/\[left\] other\.txt/);
    expect(res.out).toMatch(/\[right\] other\.txt/);
    expect(res.out).not.toMatch(/\[right\] mine\.txt/);
  });

  it("P21: a secret printed by a step, also encoded or split across writes, is *** in the output", async () => {
    const secret = "s3cr3t-Value/with+chars";
    const dir = repo(`image: host
steps:
  - name: leak
    command: |
      echo "plain $TOKEN"
      echo "base64 $(printf %s "$TOKEN" | base64)"
      echo "hex $(printf %s "$TOKEN" | od -An -tx1 | tr -d ' \\n')"
      echo "url $(python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["TOKEN"], safe=""))')"
      echo "twice $(printf %s "$TOKEN" | base64 | tr -d '\\n' | base64)"
      printf 'split %s' "$(printf %s "$TOKEN" | cut -c1-7)"; sleep 0.3; printf '%s\\n' "$(printf %s "$TOKEN" | cut -c8-)"
      echo "stderr $TOKEN" >&2
`);
    const masked = await slipwayRun(dir, ["--secret", `TOKEN=${secret}`]);
    expect(masked.code).toBe(0);
    for (const form of ["plain", "base64", "hex", "url", "twice", "split", "stderr"]) {
      expect(`${masked.out}\n${masked.err}`).toMatch(new RegExp(`${form} \\*\\*\\*`));
    }
    const all = masked.out + masked.err;
    const encodings = [secret, Buffer.from(secret).toString("base64"), Buffer.from(secret).toString("hex"), encodeURIComponent(secret), Buffer.from(Buffer.from(secret).toString("base64")).toString("base64")];
    for (const e of encodings) expect(all).not.toContain(e);
    // Control: the same pipeline given the value as a plain environment variable of the config shows it.
    const control = repo(`image: host
env:
  TOKEN: "${secret}"
steps:
  - name: leak
    command: echo "plain $TOKEN"; echo "base64 $(printf %s "$TOKEN" | base64)"
`);
    const shown = await slipwayRun(control);
    expect(shown.out).toContain(`plain ${secret}`);
    expect(shown.out).toContain(Buffer.from(secret).toString("base64"));
  });

  it("refuses secrets shorter than 4 characters and explains why", async () => {
    const dir = repo("image: host\nsteps:\n  - name: a\n    command: echo hi\n");
    const res = await slipwayRun(dir, ["--secret", "PIN=123"]);
    expect(res.code).toBe(2);
    expect(res.err).toMatch(/PIN: .*at least 4 characters/);
  });

  it("runs only the named steps, and refuses a name that does not run", async () => {
    const dir = repo("image: host\nsteps:\n  - name: one\n    command: echo first\n  - name: two\n    command: echo second\n");
    const res = await slipwayRun(dir, ["two"]);
    expect(res.code).toBe(0);
    expect(res.out).toContain("second");
    expect(res.out).not.toContain("first");
    const bad = await slipwayRun(dir, ["three"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/no step named three/);
  });

  it("kills a step at its timeout and says so", async () => {
    const dir = repo("image: host\nsteps:\n  - name: slow\n    command: sleep 30\n    timeout: 1s\n");
    const res = await slipwayRun(dir);
    expect(res.code).toBe(1);
    expect(res.out).toMatch(/✗ failed slow .*killed after the step's timeout of 1 s/);
  });

  it("reports a bad config with file:line:col and exit code 2, and a missing one plainly", async () => {
    const bad = repo("image: host\nsteps:\n  - name: a\n    comand: echo typo\n");
    const res = await slipwayRun(bad);
    expect(res.code).toBe(2);
    expect(res.err).toMatch(/\.slipway\.yml:4:5: error/);
    const empty = mkdtempSync(path.join(tmpdir(), "slipway-run-empty-"));
    repos.push(empty);
    const none = await slipwayRun(empty);
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/no pipeline config/);
  });
});
