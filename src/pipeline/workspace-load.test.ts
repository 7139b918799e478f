import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { memoryFiles } from "./files.js";
import { formatProblem } from "./problems.js";
import { readWorkspaceConfig } from "./workspace-load.js";

const lines = (...l: string[]) => l.join("\n") + "\n";
const read = (files: Record<string, string>) => readWorkspaceConfig(memoryFiles(files));
const said = (files: Record<string, string>) => read(files).problems.map((p) => formatProblem(p));

describe("workspace config: .gitpod.yml", () => {
  const gitpod = lines(
    "image: node:20",
    "tasks:",
    "  - name: server",
    "    before: export PORT=3000",
    "    init: npm ci",
    "    command: npm start",
    "    env: { DEBUG: 1 }",
    "    openMode: split-left",
    "  - command: npm run watch",
    "ports:",
    "  - port: 3000",
    "    visibility: public",
    "    onOpen: open-preview",
    "    name: web",
    "  - port: 9000-9002",
    "    onOpen: ignore-completely",
    "env: { TZ: UTC }",
    "workspaceLocation: app",
    "gitConfig: { pull.rebase: 'true' }",
    "vscode:",
    "  extensions: [dbaeumer.vscode-eslint]",
  );

  it("reads tasks, ports, env, location and git config", () => {
    const { config, problems } = read({ ".gitpod.yml": gitpod });
    expect(config).toMatchObject({
      format: "gitpod",
      file: ".gitpod.yml",
      image: { kind: "image", ref: "node:20" },
      env: { TZ: "UTC" },
      location: "app",
      gitConfig: { "pull.rebase": "true" },
      tasks: [
        { name: "server", before: { kind: "shell", script: "export PORT=3000" }, init: { kind: "shell", script: "npm ci" }, command: { kind: "shell", script: "npm start" }, env: { DEBUG: "1" }, source: { file: ".gitpod.yml", line: 3, col: 5 } },
        { name: "task 2", command: { kind: "shell", script: "npm run watch" } },
      ],
      ports: [
        { from: 3000, to: 3000, visibility: "public", onOpen: "open-preview", name: "web", protocol: "http" },
        { from: 9000, to: 9002, visibility: "private", onOpen: "ignore" },
      ],
    });
    expect(problems.map((p) => formatProblem(p))).toEqual(['.gitpod.yml:20:1: warning: "vscode" is not supported and is ignored (editor extensions are installed by your editor)']);
  });

  it("builds the image from a Dockerfile named by image.file", () => {
    const { config } = read({ ".gitpod.yml": "image:\n  file: .gitpod.Dockerfile\n", ".gitpod.Dockerfile": "FROM debian:12\nRUN true\n" });
    expect(config?.image).toEqual({ kind: "build", build: { context: ".", dockerfile: ".gitpod.Dockerfile", args: {}, encryptedArgsFile: [] } });
    const nested = read({ ".gitpod.yml": "image: { file: docker/dev.Dockerfile, context: docker }\n", "docker/dev.Dockerfile": "FROM debian:12\n" });
    expect(nested.config?.image).toMatchObject({ build: { context: "docker", dockerfile: "dev.Dockerfile" } });
  });

  it("points at the exact place of each mistake", () => {
    expect(
      said({
        ".gitpod.yml": lines("image:", "  file: ../outside.Dockerfile", "tasks:", "  - name: x", "    comand: make", "ports:", "  - port: 70000", "  - port: 5-1", "  - port: 1-5000", "colour: blue"),
      }),
    ).toEqual([
      '.gitpod.yml:2:9: error: "../outside.Dockerfile" leaves the repository (use a relative path inside it)',
      ".gitpod.yml:4:5: warning: this task has no before, init or command",
      '.gitpod.yml:5:5: error: unknown key "comand" (in tasks[0])',
      '.gitpod.yml:7:11: error: 70000 is not a port (1-65535) or a range of ports like "3000-3010"',
      '.gitpod.yml:8:11: error: "5-1" is not a port (1-65535) or a range of ports like "3000-3010"',
      '.gitpod.yml:9:11: error: the range 1-5000 has more than 1000 ports (name the ports the project uses)',
      '.gitpod.yml:10:1: error: unknown key "colour"',
    ]);
    expect(read({ ".gitpod.yml": "tasks: [{ name: x, command: make }]\nports: [{ port: 1 }]\ncolour: 1\n" }).config).toBeUndefined();
  });

  it("says where a missing or broken Dockerfile is, as a warning", () => {
    expect(said({ ".gitpod.yml": "image: { file: Dev.Dockerfile }\n" })).toEqual([".gitpod.yml:1:16: warning: the Dockerfile of the workspace image, Dev.Dockerfile, does not exist"]);
  });

  it("reads an empty file as a shell on the default image", () => {
    expect(read({ ".gitpod.yml": "" }).config).toMatchObject({ format: "gitpod", image: { kind: "image", ref: "host" }, tasks: [] });
  });
});

describe("workspace config: devcontainer.json", () => {
  const devcontainer = lines(
    "// A dev container, as VS Code writes them",
    "{",
    '  "name": "api", /* named */',
    '  "build": { "dockerfile": "Dockerfile", "context": "..", "args": { "VARIANT": 20 }, },',
    '  "forwardPorts": [3000, "localhost:5432", "db:5432"],',
    '  "portsAttributes": { "3000": { "label": "App", "onAutoForward": "openBrowser" }, "9229": { "label": "debug" } },',
    '  "containerEnv": { "APP_HOME": "${containerWorkspaceFolder}/app", "URL": "http://x//y" },',
    '  "remoteEnv": { "PATH_EXTRA": "${containerEnv:APP_HOME}/bin", "TOKEN": "${localEnv:TOKEN:none}", "GONE": null },',
    '  "onCreateCommand": "echo created",',
    '  "postCreateCommand": ["npm", "install", "--no-audit"],',
    '  "postStartCommand": { "server": "npm start", "worker": ["node", "worker.js"] },',
    '  "features": { "ghcr.io/devcontainers/features/node:1": {}, "ghcr.io/devcontainers/features/go:1": { "version": "1.22" } },',
    '  "customizations": { "vscode": { "extensions": ["x"] } },',
    '  "initializeCommand": "docker login",',
    '  "workspaceFolder": "/workspace/app",',
    "}",
  );

  it("reads JSON with comments and trailing commas, with the spec's variables", () => {
    const { config, problems } = read({ ".devcontainer/devcontainer.json": devcontainer, ".devcontainer/Dockerfile": "FROM debian:12\n" });
    expect(config).toMatchObject({
      format: "devcontainer",
      file: ".devcontainer/devcontainer.json",
      image: { kind: "build", build: { context: ".", dockerfile: ".devcontainer/Dockerfile", args: { VARIANT: "20" } } },
      env: { APP_HOME: "/workspace/app", URL: "http://x//y", PATH_EXTRA: "/workspace/app/bin", TOKEN: "none" },
      location: "app",
      ports: [
        { from: 3000, to: 3000, name: "App", onOpen: "open-browser" },
        { from: 5432, to: 5432, onOpen: "notify" },
        { from: 9229, to: 9229, name: "debug" },
      ],
      tasks: [{ name: "api", source: { file: ".devcontainer/devcontainer.json", line: 9, col: 3 } }],
    });
    expect(config?.env).not.toHaveProperty("GONE");
    expect(problems.map((p) => formatProblem(p))).toEqual([
      '.devcontainer/devcontainer.json:5:44: warning: ports of other hosts ("db:5432") are not supported (forward the workspace\'s own ports)',
      '.devcontainer/devcontainer.json:12:3: warning: "features" is not supported and is ignored',
      '.devcontainer/devcontainer.json:12:17: warning: feature "ghcr.io/devcontainers/features/node:1" is not supported yet and is not installed (install the tool in the image (build.dockerfile))',
      '.devcontainer/devcontainer.json:12:62: warning: feature "ghcr.io/devcontainers/features/go:1" is not supported yet and is not installed (install the tool in the image (build.dockerfile))',
      ".devcontainer/devcontainer.json:14:3: warning: \"initializeCommand\" is not supported and is ignored (it runs on the developer's own machine, and Slipway runs a repository's commands only inside the workspace)",
    ]);
  });

  it("runs the lifecycle commands in the spec's order, an object's side by side, and fails when one fails", async () => {
    const { config } = read({ ".devcontainer.json": devcontainer.replace(/"build".*\n/, '"image": "debian:12",\n') });
    const task = config!.tasks[0]!;
    const run = promisify(execFile);
    expect(task.init?.kind).toBe("shell");
    const init = task.init!.kind === "shell" ? task.init!.script : "";
    const command = task.command!.kind === "shell" ? task.command!.script : "";
    const stub = (script: string) => `npm() { echo "npm $*"; }; node() { echo "node $*"; }\n${script}`;
    await expect(run("/bin/sh", ["-c", stub(init)])).resolves.toMatchObject({ stdout: "created\nnpm install --no-audit\n" });
    const started = (await run("/bin/sh", ["-c", stub(command)])).stdout.split("\n").filter(Boolean).sort();
    expect(started).toEqual(["node worker.js", "npm start"]);
    await expect(run("/bin/sh", ["-c", stub(command.replace("npm start", "exit 3"))])).rejects.toMatchObject({ code: 1 });
    await expect(run("/bin/sh", ["-c", init.replace("echo created", "false")])).rejects.toMatchObject({ code: 1 });
  });

  it("reads the older dockerFile spelling, relative to the file's folder", () => {
    const { config } = read({ ".devcontainer/devcontainer.json": '{ "dockerFile": "dev.Dockerfile" }', ".devcontainer/dev.Dockerfile": "FROM debian:12\n" });
    expect(config?.image).toMatchObject({ kind: "build", build: { context: ".devcontainer", dockerfile: "dev.Dockerfile" } });
  });

  it("points at the exact place of each mistake", () => {
    expect(said({ ".devcontainer/devcontainer.json": lines("{", '  "image": "debian:12",', '  "forwardPorts": [0],', '  "imag": "x"', "}") })).toEqual([
      '.devcontainer/devcontainer.json:3:20: error: 0 is not a port (1-65535) or a range of ports like "3000-3010"',
      '.devcontainer/devcontainer.json:4:3: error: unknown key "imag"',
    ]);
    expect(said({ ".devcontainer.json": '{\n  "postCreateCommand": 5\n}' })).toEqual([
      ".devcontainer.json:2:24: error: postCreateCommand: expected a shell command, a list of arguments, or an object of commands run in parallel",
    ]);
    expect(said({ ".devcontainer.json": '{ "image": "x", /* open' })[0]).toMatch(/^\.devcontainer\.json:1:\d+: error: /);
    expect(said({ ".devcontainer.json": "[1, 2]" })).toEqual([".devcontainer.json:1:1: error: .devcontainer.json must hold one JSON object"]);
    expect(said({ ".devcontainer.json": '{ "image": "a", "image": "b" }' })[0]).toMatch(/^\.devcontainer\.json:1:17: error: Map keys must be unique/);
  });
});

describe("workspace config: which file", () => {
  const slipway = lines(
    "steps:",
    "  - command: make test",
    "    image: debian:12",
    "workspace:",
    "  image: debian:12",
    "  env: { EDITOR: vi }",
    "  tasks:",
    "    - name: db",
    "      init: [make, seed]",
    "      command: make db",
    "  ports:",
    "    - { port: 5432, visibility: private, on_open: ignore }",
    "  location: src",
    "  git_config: { user.name: Dev }",
  );

  it("reads the workspace section of .slipway.yml first, and says which files it ignored", () => {
    const { config, problems } = read({ ".slipway.yml": slipway, ".gitpod.yml": "image: node:20\n", ".devcontainer.json": "{}" });
    expect(config).toMatchObject({
      format: "slipway",
      image: { kind: "image", ref: "debian:12" },
      env: { EDITOR: "vi" },
      tasks: [{ name: "db", init: { kind: "argv", argv: ["make", "seed"] }, command: { kind: "shell", script: "make db" } }],
      ports: [{ from: 5432, to: 5432, onOpen: "ignore", visibility: "private" }],
      location: "src",
      gitConfig: { "user.name": "Dev" },
    });
    expect(problems.map((p) => formatProblem(p))).toEqual([".devcontainer.json: warning: .devcontainer.json is ignored because .slipway.yml sets up the workspace", ".gitpod.yml: warning: .gitpod.yml is ignored because .slipway.yml sets up the workspace"]);
  });

  it("uses .gitpod.yml when .slipway.yml holds only the pipeline, even a broken one", () => {
    expect(read({ ".slipway.yml": "steps: [", ".gitpod.yml": "image: node:20\n" })).toMatchObject({ config: { format: "gitpod" }, problems: [] });
    expect(said({ ".slipway.yml": "workspace:\n  image: [\n" })[0]).toMatch(/^\.slipway\.yml:\d+:\d+: error: /);
  });

  it("builds a workspace image with the build section", () => {
    const { config } = read({ ".slipway.yml": "workspace:\n  build: { context: dev, args: { V: 1 } }\n", "dev/Dockerfile": "FROM debian:12\n" });
    expect(config?.image).toEqual({ kind: "build", build: { context: "dev", dockerfile: "Dockerfile", args: { V: "1" }, encryptedArgsFile: [] } });
    expect(said({ ".slipway.yml": "workspace:\n  image: debian:12\n  build: { context: . }\n", Dockerfile: "FROM x\n" })).toContain(".slipway.yml:3:3: error: image and build both name the workspace image (keep one)");
  });

  it("gives a shell on the host image in a repository with no workspace config", () => {
    expect(read({ "README.md": "hi" })).toEqual({ config: { format: "none", image: { kind: "image", ref: "host" }, env: {}, tasks: [], ports: [], location: "", gitConfig: {} }, problems: [] });
  });
});
