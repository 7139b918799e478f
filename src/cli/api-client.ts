import { readSecretLine } from "./stdin.js";

/** Wrong arguments or settings: exit code 2, the message says what to do. */
export class CliUsageError extends Error {}

/** The server's origin: https://, or http:// to this machine only (the token must not cross a network in clear). */
export function serverUrl(raw: string | undefined): string {
  if (!raw) throw new CliUsageError("name the server: --server https://ci.example.com (or SLIPWAY_SERVER)");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliUsageError(`--server ${JSON.stringify(raw)} is not a URL; write https://ci.example.com`);
  }
  const loopback = /^(127(\.\d{1,3}){3}|\[::1\]|localhost)$/.test(url.hostname);
  if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) throw new CliUsageError("--server must be an https:// URL (http:// only to this machine: the token would cross the network in clear)");
  return url.origin;
}

/** The API token: SLIPWAY_TOKEN, else a line on stdin (unless stdin carries something else). */
export async function apiToken(stdinTaken = false): Promise<string> {
  const fromEnv = process.env.SLIPWAY_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  if (stdinTaken) throw new CliUsageError("stdin carries the input, so give the API token in SLIPWAY_TOKEN");
  const token = (await readSecretLine("API token: ")).trim();
  if (!token) throw new CliUsageError("give an API token in SLIPWAY_TOKEN or on stdin (make one in the web UI, or with POST /api/v1/tokens)");
  return token;
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/;

export interface ApiCall {
  method?: "GET" | "POST" | "PUT" | "DELETE";
  body?: unknown;
  /** What the call does, for a refusal: "not allowed to <what>". */
  what: string;
  /** What a 404 means here, and what to check. */
  notFound: string;
}

/** One call of the server's API with the token; a failure is an Error whose message says what to do. */
export async function callApi(server: string, token: string, route: string, call: ApiCall): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${server}/api/v1${route}`, {
      method: call.method ?? (call.body === undefined ? "GET" : "POST"),
      headers: { authorization: `Bearer ${token}`, ...(call.body !== undefined && { "content-type": "application/json" }) },
      ...(call.body !== undefined && { body: JSON.stringify(call.body) }),
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
  if (res.status === 403) throw new Error(`not allowed to ${call.what}: ${message}`);
  if (res.status === 404) throw new Error(`${call.notFound} (${message})`);
  throw new Error(`${server} answered ${res.status}: ${message}`);
}
