import { z } from "zod";
import { envMapSchema, imageSchema, readEnvMap, readRepoPath } from "./common.js";
import type { FileSource } from "./files.js";
import { problemAt, type Problem } from "./problems.js";
import type { ParsedFile } from "./source.js";
import { gitConfigSchema, portWith, dropUnsupported, portValueSchema, readPortRange, readTaskCommand, readWorkspaceBuild } from "./workspace-common.js";
import { defaultWorkspaceConfig, type WorkspaceConfig, type WorkspacePort, type WorkspaceTask } from "./workspace-model.js";

/** `.gitpod.yml`, as Gitpod documented it. */

const taskSchema = z.strictObject({
  name: z.string().optional(),
  before: z.string().optional(),
  init: z.string().optional(),
  command: z.string().optional(),
  env: envMapSchema.optional(),
  /** Where the terminal opened in Gitpod's editor: layout only. */
  openIn: z.enum(["bottom", "main", "left", "right"]).optional(),
  openMode: z.enum(["split-top", "split-left", "split-right", "tab-before", "tab-after"]).optional(),
});

const portSchema = z.strictObject({
  port: portValueSchema,
  onOpen: z.enum(["open-browser", "open-preview", "notify", "ignore", "ignore-completely"]).optional(),
  visibility: z.enum(["private", "public"]).optional(),
  name: z.string().optional(),
  description: z.string().optional(),
  protocol: z.enum(["http", "https"]).optional(),
});

const topSchema = z.strictObject({
  image: z.union([imageSchema, z.strictObject({ file: z.string().min(1), context: z.string().min(1).optional() })], { error: "expected an image name, or {file, context} to build one" }).optional(),
  tasks: z.array(z.unknown()).optional(),
  ports: z.array(z.unknown()).optional(),
  env: envMapSchema.optional(),
  workspaceLocation: z.string().min(1).optional(),
  checkoutLocation: z.string().min(1).optional(),
  gitConfig: gitConfigSchema.optional(),
});

const UNSUPPORTED: Record<string, string> = {
  vscode: "editor extensions are installed by your editor",
  jetbrains: "editor settings are kept by your editor",
  github: "prebuilds are Slipway pipelines (.slipway.yml)",
  additionalRepositories: "open each repository as its own workspace",
  mainConfiguration: "",
  coreDump: "",
  experimentalNetwork: "",
};

const TASK_UNSUPPORTED: Record<string, string> = {
  prebuild: "prebuilds are Slipway pipelines (.slipway.yml)",
};

export function readGitpodConfig(file: ParsedFile, files: FileSource, problems: Problem[]): WorkspaceConfig | undefined {
  const top = file.check(topSchema, dropUnsupported(file.value ?? {}, UNSUPPORTED, file, [], problems), [], problems);
  if (!top) return undefined;
  const config = { ...defaultWorkspaceConfig(), format: "gitpod" as const, file: file.file };
  if (typeof top.image === "string") config.image = { kind: "image", ref: top.image };
  else if (top.image) {
    const built = readWorkspaceBuild({ dockerfile: top.image.file, context: top.image.context }, ".", { dockerfile: ["image", "file"], context: ["image", "context"], args: [] }, file, files, problems);
    if (built) config.image = built;
  }
  config.env = readEnvMap(top.env, file, ["env"], problems);
  config.tasks = (top.tasks ?? []).flatMap((raw, i) => readTask(raw, i, file, problems) ?? []);
  config.ports = (top.ports ?? []).flatMap((raw, i) => readPort(raw, i, file, problems) ?? []);
  const location = top.workspaceLocation ?? top.checkoutLocation;
  if (location !== undefined) {
    const key = top.workspaceLocation !== undefined ? "workspaceLocation" : "checkoutLocation";
    config.location = readRepoPath(location, file, [key], problems) ?? "";
  }
  config.gitConfig = top.gitConfig ?? {};
  return config;
}

function readTask(raw: unknown, i: number, file: ParsedFile, problems: Problem[]): WorkspaceTask | undefined {
  const path = ["tasks", i];
  const t = file.check(taskSchema, dropUnsupported(raw, TASK_UNSUPPORTED, file, path, problems), path, problems);
  if (!t) return undefined;
  const command = (key: "before" | "init" | "command") => readTaskCommand(t[key], file, [...path, key], problems);
  const task = { name: t.name ?? `task ${i + 1}`, before: command("before"), init: command("init"), command: command("command"), env: readEnvMap(t.env, file, [...path, "env"], problems), source: file.at(path) };
  if (!task.before && !task.init && !task.command) problems.push(problemAt(file.at(path), "empty_task", "this task has no before, init or command", undefined, "warning"));
  return task;
}

function readPort(raw: unknown, i: number, file: ParsedFile, problems: Problem[]): WorkspacePort | undefined {
  const path = ["ports", i];
  const p = file.check(portSchema, raw, path, problems);
  const range = p && readPortRange(p.port, file, [...path, "port"], problems);
  if (!p || !range) return undefined;
  return portWith(range, { name: p.name, description: p.description, visibility: p.visibility, onOpen: p.onOpen === "ignore-completely" ? "ignore" : p.onOpen, protocol: p.protocol });
}
