import { describe, expect, it } from "vitest";
import { lines, readConfig, validPipeline } from "../../test/helpers/pipeline.js";
import { limits, problemSchema, type Problem } from "./index.js";
import { mulberry32 as rng } from "../../test/helpers/prng.js";
import { memoryFiles } from "./files.js";
import { readWorkspaceConfig } from "./workspace-load.js";

const codes = (problems: Problem[]) => problems.map((p) => p.code);
const validSlipway = lines("image: alpine", "steps:", "  - name: one", "    command: echo one", "  - type: parallel", "    steps:", "      - name: two", "        command: [echo, two]", "      - name: three", "        command: echo three", "        branch: ^main$");
const validCodeship = {
  "codeship-services.yml": lines("app:", "  image: ruby", "  depends_on: [db]", "db:", "  image: postgres", "  links: [app]"),
  "codeship-steps.yml": lines("- type: serial", "  service: app", "  tag: ^(master|dev)$", "  steps:", "  - name: a", "    command: rake", "  - name: b", "    service: db", "    command: psql -c 'select 1'"),
};

describe("hostile configs get an error, not a hang", () => {
  it("refuses a file over the size limit", () => {
    const r = readConfig({ ".slipway.yml": `image: x\nsteps:\n  - command: ${"x".repeat(limits.fileBytes)}\n` });
    expect(codes(r.problems)).toEqual(["too_large"]);
    validPipeline({ ".slipway.yml": `image: x\nsteps:\n  - command: ${"x".repeat(1000)}\n` });
  });

  it("refuses an alias bomb", () => {
    let yaml = "a: &a [x, x, x, x, x, x, x, x, x]\n";
    for (let i = 0, prev = "a"; i < 9; prev = `b${i}`, i++) yaml += `b${i}: &b${i} [${Array(9).fill(`*${prev}`).join(", ")}]\n`;
    const r = readConfig({ ".slipway.yml": `${yaml}image: x\nsteps:\n  - command: 'true'\n` });
    expect(codes(r.problems)).toEqual(["too_complex"]);
  });

  it("refuses too many values and groups nested too deep", () => {
    const many = `image: x\nsteps:\n${Array.from({ length: limits.steps + 5 }, (_, i) => `  - command: echo ${i}`).join("\n")}`;
    expect(codes(readConfig({ ".slipway.yml": many }).problems)).toEqual(["too_complex"]);
    let nested = "  - command: deep";
    for (let d = 0; d < limits.groupDepth + 2; d++) nested = `  - type: serial\n    steps:\n${nested.replace(/^/gm, "    ")}`;
    expect(codes(readConfig({ ".slipway.yml": `image: x\nsteps:\n${nested}` }).problems)).toEqual(["too_complex"]);
  });

  it("refuses deeply nested flow collections", () => {
    const r = readConfig({ ".slipway.yml": `steps: ${"[".repeat(50_000)}${"]".repeat(50_000)}` });
    expect(r.problems.some((p) => p.severity === "error")).toBe(true);
    expect(r.pipeline).toBeUndefined();
  });
});

const pieces = ["steps", "services", "image", "command", "type", "parallel", "serial", "manual", "tag", "branch", "exclude", "service", "name", "depends_on", "env", "timeout", "on_fail", "build", "links", "encrypted_env_file", "^(", "$", "[", "]", "{", "}", "-", ":", "&a", "*a", "<<", "\n", "\n  ", "\n    - ", "'", '"', "\\0", "#", "!!binary", "!tag", "|", ">", "~", "null", "1e9", "0x1f", "..", "/", "\t", "\u0000", "\uFEFF", "?", ",", "%YAML 1.1\n---\n", "tasks", "ports", "port", "init", "before", "forwardPorts", "postCreateCommand", "//", "/*", "*/", "${containerEnv:A}", "3000-", "workspace"];

function randomDocument(next: () => number): string {
  const n = 1 + Math.floor(next() * 60);
  let out = "";
  for (let i = 0; i < n; i++) out += pieces[Math.floor(next() * pieces.length)]! + (next() < 0.3 ? " " : "");
  return out;
}

function mutate(text: string, next: () => number): string {
  let t = text;
  const edits = 1 + Math.floor(next() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(next() * (t.length + 1));
    const op = next();
    if (op < 0.4) t = t.slice(0, at) + pieces[Math.floor(next() * pieces.length)]! + t.slice(at);
    else if (op < 0.7) t = t.slice(0, at) + t.slice(at + 1 + Math.floor(next() * 8));
    else t = t.slice(0, at) + t.slice(at, at + 20) + t.slice(at); // duplicate a slice
  }
  return t;
}

const validGitpod = lines("image: { file: .gitpod.Dockerfile }", "tasks:", "  - name: app", "    init: npm ci", "    command: npm start", "    env: { A: 1 }", "ports:", "  - port: 3000-3002", "    visibility: public", "gitConfig: { user.name: x }");
const validDevcontainer = lines("// dev", "{", '  "build": { "dockerfile": "Dockerfile", "context": "..", },', '  "forwardPorts": [3000, "localhost:9000"],', '  "portsAttributes": { "3000": { "label": "web" } },', '  "containerEnv": { "A": "${containerWorkspaceFolder}/x" }, /* c */', '  "postCreateCommand": { "a": "make", "b": ["make", "b"] },', "}");
const validSlipwayWorkspace = lines("workspace:", "  image: debian:12", "  tasks:", "    - { name: t, before: [make, x], command: make }", "  ports: [{ port: 80, on_open: ignore }]");
const workspaceFiles = { ".gitpod.Dockerfile": "FROM debian:12\n", Dockerfile: "FROM debian:12\n" };

/** A parser of a config family, and seeds for it; every outcome must be a list of problems, never a throw. */
interface FuzzTarget {
  read(files: Record<string, string>): { problems: Problem[]; result: unknown };
  kinds: Array<(next: () => number) => Record<string, string>>;
  /** Valid configs (positive control for the fuzz loop). */
  seeds: Array<Record<string, string>>;
}

const targets: Record<string, FuzzTarget> = {
  pipeline: {
    read: (files) => {
      const r = readConfig(files);
      return { problems: r.problems, result: r.pipeline };
    },
    kinds: [
      (next) => ({ ".slipway.yml": randomDocument(next) }),
      (next) => ({ ".slipway.yml": mutate(validSlipway, next) }),
      (next) => ({ ...validCodeship, "codeship-steps.yml": mutate(validCodeship["codeship-steps.yml"], next) }),
      (next) => ({ ...validCodeship, "codeship-services.json": JSON.stringify({ app: { image: "x" } }), "codeship-services.yml": mutate(validCodeship["codeship-services.yml"], next) }),
    ],
    seeds: [{ ".slipway.yml": validSlipway }, validCodeship],
  },
  workspace: {
    read: (files) => {
      const r = readWorkspaceConfig(memoryFiles(files));
      return { problems: r.problems, result: r.config };
    },
    kinds: [
      (next) => ({ ...workspaceFiles, ".gitpod.yml": randomDocument(next) }),
      (next) => ({ ...workspaceFiles, ".gitpod.yml": mutate(validGitpod, next) }),
      (next) => ({ ...workspaceFiles, ".devcontainer/devcontainer.json": mutate(validDevcontainer, next) }),
      (next) => ({ ...workspaceFiles, ".slipway.yml": mutate(validSlipwayWorkspace, next) }),
    ],
    seeds: ([[".gitpod.yml", validGitpod], [".devcontainer/devcontainer.json", validDevcontainer], [".slipway.yml", validSlipwayWorkspace]] as const).map(([name, text]) => ({ ...workspaceFiles, [name]: text })),
  },
};

describe.each(Object.entries(targets))("fuzz the %s config (seeded, bounded)", (_, target) => {
  it("2000 random and mutated configs: every outcome is a valid problem list, never a throw", () => {
    const next = rng(20250611);
    let withErrors = 0;
    for (let i = 0; i < 2000; i++) {
      const files = target.kinds[i % target.kinds.length]!(next);
      const r = target.read(files);
      for (const p of r.problems) expect(problemSchema.parse(p)).toEqual(p);
      // internal_error is the catch-all for a bug of ours: it must never show up.
      expect(codes(r.problems), JSON.stringify(files)).not.toContain("internal_error");
      // A result is returned exactly when there is no error.
      const errors = r.problems.filter((p) => p.severity === "error").length;
      expect(r.result === undefined, JSON.stringify(files)).toBe(errors > 0);
      if (errors > 0) withErrors++;
    }
    // The generators must reach both outcomes, or the loop proved little.
    expect(withErrors).toBeGreaterThan(500);
    expect(withErrors).toBeLessThan(2000);
  });

  it("the unmutated seeds are valid (positive control for the fuzz loop)", () => {
    for (const seed of target.seeds) expect(target.read(seed).problems.filter((p) => p.severity === "error")).toEqual([]);
  });
});
