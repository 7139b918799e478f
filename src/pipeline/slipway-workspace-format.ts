import { z } from "zod";
import { envMapSchema, imageSchema, readEnvMap, readRepoPath } from "./common.js";
import type { FileSource } from "./files.js";
import { problemAt, type Problem } from "./problems.js";
import type { ParsedFile } from "./source.js";
import { gitConfigSchema, portWith, portValueSchema, readPortRange, readTaskCommand, readWorkspaceBuild } from "./workspace-common.js";
import { defaultWorkspaceConfig, portVisibilitySchema, type WorkspaceConfig } from "./workspace-model.js";

/** The `workspace:` section of `.slipway.yml`: Gitpod's ideas in Slipway's spelling. */

const commandValue = z.union([z.string(), z.array(z.string()).min(1)], { error: "expected a shell string or a list of arguments" });

const workspaceSchema = z.strictObject({
  image: imageSchema.optional(),
  build: z.strictObject({ dockerfile: z.string().min(1).optional(), context: z.string().min(1).optional(), args: envMapSchema.optional(), target: z.string().min(1).optional() }).optional(),
  env: envMapSchema.optional(),
  tasks: z
    .array(z.strictObject({ name: z.string().min(1).optional(), before: commandValue.optional(), init: commandValue.optional(), command: commandValue.optional(), env: envMapSchema.optional() }))
    .optional(),
  ports: z
    .array(
      z.strictObject({
        port: portValueSchema,
        name: z.string().optional(),
        description: z.string().optional(),
        visibility: portVisibilitySchema.optional(),
        on_open: z.enum(["open-browser", "open-preview", "notify", "ignore"]).optional(),
        protocol: z.enum(["http", "https"]).optional(),
      }),
    )
    .optional(),
  location: z.string().min(1).optional(),
  git_config: gitConfigSchema.optional(),
});

export function readSlipwayWorkspace(file: ParsedFile, files: FileSource, problems: Problem[]): WorkspaceConfig | undefined {
  const w = file.check(workspaceSchema, (file.value as { workspace?: unknown }).workspace ?? {}, ["workspace"], problems);
  if (!w) return undefined;
  const config = { ...defaultWorkspaceConfig(), format: "slipway" as const, file: file.file };
  if (w.image !== undefined && w.build !== undefined) problems.push(problemAt(file.at(["workspace", "build"], "key"), "conflicting_keys", "image and build both name the workspace image", "keep one"));
  if (w.build) {
    const b = w.build;
    const context = b.context ?? ".";
    const built = readWorkspaceBuild({ ...b, dockerfile: `${context}/${b.dockerfile ?? "Dockerfile"}`, context }, ".", { dockerfile: ["workspace", "build", b.dockerfile ? "dockerfile" : "context"], context: ["workspace", "build", "context"], args: ["workspace", "build", "args"] }, file, files, problems);
    if (built) config.image = built;
  } else if (w.image !== undefined) config.image = { kind: "image", ref: w.image };
  config.env = readEnvMap(w.env, file, ["workspace", "env"], problems);
  config.tasks = (w.tasks ?? []).map((t, i) => {
    const path = ["workspace", "tasks", i];
    const command = (key: "before" | "init" | "command") => readTaskCommand(t[key], file, [...path, key], problems);
    return { name: t.name ?? `task ${i + 1}`, before: command("before"), init: command("init"), command: command("command"), env: readEnvMap(t.env, file, [...path, "env"], problems), source: file.at(path) };
  });
  config.ports = (w.ports ?? []).flatMap((p, i) => {
    const range = readPortRange(p.port, file, ["workspace", "ports", i, "port"], problems);
    if (!range) return [];
    return [portWith(range, { name: p.name, description: p.description, visibility: p.visibility, onOpen: p.on_open, protocol: p.protocol })];
  });
  if (w.location !== undefined) config.location = readRepoPath(w.location, file, ["workspace", "location"], problems) ?? "";
  config.gitConfig = w.git_config ?? {};
  return config;
}
