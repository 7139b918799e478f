import { describe, expect, it } from "vitest";
import { findings, lines, readConfig, validPipeline } from "../../test/helpers/pipeline.js";
import { flattenSteps, type Group, type Step } from "./index.js";

const full = lines(
  "# Slipway's own format",
  "image: node:20",
  "env:",
  "  NODE_ENV: test",
  "  RETRIES: 3",
  "secrets: [NPM_TOKEN, DEPLOY_KEY]",
  "services:",
  "  db:",
  "    image: postgres:16",
  "    env: { POSTGRES_PASSWORD: ci }",
  "    healthcheck:",
  "      command: pg_isready -U postgres",
  "      interval: 1s",
  "      retries: 20",
  "  cache:",
  "    image: redis:7",
  "    depends_on: [db]",
  "steps:",
  "  - name: install",
  "    command: npm ci",
  "  - type: parallel",
  "    name: checks",
  "    env: { CHECK: 'yes' }",
  "    steps:",
  "    - name: lint",
  "      command: [npm, run, lint]",
  "    - name: unit",
  "      command: npm test",
  "      timeout: 20m",
  "      on_fail: continue",
  "  - name: deploy",
  "    type: manual",
  "    branch: main",
  "    tag: '^v[0-9]+(\\.[0-9]+)*$'",
  "    exclude: ^wip/",
  "    command: ./deploy.sh",
);

describe(".slipway.yml", () => {
  it("reads every field into the model, with locations", () => {
    const p = validPipeline({ ".slipway.yml": full });
    expect(p).toMatchObject({ format: "slipway", files: [".slipway.yml"], image: "node:20", env: { NODE_ENV: "test", RETRIES: "3" }, secrets: ["NPM_TOKEN", "DEPLOY_KEY"] });
    expect(p.services.db).toMatchObject({ image: "postgres:16", environment: { POSTGRES_PASSWORD: "ci" }, healthcheck: { command: { kind: "shell", script: "pg_isready -U postgres" }, intervalMs: 1000, retries: 20 }, source: { file: ".slipway.yml", line: 8, col: 3 } });
    expect(p.services.cache!.dependsOn).toEqual(["db"]);
    const [install, checks, deploy] = p.steps as [Step, Group, Step];
    expect(install).toMatchObject({ kind: "step", id: "1", name: "install", command: { kind: "shell", script: "npm ci" }, type: "run", onFail: "stop", source: { line: 19, col: 5 } });
    expect(checks).toMatchObject({ kind: "group", id: "2", type: "parallel", name: "checks", env: { CHECK: "yes" } });
    expect(checks.steps.map((s) => [s.id, (s as Step).name])).toEqual([["2.1", "lint"], ["2.2", "unit"]]);
    expect(checks.steps[0]).toMatchObject({ command: { kind: "argv", argv: ["npm", "run", "lint"] }, source: { line: 25, col: 7 } });
    expect(checks.steps[1]).toMatchObject({ timeoutMs: 20 * 60_000, onFail: "continue" });
    expect(deploy).toMatchObject({ type: "manual", when: { branch: { pattern: "main", regex: false }, tag: { pattern: "^v[0-9]+(\\.[0-9]+)*$", regex: true } }, exclude: { pattern: "^wip/", regex: true } });
  });

  it("accepts .slipway.yaml, comments, x- anchor blocks and merges, a file without a final newline", () => {
    const p = validPipeline({
      ".slipway.yaml": lines(
        "image: alpine:3.20 # small",
        "x-common: &common",
        "  env: { A: '1' }",
        "  timeout: 90",
        "steps:",
        "  - <<: *common",
        "    name: one",
        "    command: echo one",
        "  - <<: *common",
        "    name: two",
        "    command: >-",
        "      echo",
        "      two",
      ),
    });
    expect(flattenSteps(p.steps).map((s) => [s.name, s.timeoutMs, s.env.A])).toEqual([["one", 90_000, "1"], ["two", 90_000, "1"]]);
    expect((p.steps[1] as Step).command).toEqual({ kind: "shell", script: "echo two" });
  });

  it("names each error at its exact line:col", () => {
    const r = readConfig({
      ".slipway.yml": lines(
        "image: node:20",
        "servcies: {}", // 2:1 unknown key
        "services:",
        "  db:",
        "    image: postgres",
        "    depends_on: [web]", // 6:18 unknown service
        "steps:",
        "  - name: a",
        "    command: [echo, \"a\\0b\"]", // 9:21 NUL byte
        "  - name: b",
        "    service: dbx", // 11:14 unknown service
        "    command: b",
        "  - name: c",
        "    branch: ^(main", // 14:13 invalid regex
        "    command: c",
        "    timeout: forever", // 16:14 invalid duration
        "  - type: parallel",
        "    steps: []", // 18:12 empty group
        "  - name: a", // 19:11 duplicate name
        "    command: again",
        "  - name: e",
        "    command: e",
        "    on_fail: maybe", // 23:14 invalid value
      ),
    });
    expect(findings(r)).toEqual([
      ".slipway.yml:2:1 unknown_key",
      ".slipway.yml:6:18 unknown_service",
      ".slipway.yml:9:21 nul_byte",
      ".slipway.yml:11:14 unknown_service",
      ".slipway.yml:14:13 invalid_regex",
      ".slipway.yml:16:14 invalid_value",
      ".slipway.yml:18:12 invalid_value",
      ".slipway.yml:19:11 duplicate_name",
      ".slipway.yml:23:14 invalid_value",
    ]);
    expect(r.pipeline).toBeUndefined();
  });

  it("names a depends_on cycle in full", () => {
    const r = readConfig({
      ".slipway.yml": lines("image: x", "services:", "  a: { image: x, depends_on: [b] }", "  b: { image: x, depends_on: [c] }", "  c: { image: x, depends_on: [a] }", "steps:", "  - command: 'true'"),
    });
    const cycle = r.problems.filter((p) => p.code === "dependency_cycle");
    expect(cycle.map((p) => [p.line, p.col, p.message])).toEqual([[5, 31, "depends_on cycle: a → b → c → a"]]);
  });

  it("refuses a manual step inside a parallel group, at any depth, and accepts it beside the group", () => {
    const parallel = (manual: string) =>
      lines("image: host", "steps:", "  - type: parallel", "    steps:", "      - name: unit", "        command: 'true'", "      - type: serial", "        steps:", "          - name: deploy", `            type: ${manual}`, "            command: ./deploy");
    const r = readConfig({ ".slipway.yml": parallel("manual") });
    expect(findings(r)).toEqual([".slipway.yml:9:13 manual_in_parallel"]);
    expect(r.problems[0]!.message).toContain("the one at line 3");
    expect(r.pipeline).toBeUndefined();
    validPipeline({ ".slipway.yml": parallel("run") });
    validPipeline({ ".slipway.yml": lines("image: host", "steps:", "  - type: parallel", "    steps:", "      - command: 'true'", "  - type: serial", "    steps:", "      - name: deploy", "        type: manual", "        command: ./deploy") });
  });

  it("refuses a step with no image anywhere, and accepts it once the top level has one", () => {
    const steps = lines("steps:", "  - command: make");
    expect(findings(readConfig({ ".slipway.yml": steps }))).toEqual([".slipway.yml:2:5 missing_image"]);
    validPipeline({ ".slipway.yml": `image: gcc\n${steps}` });
  });

  it("refuses image references the runner could not read, where they are, in both formats", () => {
    const top = readConfig({ ".slipway.yml": lines("image: Debian:12", "steps:", "  - command: make") });
    expect(findings(top)).toEqual([".slipway.yml:1:8 invalid_value"]);
    expect(top.problems[0]!.message).toMatch(/image "Debian:12" is not a valid reference .*e\.g\. debian:bookworm/);
    const nested = readConfig({ ".slipway.yml": lines("image: host", "services:", "  db:", "    image: ../../etc", "    command: run", "steps:", "  - name: a", "    image: debian@sha256:abc", "    command: make") });
    expect(findings(nested)).toEqual([".slipway.yml:4:12 invalid_value", ".slipway.yml:8:12 invalid_value"]);
    const codeship = readConfig({ "codeship-services.yml": "app:\n  image: 'a//b'\n", "codeship-steps.yml": "- service: app\n  command: make\n" });
    expect(findings(codeship)).toContain("codeship-services.yml:2:10 invalid_value");
    validPipeline({ ".slipway.yml": lines("image: host", "steps:", "  - name: a", `    image: registry.example.com:5000/team/app:1.2@sha256:${"a".repeat(64)}`, "    command: make") });
  });

  it("reports YAML syntax errors where they are", () => {
    const r = readConfig({ ".slipway.yml": lines("image: x", "steps:", "  - command: [unclosed", "  - command: b") });
    expect(r.problems[0]).toMatchObject({ file: ".slipway.yml", code: "yaml_syntax", severity: "error" });
    expect(r.problems[0]!.line).toBeGreaterThanOrEqual(3);
  });
});
