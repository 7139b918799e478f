import type { FileSource } from "../pipeline/files.js";
import type { Pipeline, PipelineNode, Service, Step } from "../pipeline/model.js";
import { flattenSteps } from "../pipeline/refs.js";
import { ENV_FILE_MAX_BYTES, EnvFileError, parseEnvText } from "../secrets/env-file-format.js";
import { servicesBeside } from "./services.js";

export interface ServiceEnv {
  /** By service name: its `env_file` variables, then its `encrypted_env_file` ones (later files win). */
  env: Record<string, Record<string, string>>;
  /** By name of a service built from a Dockerfile: the secret build args of its `encrypted_args_file`. */
  buildArgs: Record<string, Record<string, string>>;
  /** The decrypted values, to be masked in every log. */
  secrets: string[];
}

/** Opens an encrypted env file (the server does, with the project's private key): its variables. */
export type OpenEncrypted = (path: string, text: string) => Promise<Record<string, string>>;

/** The services that the selected steps run in or beside: only their env files are read (and decrypted). */
function servicesInUse(pipeline: Pipeline, nodes: readonly PipelineNode[]): Service[] {
  const beside = (step: Step) => {
    const names = servicesBeside(step, pipeline);
    return typeof names === "string" ? [] : names;
  };
  const names = new Set(flattenSteps(nodes).flatMap((s) => [...(s.service === undefined ? [] : [s.service]), ...beside(s)]));
  return [...names].flatMap((n) => (Object.hasOwn(pipeline.services, n) ? [pipeline.services[n]!] : []));
}

function textOf(files: FileSource, path: string): string {
  const read = files.read(path);
  if ("error" in read) throw new EnvFileError(`${path} ${{ missing: "does not exist", too_large: "is too large", not_a_file: "is not a file", outside: "resolves outside the repository" }[read.error]}`);
  return read.text;
}

/** Reads the env files (and encrypted build args) of the services in use from the checkout; each encrypted file is opened once. */
export async function resolveServiceEnv(pipeline: Pipeline, nodes: readonly PipelineNode[], files: FileSource, openEncrypted: OpenEncrypted): Promise<ServiceEnv> {
  const opened = new Map<string, Promise<Record<string, string>>>();
  const open = (path: string): Promise<Record<string, string>> => {
    if (!opened.has(path)) {
      const text = textOf(files, path);
      if (Buffer.byteLength(text) > ENV_FILE_MAX_BYTES) throw new EnvFileError(`${path} is larger than ${ENV_FILE_MAX_BYTES / 1024} KiB, the limit of an encrypted env file`);
      opened.set(path, openEncrypted(path, text));
    }
    return opened.get(path)!;
  };
  const env: ServiceEnv["env"] = {};
  const buildArgs: ServiceEnv["buildArgs"] = {};
  for (const service of servicesInUse(pipeline, nodes)) {
    const vars: Record<string, string> = {};
    for (const path of service.envFile) for (const e of parseEnvText(textOf(files, path), path)) vars[e.name] = e.value;
    for (const path of service.encryptedEnvFile) Object.assign(vars, await open(path));
    env[service.name] = vars;
    if (service.build?.encryptedArgsFile.length) {
      const args: Record<string, string> = {};
      for (const path of service.build.encryptedArgsFile) Object.assign(args, await open(path));
      buildArgs[service.name] = args;
    }
  }
  const secrets = new Set<string>();
  for (const vars of await Promise.all(opened.values())) for (const v of Object.values(vars)) secrets.add(v);
  return { env, buildArgs, secrets: [...secrets] };
}
