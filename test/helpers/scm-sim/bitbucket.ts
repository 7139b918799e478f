import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { hmacSha256Hex, inTurn, postToLoopback } from "./deliver.js";
import { BAD_GATEWAY_PAGE, basicCredentials, html, jsonAnswer, keyMaterial, type Listening, noContent, OPENSSH_PUBLIC_KEY, parseObject, redirectWith, removeWhere, type SimCall, SimServer } from "./sim-server.js";

// A Bitbucket Cloud stand-in on 127.0.0.1 over real TLS, written from Bitbucket's public
// documentation and nothing in src/scm, so a misreading of the API in the client is caught here
// rather than mirrored:
// - "OAuth 2.0" (developer.atlassian.com/cloud/bitbucket/oauth-2): /site/oauth2/authorize and
//   /site/oauth2/access_token, the consumer authenticating with HTTP Basic, two-hour access
//   tokens with refresh tokens; no PKCE (BCLOUD-23469) and no revocation endpoint.
// - "OAuth 2.0 and API authentication changes for Bitbucket Cloud" (2026): refresh tokens rotate
//   (each use makes a new one), token answers say `scope` instead of `scopes`.
// - The REST API 2.0 reference (its swagger.json): each endpoint's status codes and OAuth scopes,
//   the error object `{type: "error", error: {message, detail}}`, paginated answers
//   `{pagelen, page, size, values, next}`.
// - "Scopes for the Bitbucket Cloud REST API": `pullrequest` implies `repository`.
// - "Event payloads" and "Create a webhook for a repository": X-Event-Key, X-Hook-UUID,
//   X-Request-UUID, X-Attempt-Number, and `X-Hub-Signature: sha256=<hex HMAC>` when a secret is set.
// The web side sits at the root and the API under /2.0, on one server (bitbucket.org and
// api.bitbucket.org in real life).

export interface SimUser {
  uuid: string;
  accountId: string;
  username: string;
  displayName: string;
  emails: { email: string; is_primary: boolean; is_confirmed: boolean }[];
}

export interface SimRepo {
  uuid: string;
  fullName: string;
  private: boolean;
  /** null for an empty repository, which has no branch yet. */
  mainBranch: string | null;
  /** The signed-in user's effective permission; `none` hides a private repository. */
  permission: "admin" | "write" | "read" | "none";
}

export interface SimKey {
  id: number;
  key: string;
  label: string;
}

export interface SimHook {
  uuid: string;
  url: string;
  description: string;
  active: boolean;
  events: string[];
  secret: string | null;
}

export interface SimStatus {
  repo: string;
  commit: string;
  key: string;
  state: string;
  url: string;
  name: string | null;
  description: string | null;
}

/** Ways to make the next matching requests fail as Bitbucket can, besides those every simulator has. */
export type BitbucketFault = { status: 400 | 401 | 403 | 404 | 500 | 502 | 503 } | { rateLimit: true; retryAfterSeconds?: number };

interface Token {
  user: SimUser;
  scopes: string[];
  refreshToken?: string;
}

interface Grant {
  scopes: string[];
  redirectUri: string | null;
  used: boolean;
}

export interface BitbucketSimOptions {
  clientId?: string;
  clientSecret?: string;
  /** The consumer's callback URL. */
  callbackUrl?: string;
  /** The consumer's permission checkboxes: every token it issues has exactly these. */
  consumerScopes?: string[];
  /** Name the granted scopes `scopes`, as Bitbucket did before its 2026 OAuth changes. */
  legacyScopesField?: boolean;
  /** Repositories the user administers, besides the fixed ones below (for pagination). */
  extraRepos?: number;
  /** Where a repository is cloned over SSH (its `ssh` clone link), e.g. a test's own sshd; Bitbucket's form by default. */
  sshUrl?: (fullName: string) => string;
}

const JSON_TYPE = "application/json; charset=utf-8";
const json = jsonAnswer(JSON_TYPE);
const bbError = (res: ServerResponse, status: number, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  json(res, status, { type: "error", error: { message, ...extra } }, headers);

/** Bitbucket's webhook signature: `sha256=` and the hex HMAC-SHA256 of the raw body with the secret. */
export const hubSignature = (secret: string, body: string | Buffer): string => `sha256=${hmacSha256Hex(secret, body)}`;

const IMPLIED: Record<string, string[]> = { pullrequest: ["repository"], "pullrequest:write": ["pullrequest", "repository"], "repository:write": ["repository"], "repository:admin": [] };
/** The scope each webhook event needs on top of `webhook` ("Create a webhook for a repository"). */
const EVENT_SCOPE: Record<string, string> = { "repo:push": "repository", "pullrequest:created": "pullrequest", "pullrequest:updated": "pullrequest", "pullrequest:fulfilled": "pullrequest", "issue:created": "issue" };
const STATES = ["INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED"];
const braces = (uuid: string) => `{${uuid}}`;

export class BitbucketSim extends SimServer<BitbucketFault> {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly callbackUrl: string;
  readonly apiUrl: string;
  /** The consumer's permissions; a test may change them between sign-ins. */
  consumerScopes: string[];
  readonly user: SimUser = {
    uuid: braces("d301aafa-d676-4ee0-88be-962be7417567"),
    accountId: "557058:c0b72ad0-1cb5-4018-9cdc-0cde8492c443",
    username: "evzijst",
    displayName: "Erik van Zijst",
    emails: [
      { email: "erik@old.example", is_primary: false, is_confirmed: true },
      { email: "erik@example.com", is_primary: true, is_confirmed: true },
    ],
  };
  readonly repos: SimRepo[] = [];
  readonly keys = new Map<string, SimKey[]>();
  readonly hooks = new Map<string, SimHook[]>();
  readonly statuses: SimStatus[] = [];
  private readonly tokens = new Map<string, Token>();
  private readonly grants = new Map<string, Grant>();
  private readonly refreshTokens = new Map<string, string>();
  private nextId = 100;

  private constructor(
    listening: Listening,
    private readonly options: BitbucketSimOptions,
  ) {
    super(listening, { apiPrefix: "/2.0", jsonType: JSON_TYPE });
    this.clientId = options.clientId ?? "Cz8vXxQ3sWmPrkjU7L";
    this.clientSecret = options.clientSecret ?? "sim-consumer-secret-9f8e7d6c5b4a";
    this.callbackUrl = options.callbackUrl ?? "https://127.0.0.1:8443/auth/bitbucket";
    this.consumerScopes = options.consumerScopes ?? ["account", "email", "pullrequest", "repository", "repository:admin", "webhook"];
    this.apiUrl = `${this.url}/2.0`;
    const repo = (n: number, fullName: string, isPrivate: boolean, mainBranch: string | null, permission: SimRepo["permission"]): SimRepo => ({ uuid: braces(`85d08b4e-571d-44e9-a507-${String(n).padStart(12, "0")}`), fullName, private: isPrivate, mainBranch, permission });
    this.repos.push(
      repo(1, "evzijst/geordi", false, "main", "admin"),
      repo(2, "acme/private-app", true, "trunk", "admin"),
      repo(3, "acme/read-only", true, "main", "read"),
      repo(4, "acme/secret", true, "main", "none"),
      repo(5, "atlassian/public-lib", false, "master", "none"),
      repo(6, "acme/empty", true, null, "write"),
    );
    for (let i = 1; i <= (options.extraRepos ?? 0); i++) this.repos.push(repo(1000 + i, `evzijst/repo-${String(i).padStart(3, "0")}`, false, "main", "admin"));
  }

  static start(options: BitbucketSimOptions = {}): Promise<BitbucketSim> {
    return SimServer.serve((listening) => new BitbucketSim(listening, options));
  }

  /** An access token for the user with these scopes, as if the OAuth flow had run. */
  issueToken(scopes: string[]): string {
    const token = randomBytes(32).toString("base64url");
    this.tokens.set(token, { user: this.user, scopes });
    return token;
  }

  tokenIsValid(token: string): boolean {
    return this.tokens.has(token);
  }

  /** What the user does under personal settings → app authorizations: every token of the consumer dies. */
  revokeAccess(): void {
    this.tokens.clear();
    this.refreshTokens.clear();
  }

  repo(fullName: string): SimRepo | undefined {
    return this.repos.find((r) => r.fullName.toLowerCase() === fullName.toLowerCase());
  }

  /** Delivers a webhook as Bitbucket does ("Event payloads"); loopback targets only. */
  async sendWebhook(target: string, event: string, payload: unknown, secret: string | null, opts: { hookUuid?: string; requestUuid?: string; ca?: string } = {}): Promise<{ status: number; body: string; requestUuid: string }> {
    const requestUuid = opts.requestUuid ?? randomUUID();
    const body = JSON.stringify(payload);
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": "Bitbucket-Webhooks/2.0",
      "x-event-key": event,
      "x-hook-uuid": (opts.hookUuid ?? randomUUID()).replace(/[{}]/g, ""),
      "x-request-uuid": requestUuid,
      "x-attempt-number": "1",
    };
    // Bitbucket only signs when the webhook has a secret.
    if (secret) headers["x-hub-signature"] = hubSignature(secret, body);
    return { ...(await postToLoopback(target, headers, body, opts.ca)), requestUuid };
  }

  /** Sends `event` to every active hook on the repository subscribed to it. */
  async deliver(repo: string, event: string, payload: unknown, opts: { ca?: string } = {}) {
    const hooks = (this.hooks.get(repo.toLowerCase()) ?? []).filter((h) => h.active && h.events.includes(event));
    return inTurn(hooks, (h) => this.sendWebhook(h.url, event, payload, h.secret, { hookUuid: h.uuid, ...opts }));
  }

  /** A `repo:push` payload in the documented shape, trimmed to the commonly read fields. */
  pushPayload(repo: string, push: { branch: string; hash: string; oldHash?: string; message?: string; tag?: boolean }) {
    const r = this.mustRepo(repo);
    const target = { type: "commit", hash: push.hash, message: push.message ?? "Update README\n", date: "2024-01-01T00:00:00+00:00", author: { type: "author", raw: `${this.user.displayName} <erik@example.com>`, user: this.account() }, links: { html: { href: `${this.url}/${r.fullName}/commits/${push.hash}` } } };
    const ref = (hash: string) => ({ type: push.tag ? "tag" : "branch", name: push.branch, target: { ...target, hash } });
    return {
      actor: this.account(),
      repository: this.repoJson(r),
      push: { changes: [{ new: ref(push.hash), old: push.oldHash ? ref(push.oldHash) : null, created: push.oldHash === undefined, closed: false, forced: false, truncated: false, commits: [target] }] },
    };
  }

  /** A `pullrequest:created`/`updated` payload; Bitbucket names the source commit by a 12-character hash. */
  pullRequestPayload(repo: string, pr: { id: number; title: string; branch: string; hash: string }) {
    const r = this.mustRepo(repo);
    const side = (branch: string, hash: string) => ({ branch: { name: branch }, commit: { hash, type: "commit" }, repository: { type: "repository", full_name: r.fullName, uuid: r.uuid } });
    return {
      actor: this.account(),
      repository: this.repoJson(r),
      pullrequest: { type: "pullrequest", id: pr.id, title: pr.title, state: "OPEN", author: this.account(), source: side(pr.branch, pr.hash), destination: side(r.mainBranch ?? "main", "e1749643d655"), links: { html: { href: `${this.url}/${r.fullName}/pull-requests/${pr.id}` } } },
    };
  }

  private mustRepo(repo: string): SimRepo {
    const r = this.repo(repo);
    if (!r) throw new Error(`no repository ${repo}`);
    return r;
  }

  protected error(res: ServerResponse, status: number, message: string): void {
    bbError(res, status, message);
  }

  protected fail(what: BitbucketFault, res: ServerResponse): void {
    if ("rateLimit" in what) return bbError(res, 429, "Rate limit for this resource has been exceeded", {}, what.retryAfterSeconds === undefined ? {} : { "retry-after": String(what.retryAfterSeconds) });
    const bodies: Record<number, () => void> = {
      400: () => bbError(res, 400, "Bad request", { fields: { url: ["Enter a valid URL."] } }),
      401: () => bbError(res, 401, "Access token expired. Use your refresh token to obtain a new access token."),
      403: () => bbError(res, 403, "You do not have admin access to this repository."),
      404: () => bbError(res, 404, "Repository not found"),
      500: () => bbError(res, 500, "Something went wrong", { id: randomUUID() }),
      502: () => html(res, 502, BAD_GATEWAY_PAGE),
      503: () => bbError(res, 503, "Service unavailable"),
    };
    bodies[what.status]!();
  }

  protected route({ req, method, api, route, query, body }: SimCall, res: ServerResponse): void {
    if (method === "GET" && route === "/site/oauth2/authorize") return this.authorize(query, res);
    if (method === "POST" && route === "/site/oauth2/access_token") return this.accessToken(req, body, res);
    if (!api) return bbError(res, 404, "Resource not found");

    // Since 2026 access tokens are taken only from the Authorization header.
    const auth = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "");
    const token = auth ? this.tokens.get(auth[1]!) : undefined;
    if (!token) return bbError(res, 401, auth ? "Access token expired. Use your refresh token to obtain a new access token." : "This API is only accessible with the following authentication types: session, password, apppassword, api_token, repo_access_token, workspace_access_token, project_access_token");
    const granted = new Set(token.scopes.flatMap((s) => [s, ...(IMPLIED[s] ?? [])]));
    /** 403 unless every scope is granted, as Bitbucket answers a token that lacks one. */
    const need = (...scopes: string[]): boolean => {
      if (scopes.every((s) => granted.has(s))) return true;
      bbError(res, 403, "Your credentials lack one or more required privilege scopes.", { detail: { granted: token.scopes, required: scopes } });
      return false;
    };

    if (method === "GET" && route === "/user") {
      if (!need("account")) return;
      const u = token.user;
      return json(res, 200, { type: "user", uuid: u.uuid, account_id: u.accountId, username: u.username, nickname: u.username, display_name: u.displayName, created_on: "2011-12-20T16:34:07.132459+00:00", links: { avatar: { href: `${this.url}/account/${u.username}/avatar/32/` }, html: { href: `${this.url}/${u.username}/` } } });
    }
    if (method === "GET" && route === "/user/emails") {
      if (!need("email")) return;
      const values = token.user.emails.map((e) => ({ type: "email", ...e, links: { self: { href: `${this.apiUrl}/user/emails/${e.email}` } } }));
      return json(res, 200, { pagelen: 10, page: 1, size: values.length, values });
    }
    if (method === "GET" && route === "/repositories") {
      if (!need("repository")) return;
      return this.listRepos(query, res);
    }

    const repoMatch = /^\/repositories\/([^/]+)\/([^/]+)(\/.*)?$/.exec(route);
    if (!repoMatch) return bbError(res, 404, "Resource not found");
    const repo = this.repo(`${decodeURIComponent(repoMatch[1]!)}/${decodeURIComponent(repoMatch[2]!)}`);
    const rest = repoMatch[3] ?? "";
    if (!repo) return bbError(res, 404, `Repository ${decodeURIComponent(repoMatch[1]!)}/${decodeURIComponent(repoMatch[2]!)} not found`);
    // "Get a repository": 403 when private and the user has no access to it.
    if (repo.private && repo.permission === "none") return bbError(res, 403, "Access denied. You must have read access to this repository.");
    const key = repo.fullName.toLowerCase();
    const admin = () => repo.permission === "admin" || (bbError(res, 403, "You do not have admin access to this repository."), false);

    if (method === "GET" && rest === "") {
      if (need("repository")) json(res, 200, this.repoJson(repo));
      return;
    }
    if (method === "GET" && rest === "/deploy-keys") {
      if (!need("repository", "repository:admin") || !admin()) return;
      const values = (this.keys.get(key) ?? []).map((k) => ({ type: "deploy_key", id: k.id, key: k.key, label: k.label }));
      return json(res, 200, { pagelen: 10, page: 1, size: values.length, values });
    }
    if (method === "GET" && rest === "/hooks") {
      if (!need("webhook") || !admin()) return;
      const values = (this.hooks.get(key) ?? []).map(({ secret, ...h }) => ({ type: "webhook_subscription", ...h, secret_set: secret !== null }));
      return json(res, 200, { pagelen: 10, page: 1, size: values.length, values });
    }
    if (rest === "/deploy-keys" && method === "POST") {
      if (!need("repository", "repository:admin") || !admin()) return;
      const input = parseObject(body);
      if (typeof input.key !== "string" || !OPENSSH_PUBLIC_KEY.test(input.key)) return bbError(res, 400, "Invalid deploy key inputs", { fields: { key: ["Invalid SSH key"] } });
      const list = this.keys.get(key) ?? [];
      if (list.some((k) => keyMaterial(k.key) === keyMaterial(String(input.key)))) return bbError(res, 400, "Someone has already added that access key to this repository.");
      const created: SimKey = { id: this.nextId++, key: String(input.key), label: typeof input.label === "string" ? input.label : "" };
      this.keys.set(key, [...list, created]);
      const comment = created.key.split(" ").slice(2).join(" ");
      // "Add a repository deploy key" answers 200, not 201.
      return json(res, 200, { type: "deploy_key", id: created.id, key: keyMaterial(created.key), label: created.label, comment, created_on: new Date().toISOString(), last_used: null, links: { self: { href: `${this.apiUrl}/repositories/${repo.fullName}/deploy-keys/${created.id}` } }, repository: { type: "repository", full_name: repo.fullName, uuid: repo.uuid } });
    }
    const keyMatch = /^\/deploy-keys\/(\d+)$/.exec(rest);
    if (keyMatch && method === "DELETE") {
      if (!need("repository", "repository:admin") || !admin()) return;
      return removeWhere(this.keys, key, (k) => k.id === Number(keyMatch[1])) ? noContent(res) : bbError(res, 404, "Deploy key not found");
    }
    if (rest === "/hooks" && method === "POST") {
      const input = parseObject(body);
      const events = Array.isArray(input.events) ? input.events.map(String) : [];
      const unknown = events.filter((e) => !(e in EVENT_SCOPE));
      if (unknown.length || !events.length) return bbError(res, 400, "Invalid events", { fields: { events: [`unknown or missing events: ${unknown.join(", ")}`] } });
      // "requires the webhook scope, as well as any scope that applies to the events".
      if (!need("webhook", ...new Set(events.map((e) => EVENT_SCOPE[e]!))) || !admin()) return;
      if (typeof input.url !== "string" || !URL.canParse(input.url)) return bbError(res, 400, "Bad request", { fields: { url: ["Enter a valid URL."] } });
      const created: SimHook = { uuid: braces(randomUUID()), url: input.url, description: typeof input.description === "string" ? input.description : "", active: input.active !== false, events, secret: typeof input.secret === "string" && input.secret ? input.secret : null };
      this.hooks.set(key, [...(this.hooks.get(key) ?? []), created]);
      const { secret, ...shown } = created;
      return json(res, 201, { type: "webhook_subscription", ...shown, subject_type: "repository", subject: { type: "repository", full_name: repo.fullName, uuid: repo.uuid }, secret_set: secret !== null, created_at: new Date().toISOString(), links: { self: { href: `${this.apiUrl}/repositories/${repo.fullName}/hooks/${encodeURIComponent(created.uuid)}` } } });
    }
    const hookMatch = /^\/hooks\/([^/]+)$/.exec(rest);
    if (hookMatch && method === "DELETE") {
      if (!need("webhook") || !admin()) return;
      const uid = decodeURIComponent(hookMatch[1]!);
      return removeWhere(this.hooks, key, (h) => h.uuid === uid) ? noContent(res) : bbError(res, 404, "Webhook not found");
    }
    const statusMatch = /^\/commit\/([^/]+)\/statuses\/build\/?$/.exec(rest);
    if (statusMatch && method === "POST") {
      // The reference names only the `repository` scope; posting is taken to need write access.
      if (!need("repository")) return;
      if (repo.permission !== "admin" && repo.permission !== "write") return bbError(res, 403, "You do not have write access to this repository.");
      const commit = statusMatch[1]!;
      if (!/^[0-9a-f]{7,40}$/.test(commit)) return bbError(res, 404, `Commit not found: ${commit}`);
      const input = parseObject(body);
      const problems: Record<string, string[]> = {};
      if (typeof input.key !== "string" || !input.key) problems.key = ["This field is required."];
      if (typeof input.state !== "string" || !STATES.includes(input.state)) problems.state = [`"${String(input.state)}" is not a valid choice.`];
      if (typeof input.url !== "string" || !URL.canParse(input.url)) problems.url = ["This field is required."];
      if (Object.keys(problems).length) return bbError(res, 400, "Bad request", { fields: problems });
      const status: SimStatus = { repo: repo.fullName, commit, key: String(input.key), state: String(input.state), url: String(input.url), name: typeof input.name === "string" ? input.name : null, description: typeof input.description === "string" ? input.description : null };
      this.statuses.push(status);
      const { repo: _repo, commit: hash, ...shown } = status;
      return json(res, 201, { type: "build", ...shown, refname: null, created_on: new Date().toISOString(), updated_on: new Date().toISOString(), commit: { type: "commit", hash }, links: { self: { href: `${this.apiUrl}/repositories/${repo.fullName}/commit/${hash}/statuses/build/${status.key}` } } });
    }
    return bbError(res, 404, "Resource not found");
  }

  private account() {
    const u = this.user;
    return { type: "user", uuid: u.uuid, account_id: u.accountId, nickname: u.username, display_name: u.displayName, links: { avatar: { href: `${this.url}/account/${u.username}/avatar/32/` } } };
  }

  private repoJson(r: SimRepo) {
    const host = new URL(this.url).host;
    const [workspace, slug] = r.fullName.split("/") as [string, string];
    return {
      type: "repository",
      uuid: r.uuid,
      full_name: r.fullName,
      name: slug,
      slug,
      is_private: r.private,
      scm: "git",
      mainbranch: r.mainBranch === null ? null : { type: "branch", name: r.mainBranch },
      workspace: { type: "workspace", slug: workspace, uuid: braces("a15fb181-db1f-48f7-b41f-e1eff06929d6") },
      links: {
        html: { href: `${this.url}/${r.fullName}` },
        clone: [
          { name: "https", href: `https://${this.user.username}@${host}/${r.fullName}.git` },
          { name: "ssh", href: this.options.sshUrl?.(r.fullName) ?? `git@${host}:${r.fullName}.git` },
        ],
      },
    };
  }

  /** "List public repositories" with `role=member`: only repositories the user was given access to. */
  private listRepos(q: URLSearchParams, res: ServerResponse): void {
    const pagelen = Number(q.get("pagelen") ?? 10);
    if (!Number.isInteger(pagelen) || pagelen < 1 || pagelen > 100) return bbError(res, 400, "Invalid pagelen");
    const page = Number(q.get("page") ?? 1);
    if (!Number.isInteger(page) || page < 1) return bbError(res, 400, "Invalid page");
    const role = q.get("role");
    const visible = this.repos.filter((r) => (role === "member" ? r.permission !== "none" : !r.private));
    const values = visible.slice((page - 1) * pagelen, page * pagelen).map((r) => this.repoJson(r));
    const at = (p: number) => {
      const next = new URL(`${this.apiUrl}/repositories`);
      for (const [k, v] of q) next.searchParams.set(k, v);
      next.searchParams.set("page", String(p));
      return next.toString();
    };
    json(res, 200, { pagelen, size: visible.length, page, values, ...(page * pagelen < visible.length ? { next: at(page + 1) } : {}), ...(page > 1 ? { previous: at(page - 1) } : {}) });
  }

  /** "Authorization Code Grant": the signed-in user approves at once and is sent back with code and state. */
  private authorize(q: URLSearchParams, res: ServerResponse): void {
    if (q.get("client_id") !== this.clientId) return bbError(res, 400, "Invalid client_id");
    const state = q.get("state");
    const redirect = q.get("redirect_uri");
    const back = (params: Record<string, string>) => redirectWith(res, redirect && this.redirectAllowed(redirect) ? redirect : this.callbackUrl, { ...params, ...(state === null ? {} : { state }) });
    if (redirect && !this.redirectAllowed(redirect)) return back({ error: "invalid_request", error_description: "The redirect_uri must start with the consumer's callback URL." });
    if (q.get("response_type") !== "code") return back({ error: "unsupported_response_type", error_description: "Only code and token are supported." });
    const code = randomBytes(12).toString("base64url");
    this.grants.set(code, { scopes: [...this.consumerScopes], redirectUri: redirect, used: false });
    back({ code });
  }

  // "If you do include the URL in a request it must be appended to the same URL configured in the consumer."
  private redirectAllowed(redirect: string): boolean {
    return URL.canParse(redirect) && redirect.startsWith(this.callbackUrl);
  }

  /** The token endpoint: the consumer's key and secret by HTTP Basic; errors as RFC 6749 §5.2, HTTP 400/401. */
  private accessToken(req: IncomingMessage, body: string, res: ServerResponse): void {
    const p = new URLSearchParams(body);
    const error = (status: number, code: string, description: string) => json(res, status, { error: code, error_description: description });
    const [id, secret] = basicCredentials(req) ?? [p.get("client_id"), p.get("client_secret")];
    if (id !== this.clientId || secret !== this.clientSecret) return error(401, "invalid_client", "Invalid OAuth client credentials");
    let scopes: string[];
    if (p.get("grant_type") === "refresh_token") {
      const old = p.get("refresh_token") ?? "";
      const access = this.refreshTokens.get(old);
      if (!access) return error(400, "invalid_grant", "Invalid refresh_token");
      // Rotation: the refresh token is spent, and the access token it belonged to goes with it.
      this.refreshTokens.delete(old);
      scopes = this.tokens.get(access)?.scopes ?? [...this.consumerScopes];
      this.tokens.delete(access);
    } else if (p.get("grant_type") === "authorization_code") {
      const grant = this.grants.get(p.get("code") ?? "");
      if (!grant || grant.used) return error(400, "invalid_grant", "The authorization code is invalid or has expired.");
      // RFC 6749 §4.1.3: the same redirect_uri as at the authorize step.
      if (grant.redirectUri && p.get("redirect_uri") !== grant.redirectUri) return error(400, "invalid_grant", "redirect_uri does not match.");
      grant.used = true;
      scopes = grant.scopes;
    } else return error(400, "unsupported_grant_type", `Unsupported grant type: ${p.get("grant_type")}`);
    const token = this.issueToken(scopes);
    const refreshToken = randomBytes(24).toString("base64url");
    this.refreshTokens.set(refreshToken, token);
    json(res, 200, { access_token: token, [this.options.legacyScopesField ? "scopes" : "scope"]: scopes.join(" "), expires_in: 7200, refresh_token: refreshToken, token_type: "bearer", state: p.get("grant_type") });
  }
}
