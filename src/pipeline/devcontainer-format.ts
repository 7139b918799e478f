import { posix } from "node:path";
import { z } from "zod";
import { commandScript, envMapSchema, envNameSchema, imageSchema, readEnvMap } from "./common.js";
import type { FileSource } from "./files.js";
import type { Command } from "./model.js";
import { problemAt, type Problem } from "./problems.js";
import type { ParsedFile, Path } from "./source.js";
import { portWith, dropUnsupported, portValueSchema, readPortRange, readTaskCommand, readWorkspaceBuild } from "./workspace-common.js";
import { defaultWorkspaceConfig, type WorkspaceConfig, type WorkspacePort, type WorkspaceTask } from "./workspace-model.js";
import { WORKSPACE } from "../sandbox/backend.js";

/** `devcontainer.json` (JSON with comments), as the Dev Container specification defines it. */

const lifecycleSchema = z.union([z.string(), z.array(z.string()).min(1), z.record(z.string(), z.union([z.string(), z.array(z.string()).min(1)]))], {
  error: "expected a shell command, a list of arguments, or an object of commands run in parallel",
});

const portAttributesSchema = z.strictObject({
  label: z.string().optional(),
  onAutoForward: z.enum(["notify", "openBrowser", "openBrowserOnce", "openPreview", "silent", "ignore"]).optional(),
  protocol: z.enum(["http", "https"]).optional(),
  requireLocalPort: z.boolean().optional(),
  elevateIfNeeded: z.boolean().optional(),
});

const buildSchema = z.strictObject({
  dockerfile: z.string().min(1),
  context: z.string().min(1).optional(),
  args: envMapSchema.optional(),
  target: z.string().min(1).optional(),
});

const topSchema = z.strictObject({
  $schema: z.string().optional(),
  name: z.string().optional(),
  image: imageSchema.optional(),
  build: buildSchema.optional(),
  /** The older spelling of build.dockerfile, with `context` beside it. */
  dockerFile: z.string().min(1).optional(),
  context: z.string().min(1).optional(),
  forwardPorts: z.array(portValueSchema).optional(),
  portsAttributes: z.record(z.string(), portAttributesSchema).optional(),
  containerEnv: envMapSchema.optional(),
  remoteEnv: z.record(envNameSchema, z.union([z.string(), z.null()])).optional(),
  onCreateCommand: lifecycleSchema.optional(),
  updateContentCommand: lifecycleSchema.optional(),
  postCreateCommand: lifecycleSchema.optional(),
  postStartCommand: lifecycleSchema.optional(),
  postAttachCommand: lifecycleSchema.optional(),
  workspaceFolder: z.string().min(1).optional(),
  /** Settings of editors and tools: each reads its own, Slipway has none. */
  customizations: z.record(z.string(), z.unknown()).optional(),
});

const UNSUPPORTED: Record<string, string> = {
  initializeCommand: "it runs on the developer's own machine, and Slipway runs a repository's commands only inside the workspace",
  features: "",
  dockerComposeFile: "use image or build",
  service: "",
  runServices: "",
  workspaceMount: "the repository is cloned into /workspace",
  mounts: "only /workspace persists",
  runArgs: "",
  appPort: "use forwardPorts",
  otherPortsAttributes: "",
  shutdownAction: "",
  overrideCommand: "",
  waitFor: "",
  userEnvProbe: "",
  hostRequirements: "",
  privileged: "a workspace never gets host privileges",
  capAdd: "a workspace never gets host privileges",
  securityOpt: "a workspace never gets host privileges",
  init: "",
  remoteUser: "commands run as the workspace's own user",
  containerUser: "commands run as the workspace's own user",
  updateRemoteUserUID: "",
};

const CREATE = ["onCreateCommand", "updateContentCommand", "postCreateCommand"] as const;
const START = ["postStartCommand", "postAttachCommand"] as const;

export function readDevcontainerConfig(file: ParsedFile, files: FileSource, problems: Problem[]): WorkspaceConfig | undefined {
  const raw = file.value ?? {};
  reportFeatures(raw, file, problems);
  const top = file.check(topSchema, dropUnsupported(raw, UNSUPPORTED, file, [], problems), [], problems);
  if (!top) return undefined;
  const config = { ...defaultWorkspaceConfig(), format: "devcontainer" as const, file: file.file };
  const dir = posix.dirname(file.file);
  const containerEnv = readEnvMap(top.containerEnv, file, ["containerEnv"], problems);
  const vars = substitution(containerEnv);
  if (top.image !== undefined && (top.build ?? top.dockerFile) !== undefined) problems.push(problemAt(file.at(["image"], "key"), "conflicting_keys", "image and build (or dockerFile) both name the image", "keep one"));
  if (top.build) {
    const built = readWorkspaceBuild(top.build, dir, { dockerfile: ["build", "dockerfile"], context: ["build", "context"], args: ["build", "args"] }, file, files, problems);
    if (built) config.image = built;
  } else if (top.dockerFile) {
    const built = readWorkspaceBuild({ dockerfile: top.dockerFile, context: top.context }, dir, { dockerfile: ["dockerFile"], context: ["context"], args: [] }, file, files, problems);
    if (built) config.image = built;
  } else if (top.image !== undefined) {
    config.image = { kind: "image", ref: top.image };
  }
  const remoteEnv = readEnvMap(Object.fromEntries(Object.entries(top.remoteEnv ?? {}).filter((e): e is [string, string] => e[1] !== null)), file, ["remoteEnv"], problems);
  config.env = Object.fromEntries(Object.entries({ ...containerEnv, ...remoteEnv }).map(([k, v]) => [k, vars(v)]));
  const task = lifecycleTask(top, file, problems, vars);
  if (task) config.tasks = [task];
  config.ports = readPorts(top.forwardPorts ?? [], top.portsAttributes ?? {}, file, problems);
  if (top.workspaceFolder !== undefined) {
    const folder = posix.normalize(vars(top.workspaceFolder));
    if (folder === WORKSPACE || folder.startsWith(`${WORKSPACE}/`)) config.location = folder.slice(WORKSPACE.length + 1);
    else problems.push(problemAt(file.at(["workspaceFolder"]), "unsupported_value", `the repository is in ${WORKSPACE}, not ${folder}`, `use ${WORKSPACE} or a folder in it`, "warning"));
  }
  return config;
}

/** Features install tools by running their own scripts as root: not yet; the warning names each. */
function reportFeatures(raw: unknown, file: ParsedFile, problems: Problem[]): void {
  const features = raw !== null && typeof raw === "object" ? (raw as Record<string, unknown>).features : undefined;
  if (features === null || typeof features !== "object" || Array.isArray(features)) return;
  for (const name of Object.keys(features)) {
    problems.push(problemAt(file.at(["features", name], "key"), "unsupported_feature", `feature "${name}" is not supported yet and is not installed`, "install the tool in the image (build.dockerfile)", "warning"));
  }
}

/**
 * The spec's variables that mean something in a workspace. The host's own environment
 * (`localEnv`) is not the developer's: only a default given in the file is used.
 */
function substitution(containerEnv: Record<string, string>): (value: string) => string {
  const fixed: Record<string, string> = {
    containerWorkspaceFolder: WORKSPACE,
    localWorkspaceFolder: WORKSPACE,
    containerWorkspaceFolderBasename: posix.basename(WORKSPACE),
    localWorkspaceFolderBasename: posix.basename(WORKSPACE),
  };
  const substitute = (value: string, env: Record<string, string>) =>
    value.replace(/\$\{([A-Za-z]+)(?::([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?)?\}/g, (whole, name: string, variable?: string, fallback?: string) => {
      if (variable === undefined) return fixed[name] ?? whole;
      if (name === "containerEnv") return Object.hasOwn(env, variable) ? env[variable]! : (fallback ?? "");
      if (name === "localEnv") return fallback ?? "";
      return whole;
    });
  // containerEnv's own values may use the fixed variables, not each other.
  const resolved = Object.fromEntries(Object.entries(containerEnv).map(([k, v]) => [k, substitute(v, {})]));
  return (value) => substitute(value, resolved);
}

/**
 * The lifecycle commands in the spec's order, as one task: the create commands once (its init),
 * the start and attach commands on every start. An object's commands run side by side.
 */
function lifecycleTask(top: z.infer<typeof topSchema>, file: ParsedFile, problems: Problem[], vars: (v: string) => string): WorkspaceTask | undefined {
  const script = (keys: readonly (typeof CREATE)[number][] | readonly (typeof START)[number][]): Command | undefined => {
    const parts = keys.flatMap((key) => {
      const value = top[key];
      if (value === undefined) return [];
      if (typeof value === "string" || Array.isArray(value)) return asScript(value, [key]) ?? [];
      const entries = Object.entries(value).map(([name, v], i) => `( ${asScript(v, [key, name]) ?? "false"} ) & p${i}=$!`);
      return [`s=0\n${entries.join("\n")}\n${entries.map((_, i) => `wait "$p${i}" || s=1`).join("\n")}\n[ "$s" = 0 ]`];
    });
    return parts.length === 0 ? undefined : { kind: "shell", script: `set -e\n${parts.join("\n")}` };
  };
  const asScript = (value: string | string[], path: Path): string | undefined => {
    const command = readTaskCommand(typeof value === "string" ? vars(value) : value.map(vars), file, path, problems);
    if (!command) return undefined;
    return commandScript(command);
  };
  const init = script(CREATE);
  const command = script(START);
  const first = [...CREATE, ...START].find((key) => top[key] !== undefined);
  if (!first) return undefined;
  return { name: top.name ?? "devcontainer", init, command, env: {}, source: file.at([first], "key") };
}

const ON_AUTO_FORWARD: Record<string, WorkspacePort["onOpen"]> = { notify: "notify", openBrowser: "open-browser", openBrowserOnce: "open-browser", openPreview: "open-preview", silent: "ignore", ignore: "ignore" };

function readPorts(forward: (number | string)[], attributes: Record<string, z.infer<typeof portAttributesSchema>>, file: ParsedFile, problems: Problem[]): WorkspacePort[] {
  const described = Object.entries(attributes).flatMap(([key, attrs]) => {
    const range = /^\d+(-\d+)?$/.test(key.trim()) ? readPortRange(key, file, ["portsAttributes", key], problems) : undefined;
    if (!range) {
      if (!/^\d+(-\d+)?$/.test(key.trim())) problems.push(problemAt(file.at(["portsAttributes", key], "key"), "unsupported_value", `ports named by a pattern ("${key}") are not supported`, 'use a port or a range like "3000-3010"', "warning"));
      return [];
    }
    return [portWith(range, { name: attrs.label, onOpen: attrs.onAutoForward && ON_AUTO_FORWARD[attrs.onAutoForward], protocol: attrs.protocol })];
  });
  const ports = forward.flatMap((value, i): WorkspacePort[] => {
    const path = ["forwardPorts", i];
    let port = value;
    if (typeof value === "string" && value.includes(":")) {
      const [host, number] = value.split(":", 2) as [string, string];
      if (host !== "localhost" && host !== "127.0.0.1") {
        problems.push(problemAt(file.at(path), "unsupported_value", `ports of other hosts ("${value}") are not supported`, "forward the workspace's own ports", "warning"));
        return [];
      }
      port = number;
    }
    const range = readPortRange(port, file, path, problems);
    if (!range) return [];
    return [{ ...(described.find((d) => d.from <= range.from && range.to <= d.to) ?? portWith(range)), ...range }];
  });
  // Attributes of ports not forwarded up front still apply when they open.
  return [...ports, ...described.filter((d) => !ports.some((p) => p.from === d.from && p.to === d.to))];
}
