import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ENV_FILE_MAX_BYTES, EnvFileError, encryptEnvText, parsePublicKey } from "../secrets/env-file-format.js";
import { apiToken, callApi, CliUsageError, serverUrl } from "./api-client.js";

const NO_PROJECT = "no such project visible to this token; check --project and --server";

export const secretsHelp = `slipway secrets — encrypted env files (Codeship's encrypted_env_file)

Usage:
  slipway secrets encrypt --server URL --project ID IN OUT      # the project's public key from the server
  slipway secrets encrypt --public-key KEY --project ID IN OUT  # offline, with the key given
  slipway secrets decrypt --server URL --project ID IN [OUT]    # owners and admins; audited

IN is a plain env file (NAME=value a line, # comments); OUT gets one slipway:v1: line per
variable, sealed for that project only: commit OUT, never IN. "-" reads stdin or writes stdout.
Values must have at least 4 characters (logs mask them); put other settings in "environment".
The API token comes from SLIPWAY_TOKEN or stdin, never from an argument: an encrypting token
needs the projects:read scope, a decrypting one secrets:write. The server's TLS certificate
must verify (a self-signed one: NODE_EXTRA_CA_CERTS=cert.pem); http:// only to this machine.

Examples:
  export SLIPWAY_TOKEN=…
  slipway secrets encrypt --server https://ci.example.com --project prj_123 deploy.env deploy.env.encrypted
  curl -H "Authorization: Bearer $SLIPWAY_TOKEN" https://ci.example.com/api/v1/projects/prj_123/env-file-key
  slipway secrets encrypt --public-key 'q83v…=' --project prj_123 deploy.env deploy.env.encrypted
  slipway secrets decrypt --server https://ci.example.com --project prj_123 deploy.env.encrypted -`;

export interface SecretsFlags {
  server?: string;
  project?: string;
  publicKey?: string;
  token?: string;
}


/** `slipway secrets encrypt|decrypt`; returns the exit code. */
export async function secretsCommand(args: string[], flags: SecretsFlags): Promise<number> {
  const [sub, ...files] = args;
  if (flags.token !== undefined) throw new CliUsageError("give the API token in SLIPWAY_TOKEN (or on stdin), not as an argument: other users of this machine can read arguments");
  if (!flags.project) throw new CliUsageError("name the project: --project ID (its id is in the web UI and in GET /api/v1/projects)");
  if (sub === "encrypt") return encrypt(files, { ...flags, project: flags.project });
  if (sub === "decrypt") return decrypt(files, { ...flags, project: flags.project });
  throw new CliUsageError(`unknown command: slipway secrets ${sub ?? ""}\n\n${secretsHelp}`);
}

async function encrypt(files: string[], flags: SecretsFlags & { project: string }): Promise<number> {
  if (files.length !== 2) throw new CliUsageError("usage: slipway secrets encrypt (--server URL | --public-key KEY) --project ID IN OUT");
  const [input, output] = files as [string, string];
  if (flags.publicKey !== undefined && flags.server !== undefined) throw new CliUsageError("give either --public-key (offline) or --server, not both");
  if (flags.publicKey === undefined && flags.server === undefined) throw new CliUsageError("give --server URL to fetch the project's public key, or --public-key KEY to work offline");
  const text = readInput(input);
  const key = flags.publicKey !== undefined ? usage(() => parsePublicKey(flags.publicKey!)) : await fetchPublicKey(flags.server!, flags.project, input);
  const sealed = usage(() => encryptEnvText(flags.project, key, text, input));
  writeOutput(output, sealed);
  const count = sealed.split("\n").length - 1;
  process.stderr.write(`encrypted ${count} variable${count === 1 ? "" : "s"} for project ${flags.project}${output === "-" ? "" : ` into ${output}`}; commit it and name it in encrypted_env_file\n`);
  return 0;
}

async function decrypt(files: string[], flags: SecretsFlags & { project: string }): Promise<number> {
  if (files.length < 1 || files.length > 2) throw new CliUsageError("usage: slipway secrets decrypt --server URL --project ID IN [OUT]");
  if (flags.publicKey !== undefined) throw new CliUsageError("decrypting needs the server (only it holds the private key): give --server URL, not --public-key");
  if (!flags.server) throw new CliUsageError("give the server that holds the project's key: --server https://ci.example.com");
  const [input, output = "-"] = files as [string, string?];
  const text = readInput(input);
  const server = serverUrl(flags.server);
  const token = await apiToken(input === "-");
  const res = await callApi(server, token, `/projects/${encodeURIComponent(flags.project)}/env-file-key/decrypt`, { body: { text, name: input === "-" ? "stdin" : path.basename(input) }, what: "decrypt env files (owners and admins of the project's organisation may; the token needs the secrets:write scope)", notFound: NO_PROJECT });
  writeOutput(output, (res as { text: string }).text);
  return 0;
}

async function fetchPublicKey(server: string, project: string, input: string): Promise<Buffer> {
  const res = await callApi(serverUrl(server), await apiToken(input === "-"), `/projects/${encodeURIComponent(project)}/env-file-key`, { what: "read the project (the token needs the projects:read scope)", notFound: NO_PROJECT });
  return parsePublicKey((res as { publicKey: string }).publicKey);
}

function readInput(file: string): string {
  let bytes: Buffer;
  try {
    bytes = file === "-" ? readFileSync(0) : readFileSync(file);
  } catch (err) {
    throw new CliUsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (bytes.length > ENV_FILE_MAX_BYTES) throw new CliUsageError(`${file} is larger than ${ENV_FILE_MAX_BYTES / 1024} KiB, the limit of an env file`);
  return bytes.toString("utf8");
}

/** Owner-only (the process umask is 077): a decrypted file is plaintext secrets. */
function writeOutput(file: string, text: string): void {
  if (file === "-") process.stdout.write(text);
  else writeFileSync(file, text, { mode: 0o600 });
}

function usage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw err instanceof EnvFileError ? new CliUsageError(err.message) : err;
  }
}
