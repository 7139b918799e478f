import { describe, expect, it } from "vitest";
import { findings, lines, readConfig, validPipeline } from "../../test/helpers/pipeline.js";
import { flattenSteps, selectSteps, slipwayEncryptedPrefix, type Group, type Step } from "./index.js";

const DOCKERFILE = "FROM ruby:3.3\nCOPY . /app\n";

const services = lines(
  "version: '2'",
  "services:",
  "  app:",
  "    build:",
  "      image: acme/app",
  "      dockerfile: Dockerfile.ci",
  "    environment:",
  "      - RAILS_ENV=test",
  "      - 'REDIS_URL=redis://redis:6379'",
  "    encrypted_env_file: deploy.env.encrypted",
  "    depends_on: [redis, postgres]",
  "    cached: true",
  "    default_cache_branch: develop",
  "    volumes:",
  "      - ./tmp:/tmp/out",
  "    add_docker: true",
  "  redis:",
  "    image: redis:7",
  "  postgres:",
  "    image: postgres:16",
  "    environment: { POSTGRES_PASSWORD: ci }",
  "    healthcheck:",
  "      test: [CMD-SHELL, pg_isready]",
  "      interval: 2s",
  "  deployer: &deployer",
  "    image: acme/deployer",
  "    working_dir: /app",
  "    links:",
  "    - app",
  "  deployer-eu:",
  "    <<: *deployer",
  "    environment: [REGION=eu]",
);

// Unquoted and quoted regexes, a group that passes its service down, indented and flush lists, no final newline.
const steps = lines(
  "- name: tests",
  "  type: parallel",
  "  service: app",
  "  steps:",
  "  - name: rspec",
  "    command: bundle exec rspec",
  "  - name: lint",
  "    command: sh -c 'rubocop && echo \"done here\"'",
  "- type: serial",
  "  tag: ^(master|release/.*)$",
  "  steps:",
  "    - name: migrate",
  "      service: deployer",
  "      command: ./migrate.sh",
  "    - name: deploy eu",
  "      service: deployer-eu",
  '      tag: "^release/"',
  "      command: ./deploy.sh eu",
  "- name: never on wip",
  "  service: app",
  "  exclude: ^wip",
  "  command: echo ok",
  "- type: push",
  "  service: app",
  "  image_name: acme/app",
  "  image_tag: \"{{ .Branch }}\"",
  "  registry: registry.example.com",
  "  dockercfg_service: aws",
);

const encrypted = `${slipwayEncryptedPrefix}AAAA.BBBB.CCCC\n`;

describe("Codeship Pro files", () => {
  it("reads services and steps into the same model", () => {
    const p = validPipeline({ "codeship-services.yml": services, "codeship-steps.yml": steps, "deploy.env.encrypted": encrypted });
    expect(p.format).toBe("codeship");
    expect(p.files).toEqual(["codeship-services.yml", "codeship-steps.yml"]);
    expect(p.services.app).toMatchObject({
      build: { context: ".", dockerfile: "Dockerfile.ci", image: "acme/app", args: {} },
      environment: { RAILS_ENV: "test", REDIS_URL: "redis://redis:6379" },
      encryptedEnvFile: ["deploy.env.encrypted"],
      dependsOn: ["redis", "postgres"],
      cached: true,
      defaultCacheBranch: "develop",
      volumes: ["./tmp:/tmp/out"],
      source: { file: "codeship-services.yml", line: 3, col: 3 },
    });
    expect(p.services.postgres!.healthcheck).toMatchObject({ command: { kind: "shell", script: "pg_isready" }, intervalMs: 2000 });
    // The merge key brings the anchored service's settings, and its own environment wins.
    expect(p.services["deployer-eu"]).toMatchObject({ image: "acme/deployer", workingDir: "/app", environment: { REGION: "eu" } });
    const [tests, deploy] = p.steps as [Group, Group];
    expect(tests).toMatchObject({ kind: "group", type: "parallel", service: "app", name: "tests" });
    // Codeship runs commands without a shell: quotes group words, nothing else happens to them.
    expect((tests.steps[1] as Step).command).toEqual({ kind: "argv", argv: ["sh", "-c", 'rubocop && echo "done here"'] });
    expect(deploy.when.ref).toEqual({ pattern: "^(master|release/.*)$", regex: true });
    expect((deploy.steps[1] as Step).when.ref).toEqual({ pattern: "^release/", regex: true });
    const push = p.steps[3] as Step;
    expect(push).toMatchObject({ type: "push", push: { imageName: "acme/app", imageTag: "{{ .Branch }}", registry: "registry.example.com" } });
  });

  it("warns about every key it recognises but does not act on, and still passes", () => {
    const r = readConfig({ "codeship-services.yml": services, "codeship-steps.yml": steps, "deploy.env.encrypted": encrypted, "Dockerfile.ci": DOCKERFILE });
    expect(findings(r, "error")).toEqual([]);
    expect(findings(r, "warning")).toEqual([
      "codeship-services.yml:16:5 unsupported_key", // add_docker
      "codeship-services.yml:28:5 unsupported_key", // links, once though deployer-eu merges it in
      "codeship-steps.yml:28:3 unsupported_key", // dockercfg_service
    ]);
    expect(r.problems.find((p) => p.line === 16)!.message).toContain('"add_docker"');
  });

  it("checks a service's Dockerfile now, at its own lines, without holding up the steps that do not need it", () => {
    const broken = readConfig({ "codeship-services.yml": services, "codeship-steps.yml": steps, "deploy.env.encrypted": encrypted, "Dockerfile.ci": "FROM ruby:3.3\nVOLUME /data\nCOPY ../x /x\n" });
    expect(findings(broken, "error")).toEqual([]);
    expect(findings(broken, "warning")).toEqual(expect.arrayContaining(["Dockerfile.ci:2:1 unsupported_instruction", "Dockerfile.ci:3:6 outside_context"]));
    const missing = readConfig({ "codeship-services.yml": services, "codeship-steps.yml": steps, "deploy.env.encrypted": encrypted });
    expect(missing.problems.find((p) => p.code === "missing_dockerfile")).toMatchObject({ file: "codeship-services.yml", line: 4, col: 5, severity: "warning", message: 'the Dockerfile of service "app", Dockerfile.ci, does not exist' });
  });

  it("steps inherit their group's service and filters when selected for a ref", () => {
    const p = validPipeline({ "codeship-services.yml": services, "codeship-steps.yml": steps, "deploy.env.encrypted": encrypted, "Dockerfile.ci": DOCKERFILE });
    const names = (branch: string) => flattenSteps(selectSteps(p, { branch })).map((s) => `${s.name}@${s.service}`);
    expect(names("feature/x")).toEqual(["rspec@app", "lint@app", "never on wip@app", "app: push acme/app@app"]);
    expect(names("release/2.0")).toContain("deploy eu@deployer-eu");
    expect(names("master")).toContain("migrate@deployer");
    expect(names("master")).not.toContain("deploy eu@deployer-eu");
    expect(names("wip-thing")).not.toContain("never on wip@app");
  });

  it("reads .yaml and .json variants the same way", () => {
    const json = JSON.stringify([{ type: "parallel", service: "app", steps: [{ name: "a", command: "echo a" }, { name: "b", command: "echo b" }] }], null, 2);
    const p = validPipeline({ "codeship-services.yaml": "app:\n  image: ruby:3.3", "codeship-steps.json": json });
    expect(p.files).toEqual(["codeship-services.yaml", "codeship-steps.json"]);
    expect(flattenSteps(p.steps).map((s) => s.name)).toEqual(["a", "b"]);
    expect(p.steps[0]!.source).toEqual({ file: "codeship-steps.json", line: 2, col: 3 });
  });

  it("expands a matrix group into one copy per service", () => {
    const p = validPipeline({
      "codeship-services.yml": "ruby2: { image: 'ruby:2' }\nruby3: { image: 'ruby:3' }\n",
      "codeship-steps.yml": "- type: matrix\n  services: [ruby2, ruby3]\n  steps:\n  - command: ruby -v\n",
    });
    const copies = (p.steps[0] as Group).steps as Group[];
    expect(copies.map((g) => [g.service, g.id, g.steps[0]!.id])).toEqual([["ruby2", "1.1", "1.1.1"], ["ruby3", "1.2", "1.2.1"]]);
  });

  it("names each error at its exact line:col", () => {
    const r = readConfig({
      "codeship-services.yml": lines(
        "web:",
        "  image: nginx",
        "  depends_on: [api]",
        "  healthz: true", // 4:3 key no format documents
        "api:",
        "  image: api",
        "  depends_on:",
        "    - web", // 8:7 closes the cycle
        "secrets:",
        "  image: x",
        "  encrypted_env_file: codeship.env.encrypted", // 11:23 Codeship's own encryption
        "  env_file: missing.env", // 12:13 missing
      ),
      "codeship.env.encrypted": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n",
      "codeship-steps.yml": lines(
        "- service: web",
        "  command: \"echo \\0\"", // 2:12 NUL
        "- service: nginx", // 3:12 unknown service
        "  command: x",
        "- service: web",
        "  tag: '^(v1'", // 6:8 invalid regex
        "  command: x",
        "- type: parallel",
        "  steps:",
        "    - command: no service", // 10:7 no service
      ),
    });
    expect(findings(r)).toEqual([
      "codeship-services.yml:4:3 unknown_key",
      "codeship-services.yml:8:7 dependency_cycle",
      "codeship-services.yml:11:23 codeship_encrypted",
      "codeship-services.yml:12:13 missing_file",
      "codeship-steps.yml:2:12 nul_byte",
      "codeship-steps.yml:3:12 unknown_service",
      "codeship-steps.yml:6:8 invalid_regex",
      "codeship-steps.yml:10:7 missing_field",
    ]);
    const reencrypt = r.problems.find((p) => p.code === "codeship_encrypted")!;
    expect(reencrypt.hint).toContain("slipway secrets encrypt");
  });

  it("accepts a Slipway-encrypted file where the Codeship one was refused", () => {
    const config = { "codeship-services.yml": "app:\n  image: x\n  encrypted_env_file: app.env.encrypted\n", "codeship-steps.yml": "- service: app\n  command: 'true'\n" };
    expect(findings(readConfig({ ...config, "app.env.encrypted": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=" }))).toEqual(["codeship-services.yml:3:23 codeship_encrypted"]);
    expect(findings(readConfig({ ...config, "app.env.encrypted": "FOO=bar\n" }))).toEqual(["codeship-services.yml:3:23 not_encrypted"]);
    validPipeline({ ...config, "app.env.encrypted": encrypted });
  });

  it("refuses a manual step or manual group inside a parallel or matrix group, and accepts them in serial order", () => {
    const servicesFile = "app:\n  image: host\n";
    const r = readConfig({
      "codeship-services.yml": servicesFile,
      "codeship-steps.yml": lines(
        "- type: parallel",
        "  service: app",
        "  steps:",
        "    - command: 'true'",
        "    - type: manual", // 5:7 manual group in a parallel group
        "      steps:",
        "        - command: ./deploy",
        "- type: matrix",
        "  services: [app]",
        "  steps:",
        "    - type: manual", // 11:7 manual step in a matrix (parallel) group
        "      command: ./release",
      ),
    });
    expect(findings(r)).toEqual(["codeship-steps.yml:5:7 manual_in_parallel", "codeship-steps.yml:11:7 manual_in_parallel"]);
    const ok = validPipeline({
      "codeship-services.yml": servicesFile,
      "codeship-steps.yml": lines("- type: parallel", "  service: app", "  steps:", "    - command: 'true'", "- type: manual", "  service: app", "  steps:", "    - type: manual", "      command: ./deploy"),
    });
    expect(ok.steps[1]).toMatchObject({ kind: "group", type: "serial", manual: true });
  });

  it("refuses paths that leave the repository", () => {
    const r = readConfig({ "codeship-services.yml": "app:\n  image: x\n  env_file: ../../etc/passwd\n", "codeship-steps.yml": "- service: app\n" });
    expect(findings(r)).toEqual(["codeship-services.yml:3:13 invalid_path"]);
  });

  it("needs a services file beside the steps, and falls back to docker-compose.yml as Codeship did", () => {
    const stepsOnly = { "codeship-steps.yml": "- service: app\n  command: 'true'\n" };
    expect(findings(readConfig(stepsOnly))).toEqual(["codeship-steps.yml:0:0 missing_file"]);
    expect(validPipeline({ ...stepsOnly, "docker-compose.yml": "services:\n  app:\n    image: alpine\n" }).files).toEqual(["docker-compose.yml", "codeship-steps.yml"]);
  });

  it("prefers .slipway.yml and says the Codeship files are ignored", () => {
    const r = readConfig({ ".slipway.yml": "image: x\nsteps:\n  - command: 'true'\n", "codeship-steps.yml": "- service: nope\n" });
    expect(r.pipeline?.format).toBe("slipway");
    expect(findings(r, "warning")).toEqual(["codeship-steps.yml:0:0 ignored_file"]);
  });
});
