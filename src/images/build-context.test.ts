import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { formatProblem } from "../pipeline/problems.js";
import { listBuildContext } from "./build-context.js";

let root: string;
afterEach(() => rmSync(root, { recursive: true, force: true }));

function context(files: Record<string, string>): string {
  root = mkdtempSync(path.join(tmpdir(), "slipway-context-"));
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    writeFileSync(path.join(root, p), text);
  }
  return root;
}

describe("a build context", () => {
  it("lists what .dockerignore keeps, in a stable order, keeping links as links", async () => {
    const dir = context({ ".dockerignore": "node_modules\n*.log\n!keep.log\n", "src/app.js": "x", "node_modules/a/index.js": "y", "err.log": "z", "keep.log": "k", Dockerfile: "FROM scratch\n" });
    symlinkSync("/etc/passwd", path.join(dir, "src/outside"));
    const { entries, problems } = await listBuildContext(dir, "app");
    expect(problems).toEqual([]);
    expect(entries.map((e) => `${e.type} ${e.path}${e.type === "symlink" ? ` -> ${e.target}` : ""}`)).toEqual([
      "file .dockerignore",
      "file Dockerfile",
      "file keep.log",
      "dir src",
      "file src/app.js",
      "symlink src/outside -> /etc/passwd",
    ]);
  });

  it("finds what a ! pattern takes back in from an ignored directory", async () => {
    const dir = context({ ".dockerignore": "assets\n!assets/keep/*.png\n", "assets/big.psd": "x", "assets/keep/a.png": "p", "assets/keep/b.psd": "q" });
    const { entries } = await listBuildContext(dir, "app");
    expect(entries.map((e) => e.path)).toEqual([".dockerignore", "assets/keep/a.png"]);
  });

  it("stops at its limits with what to do, and leaves out special files with a warning", async () => {
    const dir = context({ "a.bin": "x".repeat(600), "b.bin": "x".repeat(600) });
    const big = await listBuildContext(dir, "app", { maxEntries: 100, maxBytes: 1000 });
    expect(big.problems.map((p) => formatProblem(p))).toEqual(["app: error: the build context has more than 1000 bytes (leave out what the build does not need with a .dockerignore)"]);
    const many = await listBuildContext(dir, "app", { maxEntries: 1, maxBytes: 10_000 });
    expect(many.problems.map((p) => p.code)).toEqual(["context_too_large"]);
    execFileSync("mkfifo", [path.join(dir, "pipe")]);
    const special = await listBuildContext(dir, "app");
    expect(special.problems.map((p) => formatProblem(p))).toEqual(["app/pipe: warning: pipe is not a file, directory or link; it is left out of the build"]);
    expect(special.entries.map((e) => e.path)).toEqual(["a.bin", "b.bin"]);
  });

  it("reports a broken .dockerignore pattern at its line", async () => {
    const dir = context({ ".dockerignore": "ok\n[bad\n", "x": "1" });
    const { problems } = await listBuildContext(dir, "ctx");
    expect(problems.map((p) => formatProblem(p))).toEqual(['ctx/.dockerignore:2:1: error: "[bad" is not a pattern: a [ has no closing ]']);
  });
});
