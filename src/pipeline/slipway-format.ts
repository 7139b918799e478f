import { z } from "zod";
import { durationSchema, envMapSchema, imageSchema, envNameSchema, readCommand, readDuration, readEnvMap, readHealthcheck, readRefFilter, readRepoPath } from "./common.js";
import type { FileSource } from "./files.js";
import { checkImageBuild } from "./image-builds.js";
import type { Group, Healthcheck, Pipeline, PipelineNode, Service, Step, When } from "./model.js";
import { problemAt, type Problem } from "./problems.js";
import { checkDependencies } from "./service-checks.js";
import type { ParsedFile, Path } from "./source.js";
import { checkServiceRef, claimName, defaultName, readTree, type Inherited, type TreeContext } from "./tree.js";

/** `.slipway.yml`: Slipway's own format. Every key is acted on; anything else is an error. */

const commandValue = z.union([z.string(), z.array(z.string()).min(1)], { error: "expected a shell string or a list of arguments" });
const filterValue = z.union([z.string().min(1), z.number()], { error: "expected a name, or a regular expression starting with ^ or ending with $" });
/** Services are reachable by name, so a name is a host name label. */
const serviceName = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, { error: "must be a host name: lower-case letters, digits and -" });

const topSchema = z.strictObject({
  image: imageSchema.optional(),
  env: envMapSchema.optional(),
  secrets: z.array(envNameSchema).optional(),
  services: z.record(serviceName, z.unknown()).optional(),
  steps: z.array(z.unknown()).min(1, { error: "add at least one step" }),
  /** Read by the workspace loader (slipway-workspace-format). */
  workspace: z.unknown().optional(),
});

const serviceRawSchema = z.strictObject({
  image: imageSchema.optional(),
  build: z.union([z.string().min(1), z.strictObject({ context: z.string().min(1), dockerfile: z.string().min(1).optional(), args: envMapSchema.optional(), encrypted_args_file: z.string().min(1).optional(), target: z.string().min(1).optional() })]).optional(),
  env: envMapSchema.optional(),
  command: commandValue.optional(),
  depends_on: z.array(z.string()).optional(),
  working_dir: z.string().min(1).optional(),
  /** A built image is kept in the project's image cache (as Codeship's `cached`). */
  cached: z.boolean().optional(),
  default_cache_branch: z.string().min(1).optional(),
  healthcheck: z
    .strictObject({
      command: commandValue,
      interval: durationSchema.optional(),
      timeout: durationSchema.optional(),
      retries: z.number().int().min(0).max(1000).optional(),
      start_period: durationSchema.optional(),
    })
    .optional(),
});

const sharedNodeKeys = {
  name: z.string().min(1).optional(),
  image: imageSchema.optional(),
  service: z.string().min(1).optional(),
  env: envMapSchema.optional(),
  branch: filterValue.optional(),
  tag: filterValue.optional(),
  exclude: filterValue.optional(),
};

const stepRawSchema = z.strictObject({
  ...sharedNodeKeys,
  command: commandValue,
  type: z.enum(["run", "manual"], { error: 'a step\'s type is "run" or "manual"; "parallel" and "serial" groups need steps' }).optional(),
  on_fail: z.enum(["stop", "continue"]).optional(),
  timeout: durationSchema.optional(),
});

const groupRawSchema = z.strictObject({
  ...sharedNodeKeys,
  type: z.enum(["parallel", "serial"], { error: 'a group\'s type is "parallel" or "serial"' }),
  steps: z.array(z.unknown()).min(1, { error: "a group needs at least one step" }),
});

export function readSlipwayConfig(file: ParsedFile, files: FileSource, problems: Problem[]): Pipeline | undefined {
  const top = file.check(topSchema, withoutExtensions(file.value), [], problems);
  if (!top) return undefined;
  const services: Record<string, Service> = {};
  for (const [name, raw] of Object.entries(top.services ?? {})) {
    const service = readService(name, raw, ["services", name], file, files, problems);
    if (service) services[name] = service;
  }
  checkDependencies(services, (s, i) => file.at(["services", s, "depends_on", i]), problems);
  const ctx: TreeContext = { file, problems, serviceNames: new Set(Object.keys(top.services ?? {})), count: 0, names: new Map() };
  const steps = readTree(top.steps, ["steps"], "", 0, ctx, { image: top.image }, (value, path, id, depth, inherited) => readNode(value, path, id, depth, inherited, ctx, services));
  return {
    format: "slipway",
    files: [file.file],
    image: top.image,
    env: readEnvMap(top.env, file, ["env"], problems),
    secrets: [...new Set(top.secrets ?? [])],
    services,
    steps,
  };
}

function readService(name: string, raw: unknown, path: Path, file: ParsedFile, files: FileSource, problems: Problem[]): Service | undefined {
  const s = file.check(serviceRawSchema, raw, path, problems);
  if (!s) return undefined;
  if (!s.image && !s.build) problems.push(problemAt(file.at(path, "key"), "missing_field", `service "${name}" needs an image (or a build)`));
  let build: Service["build"];
  if (s.build !== undefined) {
    const b = typeof s.build === "string" ? { context: s.build } : s.build;
    const context = readRepoPath(b.context, file, typeof s.build === "string" ? [...path, "build"] : [...path, "build", "context"], problems);
    const encrypted = "encrypted_args_file" in b && b.encrypted_args_file !== undefined ? readRepoPath(b.encrypted_args_file, file, [...path, "build", "encrypted_args_file"], problems) : undefined;
    build = {
      context: context ?? b.context,
      dockerfile: "dockerfile" in b ? b.dockerfile : undefined,
      args: readEnvMap("args" in b ? b.args : undefined, file, [...path, "build", "args"], problems),
      encryptedArgsFile: encrypted ? [encrypted] : [],
      ...("target" in b && b.target !== undefined && { target: b.target }),
    };
    checkImageBuild(file.at([...path, "build"], "key"), `service "${name}"`, build, files, problems);
  }
  let healthcheck: Healthcheck | undefined;
  if (s.healthcheck) {
    const h = s.healthcheck;
    const hp = [...path, "healthcheck"];
    const command = readCommand(h.command, file, [...hp, "command"], problems, "shell");
    if (command) healthcheck = readHealthcheck(command, h, { intervalMs: 2000, timeoutMs: 5000, retries: 30 }, file, hp, problems);
  }
  return {
    name,
    image: s.image,
    build,
    command: s.command === undefined ? undefined : readCommand(s.command, file, [...path, "command"], problems, "shell"),
    environment: readEnvMap(s.env, file, [...path, "env"], problems),
    envFile: [],
    encryptedEnvFile: [],
    dependsOn: s.depends_on ?? [],
    workingDir: s.working_dir,
    cached: s.cached ?? false,
    ...(s.default_cache_branch !== undefined && { defaultCacheBranch: s.default_cache_branch }),
    volumes: [],
    healthcheck,
    source: file.at(path, "key"),
  };
}


function readNode(value: unknown, path: Path, id: string, depth: number, inherited: Inherited, ctx: TreeContext, services: Record<string, Service>): PipelineNode | undefined {
  const { file, problems } = ctx;
  const isGroup = value !== null && typeof value === "object" && !Array.isArray(value) && ("steps" in value || ["parallel", "serial"].includes(String((value as { type?: unknown }).type)));
  const raw = isGroup ? file.check(groupRawSchema, value, path, problems) : file.check(stepRawSchema, value, path, problems);
  if (!raw) return undefined;
  checkServiceRef(raw.service, [...path, "service"], ctx);
  const filter = (key: "branch" | "tag" | "exclude") => (raw[key] === undefined ? undefined : readRefFilter(raw[key], file, [...path, key], problems));
  const when: When = {};
  const branch = filter("branch");
  const tag = filter("tag");
  if (branch) when.branch = branch;
  if (tag) when.tag = tag;
  const base = { id, when, exclude: filter("exclude"), service: raw.service, image: raw.image, env: readEnvMap(raw.env, file, [...path, "env"], problems), source: file.at(path) };
  const here: Inherited = raw.service !== undefined ? { service: raw.service, image: undefined } : raw.image !== undefined ? { image: raw.image } : inherited;
  if ("steps" in raw) {
    if (raw.name) claimName(raw.name, path, ctx);
    const steps = readTree(raw.steps, [...path, "steps"], id, depth + 1, ctx, here, (v, p, i, d, inh) => readNode(v, p, i, d, inh, ctx, services));
    return { kind: "group", name: raw.name, ...base, type: raw.type, manual: false, steps } satisfies Group;
  }
  const command = readCommand(raw.command, file, [...path, "command"], problems, "shell");
  if (here.service === undefined && here.image === undefined) {
    problems.push(problemAt(file.at(path), "missing_image", "this step has no image", "set image (or service) on the step, on a group around it, or at the top level"));
  }
  const name = raw.name ?? defaultName([typeof raw.command === "string" ? raw.command : raw.command.join(" ")]);
  if (raw.name) claimName(raw.name, path, ctx);
  return {
    kind: "step",
    name,
    ...base,
    command,
    type: raw.type ?? "run",
    onFail: raw.on_fail ?? "stop",
    timeoutMs: raw.timeout === undefined ? undefined : readDuration(raw.timeout, file, [...path, "timeout"], problems),
  } satisfies Step;
}

/** Top-level `x-…` keys hold YAML anchors for reuse (as in Compose); they are not part of the pipeline. */
function withoutExtensions(value: unknown): unknown {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).filter(([k]) => !k.startsWith("x-")));
}
