import http, { type IncomingHttpHeaders } from "node:http";
import https from "node:https";
import { rootCertificates } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { ScmError, type ScmErrorKind } from "./provider.js";

export interface HttpOptions {
  /** The provider's name as users know it, used in every message. */
  label: string;
  /** An extra CA certificate (PEM) to trust besides the system's, for a self-hosted server. */
  ca?: string | undefined;
  timeoutMs: number;
  maxBytes: number;
  userAgent: string;
}

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface Call {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  url: URL;
  headers: Record<string, string>;
  body?: string;
  /** What the call does, for messages: "adding the deploy key to acme/app". */
  what: string;
}

// Codes Node gives when the server's certificate is not trusted; said plainly since the fix
// (configure the CA) differs from a network outage.
const TLS_TRUST = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/;

/** One HTTP(S) exchange with a provider, bounded in time and size; never throws anything but ScmError. */
export class ScmHttp {
  private readonly ca: string[] | undefined;

  constructor(private readonly options: HttpOptions) {
    // Added to, not instead of, the system roots, so a public certificate keeps working.
    this.ca = options.ca === undefined ? undefined : [...rootCertificates, options.ca];
  }

  send(call: Call): Promise<Answer> {
    const { label, timeoutMs, maxBytes } = this.options;
    return new Promise<Answer>((resolve, reject) => {
      const fail = (kind: ScmErrorKind, message: string) => {
        request?.destroy();
        reject(new ScmError(kind, message));
      };
      const timer = setTimeout(() => fail("timeout", `${label} did not answer within ${timeoutMs / 1000} s while ${call.what}: try again later; if it keeps happening, check that Slipway can reach ${call.url.host}.`), timeoutMs);
      let request: http.ClientRequest | undefined;
      try {
        const lib = call.url.protocol === "https:" ? https : http;
        // Node frames no body of a DELETE by itself: without a length it would reach the server as garbage.
        const length = call.body === undefined ? {} : { "content-length": String(Buffer.byteLength(call.body)) };
        request = lib.request(call.url, { method: call.method, headers: { "user-agent": this.options.userAgent, ...call.headers, ...length }, ca: this.ca, agent: false });
      } catch (err) {
        // Node refuses header values with control characters before anything is sent.
        clearTimeout(timer);
        reject(new ScmError("invalid", `The request for ${call.what} could not be made (${(err as Error).message}): the stored token or a name is damaged; reconnect the account.`));
        return;
      }
      request.on("error", (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const code = err.code ?? err.message;
        const hint = TLS_TRUST.test(code)
          ? `its TLS certificate is not trusted (${code}): configure the CA certificate of ${call.url.host}`
          : `${code}: check the server address and the network, then try again`;
        reject(new ScmError("unavailable", `Slipway could not reach ${label} at ${call.url.host} while ${call.what}; ${hint}.`));
      });
      request.on("response", (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            clearTimeout(timer);
            response.destroy();
            fail("malformed", `${label}'s answer while ${call.what} was larger than ${maxBytes} bytes: check that the server address points at ${label}.`);
          } else chunks.push(chunk);
        });
        response.on("end", () => {
          clearTimeout(timer);
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) });
        });
        response.on("error", () => undefined); // the request's error or the timer reports it
      });
      request.end(call.body);
    });
  }
}

/** The body as JSON of the documented shape, or `malformed`. */
export function readJson<S extends z.ZodType>(label: string, answer: Answer, schema: S, what: string): z.output<S> {
  let value: unknown;
  try {
    value = JSON.parse(answer.body.toString("utf8"));
  } catch {
    throw new ScmError("malformed", `${label} answered with something that is not JSON while ${what}: check that the server address points at ${label}, or try again later.`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const where = parsed.error.issues.map((i) => i.path.join(".") || "(top)").slice(0, 3).join(", ");
    throw new ScmError("malformed", `${label}'s answer while ${what} did not have the documented shape (at ${where}): check that the server address points at ${label}, or try again later.`);
  }
  return parsed.data;
}

/** An input checked before anything is sent, or `invalid` naming what it should have been. */
export function checkedInput<S extends z.ZodType>(label: string, schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new ScmError("invalid", `That is not a valid ${what} for ${label} (${clean(JSON.stringify(value) ?? "")}): correct it and try again.`);
  return parsed.data;
}

/** A provider-supplied text fit for a message: one line, printable, short. */
export const clean = (text: string): string => text.replace(/[^\x20-\x7e]+/g, " ").trim().slice(0, 200);

/** The wait a `Retry-After` header asks for (delta-seconds or an HTTP date), if any. */
export function retryAfterMs(headers: IncomingHttpHeaders, now = Date.now()): number | undefined {
  const value = headers["retry-after"];
  if (typeof value !== "string") return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** The page number in a `Link` header's `rel="next"` URL (RFC 8288), if there is a next page. */
export function nextPageFromLink(label: string, headers: IncomingHttpHeaders, what: string): number | undefined {
  const link = headers.link;
  if (typeof link !== "string") return undefined;
  for (const part of link.split(",")) {
    const match = /<([^>]*)>\s*;\s*rel="([^"]*)"/.exec(part);
    if (match?.[2] !== "next") continue;
    const page = Number(URL.canParse(match[1]!) ? new URL(match[1]!).searchParams.get("page") : NaN);
    if (!Number.isInteger(page) || page < 1) throw new ScmError("malformed", `${label}'s Link header names no valid next page while ${what}: try again later.`);
    return page;
  }
  return undefined;
}

/** The error for a non-success status, phrased by kind; `detail` is the provider's own words. */
export function statusError(label: string, status: number, what: string, detail: string, waitMs?: number): ScmError {
  const said = detail ? ` (${label} said: ${clean(detail)})` : "";
  if (waitMs !== undefined) return new ScmError("rate_limited", `${label}'s rate limit was reached while ${what}${said}: try again in ${Math.ceil(waitMs / 1000)} s.`, waitMs);
  if (status === 401) return new ScmError("unauthorized", `${label} rejected the token while ${what}${said}: the connection was revoked or has expired; reconnect your ${label} account.`);
  if (status === 403) return new ScmError("forbidden", `${label} refused ${what}${said}: the connected account lacks the rights for it (admin rights on the repository), or an organization restricts this app; ask a repository admin.`);
  if (status === 404 || status === 410) return new ScmError("not_found", `${label} found nothing while ${what}${said}: check the name, and that the connected account can see it.`);
  if (status >= 300 && status < 400) return new ScmError("not_found", `${label} says it moved while ${what} (HTTP ${status}): it was renamed or transferred; link it again under its new name.`);
  if (status === 400 || status === 409 || status === 422) return new ScmError("invalid", `${label} refused ${what} as invalid${said}: correct it and try again.`);
  if (status === 429) return new ScmError("rate_limited", `${label}'s rate limit was reached while ${what}${said}: try again later.`, 60_000);
  return new ScmError("unavailable", `${label} failed while ${what} (HTTP ${status})${said}: this is usually a passing outage; try again later.`);
}

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  baseDelayMs: number;
  /** The longest wait Slipway accepts; a provider asking for more gets the error instead. */
  maxDelayMs: number;
}

/** Runs `fn` again after outages and rate limits, waiting as asked or with exponential backoff. */
export async function withRetries<T>(policy: RetryPolicy, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ScmError) || (err.kind !== "unavailable" && err.kind !== "rate_limited") || attempt >= policy.attempts) throw err;
      const wait = err.retryAfterMs ?? policy.baseDelayMs * 2 ** (attempt - 1);
      if (wait > policy.maxDelayMs) throw err;
      await sleep(wait);
    }
  }
}

/** A 1-based page number, or `invalid`. */
export function checkedPage(page: number): number {
  if (!Number.isInteger(page) || page < 1 || page > 100_000) throw new ScmError("invalid", `Page ${page} is not a page number: use 1 or more.`);
  return page;
}

/** A request with an optional JSON body, sent as JSON. */
export function sendJson(http: ScmHttp, call: Omit<Call, "body"> & { json?: unknown }): Promise<Answer> {
  const { json, ...request } = call;
  return json === undefined ? http.send(request) : http.send({ ...request, headers: { ...request.headers, "content-type": "application/json" }, body: JSON.stringify(json) });
}

/** The options every provider takes besides where its server is, so the server configures all of them alike. */
export const providerOptionsShape = {
  clientId: z.string().min(1),
  clientSecret: z.string().min(1),
  /** Slipway's OAuth callback, as registered with the OAuth app. */
  redirectUri: z.url({ protocol: /^https?$/ }),
  /** A CA certificate (PEM) to trust for a self-hosted server, besides the system's. */
  ca: z.string().optional(),
  timeoutMs: z.number().int().positive().default(10_000),
  maxResponseBytes: z.number().int().positive().default(8 * 1024 * 1024),
  statusRetry: z
    .object({ attempts: z.number().int().min(1).max(10), baseDelayMs: z.number().int().min(0), maxDelayMs: z.number().int().min(0) })
    .default({ attempts: 5, baseDelayMs: 1_000, maxDelayMs: 60_000 }),
  userAgent: z.string().min(1).default("Slipway"),
};
const providerOptions = z.object(providerOptionsShape);

/** The HTTP layer for a provider's parsed options. */
export const httpFor = (label: string, o: z.output<typeof providerOptions>): ScmHttp => new ScmHttp({ label, ca: o.ca, timeoutMs: o.timeoutMs, maxBytes: o.maxResponseBytes, userAgent: o.userAgent });

/** A deploy key's or webhook's id as providers number them. */
export const numericIdSchema = z.string().regex(/^[1-9]\d{0,19}$/);
/** A full commit id: SHA-1, or SHA-256 for repositories in that object format. */
export const commitShaSchema = z.string().regex(/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/);

/** `/repos/{owner}/{repo}` for an `owner/name` checked against the host's naming rules. */
export function repoPath(label: string, names: z.ZodType<string>, repo: string): string {
  const [owner, name] = checkedInput(label, names, repo, "repository (owner/name)").split("/") as [string, string];
  return `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(name)}`;
}

/**
 * Whether a read succeeded: false where the provider hides the repository (404) or refuses it
 * (403, e.g. an organization's policy); any other failure is an error to act on, not a "no".
 */
export async function readable(check: () => Promise<unknown>): Promise<boolean> {
  try {
    await check();
    return true;
  } catch (err) {
    if (err instanceof ScmError && (err.kind === "not_found" || err.kind === "forbidden")) return false;
    throw err;
  }
}
