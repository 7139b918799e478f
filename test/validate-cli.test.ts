import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { cli } from "./helpers/harness.js";

// Runs the built CLI (npm run build first), like a user in a checkout would.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function repo(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), "slipway-validate-"));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

function validate(cwd: string, ...args: string[]) {
  const res = spawnSync(process.execPath, [cli, "validate", ...args], { cwd, encoding: "utf8", env: { PATH: process.env.PATH }, timeout: 30_000 });
  return { code: res.status, out: res.stdout, err: res.stderr };
}

describe("slipway validate [DIR]", () => {
  it("exits 0 on a valid .slipway.yml in the current directory", () => {
    const dir = repo({ ".slipway.yml": "image: node:20\nsteps:\n  - name: test\n    command: npm test\n" });
    const r = validate(dir);
    expect(r.out).toBe(".slipway.yml: valid, 1 step (0 errors, 0 warnings)\n");
    expect(r.code).toBe(0);
  });

  it("checks the workspace config too: .gitpod.yml alone is a valid repository, a mistake in it exits 2", () => {
    const ok = validate(repo({ ".gitpod.yml": "tasks:\n  - command: npm start\nports:\n  - port: 3000\n" }));
    expect(ok.out).toBe(".gitpod.yml: valid workspace (0 errors, 0 warnings)\n");
    expect(ok.code).toBe(0);
    const both = validate(repo({ ".slipway.yml": "image: node:20\nsteps:\n  - command: npm test\n", ".devcontainer/devcontainer.json": '{\n  // dev\n  "forwardPorts": [99999],\n}' }));
    expect(both.out.split("\n")).toEqual([
      ".slipway.yml: valid, 1 step (0 errors, 0 warnings)",
      '.devcontainer/devcontainer.json:3:20: error: 99999 is not a port (1-65535) or a range of ports like "3000-3010"',
      ".devcontainer/devcontainer.json: invalid workspace (1 error, 0 warnings)",
      "",
    ]);
    expect(both.code).toBe(2);
  });

  it("exits 0 with a warning naming each recognised but unsupported Codeship key and its place", () => {
    const dir = repo({
      "codeship-services.yaml": "app:\n  image: ruby:3.3\n  add_docker: true\n  volumes_from: [data]\ndata:\n  image: busybox\n",
      "codeship-steps.yaml": "- service: app\n  command: rake test\n  encrypted_dockercfg_path: dockercfg.encrypted",
    });
    const r = validate(path.dirname(dir), path.basename(dir));
    const rel = path.basename(dir);
    expect(r.out.split("\n")).toEqual([
      `${rel}/codeship-services.yaml:3:3: warning: "add_docker" is not supported by Slipway yet and is ignored`,
      `${rel}/codeship-services.yaml:4:3: warning: "volumes_from" is not supported by Slipway yet and is ignored`,
      `${rel}/codeship-steps.yaml:3:3: warning: "encrypted_dockercfg_path" is not supported by Slipway yet and is ignored`,
      "codeship-services.yaml + codeship-steps.yaml: valid, 1 step (0 errors, 3 warnings)",
      "",
    ]);
    expect(r.code).toBe(0);
  });

  it("exits 2 and prints file:line:col for each error, undocumented keys included", () => {
    const dir = repo({
      "codeship-services.yml": "app:\n  image: ruby\n  magic: true\n",
      "codeship-steps.yml": "- service: app\n  command: rake\n- service: db\n  command: psql\n",
    });
    const r = validate(dir, ".");
    expect(r.out).toContain('codeship-services.yml:3:3: error: unknown key "magic"');
    expect(r.out).toContain('codeship-steps.yml:3:12: error: unknown service "db" (known services: app)');
    expect(r.out).toContain("invalid (2 errors, 0 warnings)");
    expect(r.code).toBe(2);
  });

  it("exits 2 when there is no config, naming the files it looked for", () => {
    const r = validate(repo({ "README.md": "hi" }));
    expect(r.out).toMatch(/error: no pipeline config found; looked for \.slipway\.yml, \.slipway\.yaml, codeship-steps\.yml/);
    expect(r.code).toBe(2);
  });

  it("never follows a config symlink out of the repository, but does follow one inside it", () => {
    const outside = repo({ "secret.yml": "image: x\nsteps:\n  - command: leak\n" });
    const dir = repo({ "ci/pipeline.yml": "image: x\nsteps:\n  - command: 'true'\n" });
    symlinkSync("ci/pipeline.yml", path.join(dir, ".slipway.yml"));
    expect(validate(dir).code).toBe(0);
    rmSync(path.join(dir, ".slipway.yml"));
    symlinkSync(path.join(outside, "secret.yml"), path.join(dir, ".slipway.yml"));
    const r = validate(dir);
    expect(r.out).toContain(".slipway.yml: error: .slipway.yml is a link that leaves the repository");
    expect(r.code).toBe(2);
  });

  it("exits 2 on a directory that does not exist, and on extra arguments", () => {
    const dir = repo({});
    expect(validate(dir, "nope").code).toBe(2);
    const r = validate(dir, "a", "b");
    expect(r.err).toContain("usage: slipway validate [DIR]");
    expect(r.code).toBe(2);
  });
});
