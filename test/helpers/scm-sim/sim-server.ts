import { createHash } from "node:crypto";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { loopbackCertificate } from "./tls.js";

// What the git host simulators share: an HTTPS server on 127.0.0.1 with a throwaway certificate,
// a log of every request, faults switched on per route, and small answer and parsing helpers.
// Each simulator keeps its provider's routes, payloads, error bodies and OAuth rules to itself.
// Like them, this file imports nothing from src/: the simulators are a reading of the providers'
// documentation apart from the clients they check.

export interface SimRequest {
  method: string;
  /** The path as sent, percent-encoding kept, without the query, e.g. `/api/v3/user/repos`. */
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/** Faults every simulator can inject; each adds the error statuses and rate limits of its provider. */
export type CommonFault = { hang: true } | { raw: string; status?: number } | { oversized: number };

/** One request as a simulator's routes see it. */
export interface SimCall {
  req: IncomingMessage;
  method: string;
  /** The path as sent, less the server's sub-path. */
  path: string;
  /** Whether `path` is under the API prefix. */
  api: boolean;
  /** `path` less the API prefix when it is under it: what `misbehave` matches. */
  route: string;
  query: URLSearchParams;
  body: string;
}

export interface SimLayout {
  /** Where the REST API sits, e.g. `/api/v3`. */
  apiPrefix: string;
  /** The Content-Type of JSON answers, which the providers spell differently. */
  jsonType: string;
}

/** A server listening on loopback, handed to the simulator that answers it. */
export interface Listening {
  server: https.Server;
  /** The base URL, with the sub-path. */
  url: string;
  subPath: string;
  /** The server's self-signed certificate, which is also the CA to trust. */
  ca: string;
}

const isCommon = (what: object): what is CommonFault => "hang" in what || "raw" in what || "oversized" in what;

export abstract class SimServer<Fault extends object> {
  readonly url: string;
  readonly ca: string;
  readonly requests: SimRequest[] = [];
  private readonly server: https.Server;
  private readonly subPath: string;
  private readonly faults: { method?: string; path: string | RegExp; what: Fault | CommonFault; left: number }[] = [];
  private readonly hanging = new Set<ServerResponse>();

  protected constructor(
    listening: Listening,
    private readonly layout: SimLayout,
  ) {
    ({ server: this.server, url: this.url, subPath: this.subPath, ca: this.ca } = listening);
  }

  /** Starts an HTTPS server on 127.0.0.1 (a free port, a fresh certificate) answered by the simulator `make` builds. */
  protected static async serve<S extends SimServer<object>>(make: (listening: Listening) => S, subPath = ""): Promise<S> {
    const { cert, key } = loopbackCertificate();
    let sim: S | undefined;
    const server = https.createServer({ cert, key }, (req, res) => sim!.receive(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    sim = make({ server, url: `https://127.0.0.1:${(server.address() as AddressInfo).port}${subPath}`, subPath, ca: cert });
    return sim;
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The next `times` requests whose route (the API path less the API prefix, or a web path) matches misbehave. */
  misbehave(match: { method?: string; path: string | RegExp }, what: Fault | CommonFault, times = 1): void {
    this.faults.push({ ...match, what, left: times });
  }

  /** Ends every pending misbehaviour. */
  calm(): void {
    this.faults.length = 0;
  }

  /** The logged requests whose path (as sent) is `path`, or matches it. */
  requestsTo(path: string | RegExp): SimRequest[] {
    return this.requests.filter((r) => (typeof path === "string" ? r.path === path : path.test(r.path)));
  }

  /** The provider's routes. */
  protected abstract route(call: SimCall, res: ServerResponse): void;

  /** Answers one of the provider's own faults: an error status or a rate limit. */
  protected abstract fail(what: Fault, res: ServerResponse): void;

  /** Answers with the provider's JSON error body. */
  protected abstract error(res: ServerResponse, status: number, message: string): void;

  private receive(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const target = req.url ?? "/";
      const q = target.indexOf("?");
      const sent = q < 0 ? target : target.slice(0, q);
      const call = { req, method: req.method ?? "", query: new URLSearchParams(q < 0 ? "" : target.slice(q + 1)), body: Buffer.concat(chunks).toString("utf8") };
      this.requests.push({ method: call.method, path: sent, query: call.query, headers: req.headers, body: call.body, at: Date.now() });
      // Outside the sub-path it is the reverse proxy in front of the server that answers.
      if (!sent.startsWith(`${this.subPath}/`)) return html(res, 404, "<html><body><h1>404 Not Found</h1></body></html>");
      const path = sent.slice(this.subPath.length);
      const api = path.startsWith(`${this.layout.apiPrefix}/`);
      const route = api ? path.slice(this.layout.apiPrefix.length) : path;
      if (this.misbehaved(call.method, route, res)) return;
      try {
        this.route({ ...call, path, api, route }, res);
      } catch (err) {
        this.error(res, 500, `simulator bug: ${(err as Error).message}`);
      }
    });
  }

  private misbehaved(method: string, route: string, res: ServerResponse): boolean {
    const fault = this.faults.find((f) => f.left > 0 && (!f.method || f.method === method) && (typeof f.path === "string" ? f.path === route : f.path.test(route)));
    if (!fault) return false;
    fault.left--;
    const what = fault.what;
    if (!isCommon(what)) this.fail(what, res);
    else if ("hang" in what) this.hanging.add(res);
    else if ("raw" in what) {
      res.writeHead(what.status ?? 200, { "content-type": this.layout.jsonType });
      res.end(what.raw);
    } else jsonAnswer(this.layout.jsonType)(res, 200, { id: 1, padding: "x".repeat(what.oversized) });
    return true;
  }
}

export type JsonAnswer = (res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>) => void;

/** A JSON answer with the provider's spelling of the Content-Type. */
export const jsonAnswer =
  (contentType: string): JsonAnswer =>
  (res, status, body, headers = {}) => {
    res.writeHead(status, { "content-type": contentType, ...headers });
    res.end(JSON.stringify(body));
  };

export function html(res: ServerResponse, status: number, page: string): void {
  res.writeHead(status, { "content-type": "text/html" });
  res.end(page);
}

/** What a proxy in front of a host answers when the host is down. */
export const BAD_GATEWAY_PAGE = "<html><body><h1>502 Bad Gateway</h1></body></html>";

export function noContent(res: ServerResponse): void {
  res.writeHead(204);
  res.end();
}

/** Sends the browser to `to` with `params` added to its query, as an OAuth authorize step answers. */
export function redirectWith(res: ServerResponse, to: string, params: Record<string, string>, status: 302 | 303 = 302): void {
  const location = new URL(to);
  for (const [k, v] of Object.entries(params)) location.searchParams.set(k, v);
  res.writeHead(status, { location: location.toString() });
  res.end();
}

/** A JSON body's top-level object; anything else reads as no fields. */
export function parseObject(body: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(body);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** A token endpoint's parameters, sent form-encoded or as JSON. */
export function formOrJson(req: IncomingMessage, body: string): URLSearchParams {
  if (!(req.headers["content-type"] ?? "").includes("json")) return new URLSearchParams(body);
  return new URLSearchParams(Object.entries(parseObject(body)).map(([k, v]): [string, string] => [k, String(v)]));
}

/** The id and secret of HTTP Basic authentication, when the request has it. */
export function basicCredentials(req: IncomingMessage): (string | undefined)[] | undefined {
  const basic = /^Basic (\S+)$/.exec(req.headers.authorization ?? "");
  return basic ? Buffer.from(basic[1]!, "base64").toString("utf8").split(":") : undefined;
}

/** The PKCE code challenge of a verifier (RFC 7636): `S256` hashes it, `plain` is the verifier itself. */
export const pkceChallenge = (verifier: string, method: string): string => (method === "S256" ? createHash("sha256").update(verifier).digest("base64url") : verifier);

/** An OpenSSH public key as the hosts accept it for deploy keys. */
export const OPENSSH_PUBLIC_KEY = /^(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) [A-Za-z0-9+/=]+/;

/** A public key less its comment: what makes two keys the same. */
export const keyMaterial = (key: string): string => key.split(" ").slice(0, 2).join(" ");

/** Removes the items of `store[key]` that match; whether there were any. */
export function removeWhere<T>(store: Map<string, T[]>, key: string, match: (item: T) => boolean): boolean {
  const list = store.get(key) ?? [];
  if (!list.some(match)) return false;
  store.set(key, list.filter((item) => !match(item)));
  return true;
}

/** The 1-based page and the page size asked for, the size capped at `max` as the hosts do. */
export function pageOf(q: URLSearchParams, sizeParam: string, fallback: number, max: number): { page: number; size: number } {
  return { page: Math.max(1, Number(q.get("page") ?? 1) || 1), size: Math.min(max, Math.max(1, Number(q.get(sizeParam) ?? fallback) || fallback)) };
}

/** A `Link` header's entries as GitHub writes them (and Gitea after it): next and last, then first and prev. */
export function pageLinks(page: number, last: number, at: (page: number) => string): string[] {
  const link = (p: number, rel: string) => `<${at(p)}>; rel="${rel}"`;
  return [...(page < last ? [link(page + 1, "next"), link(last, "last")] : []), ...(page > 1 ? [link(1, "first"), link(page - 1, "prev")] : [])];
}
