import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ENV_FILE_MAX_BYTES, EnvFileError, encryptEnvText, parsePublicKey } from "../secrets/env-file-format.js";
import { readSecretLine } from "./stdin.js";

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

/** Wrong arguments or a wrong input file: exit code 2, the message says what to do. */
export class SecretsUsageError extends Error {}

/** `slipway secrets encrypt|decrypt`; returns the exit code. */
export async function secretsCommand(args: string[], flags: SecretsFlags): Promise<number> {
  const [sub, ...files] = args;
  if (flags.token !== undefined) throw new SecretsUsageError("give the API token in SLIPWAY_TOKEN (or on stdin), not as an argument: other users of this machine can read arguments");
  if (!flags.project) throw new SecretsUsageError("name the project: --project ID (its id is in the web UI and in GET /api/v1/projects)");
  if (sub === "encrypt") return encrypt(files, { ...flags, project: flags.project });
  if (sub === "decrypt") return decrypt(files, { ...flags, project: flags.project });
  throw new SecretsUsageError(`unknown command: slipway secrets ${sub ?? ""}\n\n${secretsHelp}`);
}

async function encrypt(files: string[], flags: SecretsFlags & { project: string }): Promise<number> {
  if (files.length !== 2) throw new SecretsUsageError("usage: slipway secrets encrypt (--server URL | --public-key KEY) --project ID IN OUT");
  const [input, output] = files as [string, string];
  if (flags.publicKey !== undefined && flags.server !== undefined) throw new SecretsUsageError("give either --public-key (offline) or --server, not both");
  if (flags.publicKey === undefined && flags.server === undefined) throw new SecretsUsageError("give --server URL to fetch the project's public key, or --public-key KEY to work offline");
  const text = readInput(input);
  const key = flags.publicKey !== undefined ? usage(() => parsePublicKey(flags.publicKey!)) : await fetchPublicKey(flags.server!, flags.project, input);
  const sealed = usage(() => encryptEnvText(flags.project, key, text, input));
  writeOutput(output, sealed);
  const count = sealed.split("\n").length - 1;
  process.stderr.write(`encrypted ${count} variable${count === 1 ? "" : "s"} for project ${flags.project}${output === "-" ? "" : ` into ${output}`}; commit it and name it in encrypted_env_file\n`);
  return 0;
}

async function decrypt(files: string[], flags: SecretsFlags & { project: string }): Promise<number> {
  if (files.length < 1 || files.length > 2) throw new SecretsUsageError("usage: slipway secrets decrypt --server URL --project ID IN [OUT]");
  if (flags.publicKey !== undefined) throw new SecretsUsageError("decrypting needs the server (only it holds the private key): give --server URL, not --public-key");
  if (!flags.server) throw new SecretsUsageError("give the server that holds the project's key: --server https://ci.example.com");
  const [input, output = "-"] = files as [string, string?];
  const text = readInput(input);
  const server = serverUrl(flags.server);
  const token = await apiToken(input);
  const res = await callApi(server, token, `/projects/${encodeURIComponent(flags.project)}/env-file-key/decrypt`, { text, name: input === "-" ? "stdin" : path.basename(input) }, "decrypt env files (owners and admins of the project's organisation may; the token needs the secrets:write scope)");
  writeOutput(output, (res as { text: string }).text);
  return 0;
}

async function fetchPublicKey(server: string, project: string, input: string): Promise<Buffer> {
  const res = await callApi(serverUrl(server), await apiToken(input), `/projects/${encodeURIComponent(project)}/env-file-key`, undefined, "read the project (the token needs the projects:read scope)");
  return parsePublicKey((res as { publicKey: string }).publicKey);
}

/** https://, or http:// to this machine only: the token must not cross a network in clear. */
function serverUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new SecretsUsageError(`--server ${JSON.stringify(raw)} is not a URL; write https://ci.example.com`);
  }
  const loopback = /^(127(\.\d{1,3}){3}|\[::1\]|localhost)$/.test(url.hostname);
  if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) throw new SecretsUsageError("--server must be an https:// URL (http:// only to this machine: the token would cross the network in clear)");
  return url.origin;
}

async function apiToken(input: string): Promise<string> {
  const fromEnv = process.env.SLIPWAY_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  if (input === "-") throw new SecretsUsageError("the env file comes on stdin, so give the API token in SLIPWAY_TOKEN");
  const token = (await readSecretLine("API token: ")).trim();
  if (!token) throw new SecretsUsageError("give an API token in SLIPWAY_TOKEN or on stdin (make one in the web UI, or with POST /api/v1/tokens)");
  return token;
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/;

async function callApi(server: string, token: string, route: string, body: unknown, what: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${server}/api/v1${route}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined && { "content-type": "application/json" }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
  } catch (err) {
    const code = String((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message);
    if (TLS_CODES.test(code)) throw new Error(`the TLS certificate of ${server} does not verify (${code}); if it is the server's own self-signed one, trust it with NODE_EXTRA_CA_CERTS=/path/to/cert.pem`);
    throw new Error(`cannot reach ${server} (${code}); check --server`);
  }
  const payload = (await res.json().catch(() => undefined)) as { error?: { message?: string } } | undefined;
  if (res.ok) return payload;
  const message = payload?.error?.message ?? `HTTP ${res.status}`;
  if (res.status === 401) throw new Error(`the server refused the API token (${message}); put a valid one in SLIPWAY_TOKEN`);
  if (res.status === 403) throw new Error(`not allowed to ${what}: ${message}`);
  if (res.status === 404) throw new Error(`no such project visible to this token (${message}); check --project and --server`);
  throw new Error(`${server} answered ${res.status}: ${message}`);
}

function readInput(file: string): string {
  let bytes: Buffer;
  try {
    bytes = file === "-" ? readFileSync(0) : readFileSync(file);
  } catch (err) {
    throw new SecretsUsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (bytes.length > ENV_FILE_MAX_BYTES) throw new SecretsUsageError(`${file} is larger than ${ENV_FILE_MAX_BYTES / 1024} KiB, the limit of an env file`);
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
    throw err instanceof EnvFileError ? new SecretsUsageError(err.message) : err;
  }
}
