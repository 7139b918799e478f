import { z } from "zod";
import { durationSchema, envMapSchema, imageSchema, readCommand, readEnvMap, readHealthcheck, readRefFilter, readRepoPath, refuseNul, stringOrListSchema, toList } from "./common.js";
import type { FileSource } from "./files.js";
import type { Group, Healthcheck, Pipeline, PipelineNode, Service, Step, When } from "./model.js";
import { problemAt, type Problem } from "./problems.js";
import { checkDependencies, checkEnvFile } from "./service-checks.js";
import { checkImageBuild } from "./image-builds.js";
import { checkImageTag } from "./image-tag.js";
import type { ParsedFile, Path } from "./source.js";
import { checkServiceRef, claimName, defaultName, readTree, reid, type Inherited, type TreeContext } from "./tree.js";

/**
 * Codeship Pro's `codeship-services.yml` + `codeship-steps.yml`, read into the same model. Every key
 * Codeship documents is recognised; those Slipway does not act on yet give a warning naming them.
 */

/** Docker Compose keys that Codeship services accept and Slipway does not act on yet. */
const unsupportedServiceKeys = [
  "add_docker", "dockercfg_service", "encrypted_dockercfg_path", "links", "external_links", "volumes_from",
  "entrypoint", "user", "hostname", "domainname", "privileged", "cap_add", "cap_drop", "devices", "dns",
  "dns_search", "expose", "ports", "extra_hosts", "labels", "net", "network_mode", "networks", "pid", "ipc",
  "cpu_shares", "cpu_quota", "cpuset", "mem_limit", "memswap_limit", "shm_size", "restart", "read_only",
  "stdin_open", "tty", "security_opt", "ulimits", "stop_signal", "tmpfs", "logging", "log_driver", "log_opt",
  "container_name", "extends", "env_var_file",
] as const;
const unsupportedStepKeys = ["dockercfg_service"] as const;
/** Top-level keys of a services file nested under `services:` (Compose version 2 layout). */
const unsupportedTopKeys = ["volumes", "networks"] as const;

const recognised = <K extends string>(keys: readonly K[]) => Object.fromEntries(keys.map((k) => [k, z.unknown().optional()])) as Record<K, z.ZodOptional<z.ZodUnknown>>;

/** A warning for each recognised key that is present (even when empty): Slipway ignores it. */
function warnUnsupported(raw: unknown, keys: readonly string[], file: ParsedFile, path: Path, problems: Problem[]): void {
  if (raw === null || typeof raw !== "object") return;
  for (const key of keys) if (Object.hasOwn(raw, key)) problems.push(unsupported(file, [...path, key], key));
}

const envValue = z.union([envMapSchema, z.array(z.string())], { error: "expected a map of NAME: value, or a list of NAME=value" });
const buildSchema = z.union([
  z.string().min(1),
  z.strictObject({
    image: z.string().min(1).optional(),
    path: z.string().min(1).optional(),
    context: z.string().min(1).optional(),
    dockerfile: z.string().min(1).optional(),
    dockerfile_path: z.string().min(1).optional(),
    args: z.union([envMapSchema, z.array(z.string())]).optional(),
    encrypted_args_file: z.string().min(1).optional(),
  }),
]);
const healthSchema = z.strictObject({
  test: z.union([z.string().min(1), z.array(z.string()).min(1)]),
  interval: durationSchema.optional(),
  timeout: durationSchema.optional(),
  retries: z.number().int().min(0).max(1000).optional(),
  start_period: durationSchema.optional(),
  disable: z.boolean().optional(),
});
const serviceSchema = z.strictObject({
  image: imageSchema.optional(),
  build: buildSchema.optional(),
  command: z.union([z.string(), z.array(z.string()).min(1)]).optional(),
  environment: envValue.optional(),
  env_file: stringOrListSchema.optional(),
  encrypted_env_file: stringOrListSchema.optional(),
  depends_on: z.union([z.array(z.string()), z.record(z.string(), z.unknown())]).optional(),
  working_dir: z.string().min(1).optional(),
  cached: z.boolean().optional(),
  default_cache_branch: z.string().min(1).optional(),
  volumes: z.array(z.string()).optional(),
  healthcheck: healthSchema.optional(),
  ...recognised(unsupportedServiceKeys),
});

const filterValue = z.union([z.string().min(1), z.number()]);
const sharedStepKeys = {
  name: z.union([z.string().min(1), z.number()]).optional(),
  tag: filterValue.optional(),
  exclude: filterValue.optional(),
  service: z.string().min(1).optional(),
  encrypted_dockercfg_path: z.string().min(1).optional(),
  ...recognised(unsupportedStepKeys),
};
const stepSchema = z.strictObject({
  ...sharedStepKeys,
  type: z.enum(["push", "manual"], { error: 'a step\'s type is "push" or "manual"; "serial", "parallel" and "matrix" groups need steps' }).optional(),
  command: z.string().optional(),
  image_name: z.string().min(1).optional(),
  image_tag: z.string().min(1).optional(),
  registry: z.string().min(1).optional(),
});
const groupSchema = z.strictObject({
  ...sharedStepKeys,
  type: z.enum(["serial", "parallel", "manual", "matrix"], { error: 'a group\'s type is "serial", "parallel", "manual" or "matrix"' }),
  services: z.array(z.string().min(1)).min(1).optional(),
  steps: z.array(z.unknown()).min(1, { error: "a group needs at least one step" }),
});

export function readCodeshipConfig(servicesFile: ParsedFile, stepsFile: ParsedFile, files: FileSource, problems: Problem[]): Pipeline | undefined {
  const services = readServices(servicesFile, files, problems);
  if (!Array.isArray(stepsFile.value)) {
    problems.push(problemAt(stepsFile.at([]), "invalid_value", `${stepsFile.file} must be a list of steps`, "start each step with - "));
    return undefined;
  }
  const ctx: TreeContext = { file: stepsFile, problems, serviceNames: new Set(Object.keys(services.all)), count: 0, names: new Map() };
  const read = (v: unknown, p: Path, id: string, d: number, inh: Inherited): PipelineNode | undefined => readNode(v, p, id, d, inh, ctx, read);
  const steps = readTree(stepsFile.value, [], "", 0, ctx, {}, read);
  return { format: "codeship", files: [servicesFile.file, stepsFile.file], env: {}, secrets: [], services: services.all, steps };
}

function readServices(file: ParsedFile, files: FileSource, problems: Problem[]): { all: Record<string, Service> } {
  const all: Record<string, Service> = {};
  const top = file.value;
  if (top === null || typeof top !== "object" || Array.isArray(top)) {
    problems.push(problemAt(file.at([]), "invalid_value", `${file.file} must map service names to their settings`));
    return { all };
  }
  // Codeship accepts services at the top level, or under `services:` as in Compose version 2.
  const record = top as Record<string, unknown>;
  const nested = record.services !== null && typeof record.services === "object" && !Array.isArray(record.services) && Object.keys(record).every((k) => ["version", "services", ...unsupportedTopKeys].includes(k) || k.startsWith("x-"));
  const base: Path = nested ? ["services"] : [];
  if (nested) {
    warnUnsupported(record, unsupportedTopKeys, file, [], problems);
  }
  const entries = Object.entries(nested ? (record.services as Record<string, unknown>) : record).filter(([k]) => nested || k !== "version");
  for (const [name, raw] of entries) {
    const service = readService(name, raw, [...base, name], file, files, problems);
    if (service) all[name] = service;
  }
  // depends_on in its map form has no index to point at; the key of the service that names it is close enough.
  checkDependencies(all, (s, i) => file.at([...base, s, "depends_on", i]), problems);
  return { all };
}

function unsupported(file: ParsedFile, path: Path, key: string): Problem {
  return problemAt(file.at(path, "key"), "unsupported_key", `"${key}" is not supported by Slipway yet and is ignored`, undefined, "warning");
}

function readService(name: string, raw: unknown, path: Path, file: ParsedFile, files: FileSource, problems: Problem[]): Service | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.\/-]*$/.test(name)) {
    problems.push(problemAt(file.at(path, "key"), "invalid_key", `invalid service name "${name}"`, "use letters, digits, _ . / and -"));
    return undefined;
  }
  const s = file.check(serviceSchema, raw, path, problems);
  if (!s) return undefined;
  warnUnsupported(raw, unsupportedServiceKeys, file, path, problems);
  if (!s.image && !s.build) problems.push(problemAt(file.at(path, "key"), "missing_field", `service "${name}" needs an image or a build`));
  let build: Service["build"];
  if (s.build !== undefined) {
    const b = typeof s.build === "string" ? { context: s.build } : s.build;
    const bp: Path = [...path, "build"];
    const ctxRaw = "path" in b ? (b.path ?? b.context) : b.context;
    const context = readRepoPath(ctxRaw ?? ".", file, bp, problems) ?? ".";
    const args = "args" in b && b.args !== undefined ? envFrom(b.args, file, [...bp, "args"], problems) : {};
    const encrypted = "encrypted_args_file" in b && b.encrypted_args_file !== undefined ? readRepoPath(b.encrypted_args_file, file, [...bp, "encrypted_args_file"], problems) : undefined;
    build = { context, dockerfile: "dockerfile" in b ? (b.dockerfile ?? b.dockerfile_path) : undefined, image: "image" in b ? b.image : undefined, args, encryptedArgsFile: encrypted ? [encrypted] : [] };
    checkImageBuild(file.at(bp, "key"), `service "${name}"`, build, files, problems);
  }
  const envFile = toList(s.env_file).flatMap((p, i) => {
    const at = typeof s.env_file === "string" ? [...path, "env_file"] : [...path, "env_file", i];
    const ok = readRepoPath(p, file, at, problems);
    if (ok) checkEnvFile(ok, false, files, file, at, problems);
    return ok ? [ok] : [];
  });
  const encryptedEnvFile = toList(s.encrypted_env_file).flatMap((p, i) => {
    const at = typeof s.encrypted_env_file === "string" ? [...path, "encrypted_env_file"] : [...path, "encrypted_env_file", i];
    const ok = readRepoPath(p, file, at, problems);
    if (ok) checkEnvFile(ok, true, files, file, at, problems);
    return ok ? [ok] : [];
  });
  let healthcheck: Healthcheck | undefined;
  if (s.healthcheck && !s.healthcheck.disable) {
    const h = s.healthcheck;
    const hp = [...path, "healthcheck"];
    const command = composeTest(h.test, file, [...hp, "test"], problems);
    if (command) healthcheck = readHealthcheck(command, h, { intervalMs: 30_000, timeoutMs: 30_000, retries: 3 }, file, hp, problems);
  }
  return {
    name,
    image: s.image,
    build,
    command: s.command === undefined ? undefined : readCommand(s.command, file, [...path, "command"], problems, "words"),
    environment: s.environment === undefined ? {} : envFrom(s.environment, file, [...path, "environment"], problems),
    envFile,
    encryptedEnvFile,
    dependsOn: s.depends_on === undefined ? [] : Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on),
    workingDir: s.working_dir,
    cached: s.cached ?? false,
    defaultCacheBranch: s.default_cache_branch,
    volumes: s.volumes ?? [],
    healthcheck,
    source: file.at(path, "key"),
  };
}

/** Compose's `test`: ["CMD", argv…], ["CMD-SHELL", script], ["NONE"], or a shell string. */
function composeTest(test: string | string[], file: ParsedFile, path: Path, problems: Problem[]) {
  if (typeof test === "string") return readCommand(test, file, path, problems, "shell");
  const [kind, ...rest] = test;
  if (kind === "CMD" && rest.length > 0) return readCommand(rest, file, path, problems, "shell");
  if (kind === "CMD-SHELL" && rest.length === 1) return readCommand(rest[0]!, file, path, problems, "shell");
  if (kind === "NONE") return undefined;
  problems.push(problemAt(file.at(path), "invalid_value", 'healthcheck test must be ["CMD", args…], ["CMD-SHELL", "script"] or a string'));
  return undefined;
}

/** `environment` as a map, or as a list of NAME=value (Compose allows both). */
function envFrom(value: Record<string, string | number | boolean> | string[], file: ParsedFile, path: Path, problems: Problem[]): Record<string, string> {
  if (!Array.isArray(value)) return readEnvMap(value, file, path, problems);
  const env: Record<string, string> = {};
  value.forEach((entry, i) => {
    const eq = entry.indexOf("=");
    const name = eq < 0 ? entry : entry.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      problems.push(problemAt(file.at([...path, i]), "invalid_value", `invalid variable name "${name}"`, "write NAME=value"));
    } else if (eq < 0) {
      problems.push(problemAt(file.at([...path, i]), "unsupported_key", `"${name}" has no value; Slipway does not pass the runner's own environment into builds, so it is ignored`, "write NAME=value, or use a project secret", "warning"));
    } else if (refuseNul(entry, file, [...path, i], `the value of ${name}`, problems)) env[name] = entry.slice(eq + 1);
  });
  return env;
}

function readNode(value: unknown, path: Path, id: string, depth: number, inherited: Inherited, ctx: TreeContext, read: (v: unknown, p: Path, id: string, d: number, inh: Inherited) => PipelineNode | undefined): PipelineNode | undefined {
  const { file, problems } = ctx;
  const isGroup = value !== null && typeof value === "object" && !Array.isArray(value) && ("steps" in value || ["serial", "parallel", "matrix"].includes(String((value as { type?: unknown }).type)));
  const raw = isGroup ? file.check(groupSchema, value, path, problems) : file.check(stepSchema, value, path, problems);
  if (!raw) return undefined;
  warnUnsupported(value, unsupportedStepKeys, file, path, problems);
  checkServiceRef(raw.service, [...path, "service"], ctx);
  const name = raw.name === undefined ? undefined : String(raw.name);
  if (name !== undefined) claimName(name, path, ctx);
  // Codeship's `tag` matched the build's "tag": its branch, or its git tag.
  const when: When = {};
  const ref = raw.tag === undefined ? undefined : readRefFilter(raw.tag, file, [...path, "tag"], problems);
  if (ref) when.ref = ref;
  const exclude = raw.exclude === undefined ? undefined : readRefFilter(raw.exclude, file, [...path, "exclude"], problems);
  const base = { id, when, exclude, service: raw.service, env: {}, source: file.at(path) };
  // Each copy of a matrix group runs with one of its services; the first stands in while reading.
  const matrixService = "services" in raw && raw.type === "matrix" ? raw.services?.[0] : undefined;
  const here: Inherited = { service: raw.service ?? matrixService ?? inherited.service };
  if ("steps" in raw) {
    if (raw.services) for (const [i, s] of raw.services.entries()) checkServiceRef(s, [...path, "services", i], ctx);
    if (raw.type !== "matrix" && raw.services) problems.push(problemAt(file.at([...path, "services"], "key"), "invalid_value", '"services" belongs to a "matrix" group'));
    const children = readTree(raw.steps, [...path, "steps"], id, depth + 1, ctx, here, read);
    if (raw.type === "matrix") {
      if (!raw.services) problems.push(problemAt(file.at(path), "missing_field", 'a "matrix" group needs "services"'));
      const copies = (raw.services ?? []).map((service, i) =>
        reid<Group>({ kind: "group", name: `${name ?? "matrix"} (${service})`, ...base, id: "", service, type: "serial", manual: false, steps: children }, `${id}.${i + 1}`),
      );
      return { kind: "group", name, ...base, type: "parallel", manual: false, steps: copies } satisfies Group;
    }
    return { kind: "group", name, ...base, type: raw.type === "parallel" ? "parallel" : "serial", manual: raw.type === "manual", steps: children } satisfies Group;
  }
  const service = here.service;
  if (service === undefined) problems.push(problemAt(file.at(path), "missing_field", "this step names no service", "set service on the step or on a group around it"));
  const command = raw.command === undefined ? undefined : readCommand(raw.command, file, [...path, "command"], problems, "words");
  let push: Step["push"];
  if (raw.type === "push") {
    if (!raw.image_name) problems.push(problemAt(file.at(path), "missing_field", 'a push step needs "image_name"'));
    push = { imageName: raw.image_name ?? "", imageTag: raw.image_tag, registry: raw.registry };
    for (const message of raw.image_tag === undefined ? [] : checkImageTag(raw.image_tag)) problems.push(problemAt(file.at([...path, "image_tag"]), "invalid_value", `image_tag: ${message}`));
    if (raw.encrypted_dockercfg_path !== undefined) {
      problems.push(problemAt(file.at([...path, "encrypted_dockercfg_path"], "key"), "unsupported_key", "Slipway cannot open files Codeship encrypted, and reads registry credentials from the project secret DOCKERCFG instead", "store the decrypted docker config JSON as the project's secret DOCKERCFG", "warning"));
    }
  } else {
    // Codeship also used it to pull private images, which Slipway does not do with it.
    if (raw.encrypted_dockercfg_path !== undefined) problems.push(unsupported(file, [...path, "encrypted_dockercfg_path"], "encrypted_dockercfg_path"));
    for (const key of ["image_name", "image_tag", "registry"] as const) {
      if (raw[key] !== undefined) problems.push(problemAt(file.at([...path, key], "key"), "invalid_value", `"${key}" belongs to a push step (type: push)`));
    }
  }
  return {
    kind: "step",
    name: name ?? defaultName([service, raw.type === "push" ? `push ${raw.image_name ?? ""}` : raw.command]),
    ...base,
    command,
    type: raw.type ?? "run",
    push,
    onFail: "stop",
  } satisfies Step;
}
