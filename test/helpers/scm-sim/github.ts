import { createHmac, randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { hmacSha256Hex, inTurn, isLoopback, postToLoopback } from "./deliver.js";
import { BAD_GATEWAY_PAGE, basicCredentials, formOrJson, html, jsonAnswer, keyMaterial, type Listening, noContent, OPENSSH_PUBLIC_KEY, pageLinks, pageOf, parseObject, pkceChallenge, redirectWith, removeWhere, type SimCall, SimServer } from "./sim-server.js";

// A GitHub Enterprise Server stand-in on 127.0.0.1 over real TLS, written from GitHub's public
// documentation (OAuth web flow, REST API 2022-11-28, webhook deliveries) and nothing in src/scm,
// so a misreading of the API in the client is caught here rather than mirrored. Web routes sit at
// the root, the REST API under /api/v3, as on GitHub Enterprise Server.

export interface SimUser {
  id: number;
  login: string;
  name: string | null;
  /** The profile's public email; null when the user keeps it private (the common case). */
  publicEmail: string | null;
  emails: { email: string; primary: boolean; verified: boolean }[];
}

export interface SimRepo {
  id: number;
  fullName: string;
  private: boolean;
  defaultBranch: string;
  /** What the signed-in user may do: admin (keys, hooks), push (statuses), pull, or none (hidden if private). */
  permission: "admin" | "push" | "pull" | "none";
}

export interface SimKey {
  id: number;
  title: string;
  key: string;
  read_only: boolean;
  /** The token that created it: revoking an OAuth app token deletes the keys it made (GitHub docs). */
  createdBy: string;
}

export interface SimHook {
  id: number;
  name: string;
  active: boolean;
  events: string[];
  config: { url: string; content_type: string; secret?: string; insecure_ssl: string };
}

export interface SimStatus {
  repo: string;
  sha: string;
  state: string;
  target_url: string | null;
  description: string | null;
  context: string;
}

/** Ways to make the next matching requests fail as GitHub can, besides those every simulator has. */
export type GitHubFault = { status: 401 | 403 | 404 | 422 | 500 | 502 | 503 } | { rateLimit: "primary" } | { rateLimit: "secondary"; status: 403 | 429; retryAfterSeconds: number };

interface Token {
  user: SimUser;
  scopes: string[];
  refreshToken?: string;
}

interface Grant {
  scopes: string[];
  challenge: string | null;
  redirectUri: string | null;
  used: boolean;
}

export interface GitHubSimOptions {
  clientId?: string;
  clientSecret?: string;
  /** The OAuth app's registered callback URL. */
  callbackUrl?: string;
  /** Hand out expiring tokens with refresh tokens, as GitHub Apps with expiring user tokens do. */
  expiringTokens?: boolean;
  /** Public repositories owned by the user, besides the fixed ones below (for pagination). */
  extraRepos?: number;
  /** Where a repository is cloned over SSH (its `ssh_url`), e.g. a test's own sshd; GitHub's form by default. */
  sshUrl?: (fullName: string) => string;
}

const DOCS = "https://docs.github.com/rest";
const JSON_TYPE = "application/json; charset=utf-8";
const json = jsonAnswer(JSON_TYPE);
const githubError = (res: ServerResponse, status: number, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  json(res, status, { message, documentation_url: DOCS, status: String(status), ...extra }, headers);
const validationFailed = (res: ServerResponse, resource: string, message: string) => githubError(res, 422, "Validation Failed", { errors: [{ resource, code: "custom", message }] });

/** GitHub's webhook signature: `sha256=` and the hex HMAC-SHA256 of the raw body with the secret. */
export const signature256 = (secret: string, body: string | Buffer): string => `sha256=${hmacSha256Hex(secret, body)}`;

export class GitHubSim extends SimServer<GitHubFault> {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly callbackUrl: string;
  readonly user: SimUser = { id: 583231, login: "octocat", name: "The Octocat", publicEmail: null, emails: [{ email: "octocat@users.noreply.github.com", primary: false, verified: true }, { email: "octocat@example.com", primary: true, verified: true }] };
  readonly repos: SimRepo[] = [];
  readonly keys = new Map<string, SimKey[]>();
  readonly hooks = new Map<string, SimHook[]>();
  readonly statuses: SimStatus[] = [];
  /** Scope lists asked for at the authorize endpoint, in order. */
  readonly requestedScopes: string[][] = [];
  private readonly tokens = new Map<string, Token>();
  private readonly grants = new Map<string, Grant>();
  private readonly refreshTokens = new Map<string, string>();
  private nextId = 1000;

  private constructor(
    listening: Listening,
    private readonly options: GitHubSimOptions,
  ) {
    super(listening, { apiPrefix: "/api/v3", jsonType: JSON_TYPE });
    this.clientId = options.clientId ?? "Iv1.8a61f9b3a7aba766";
    this.clientSecret = options.clientSecret ?? "sim-client-secret-1e2d3c";
    this.callbackUrl = options.callbackUrl ?? "https://127.0.0.1:8443/auth/github/callback";
    this.repos.push(
      { id: 1296269, fullName: "octocat/Hello-World", private: false, defaultBranch: "main", permission: "admin" },
      { id: 1296270, fullName: "acme/private-app", private: true, defaultBranch: "trunk", permission: "admin" },
      { id: 1296271, fullName: "acme/read-only", private: true, defaultBranch: "main", permission: "pull" },
      { id: 1296272, fullName: "acme/secret", private: true, defaultBranch: "main", permission: "none" },
      { id: 1296273, fullName: "torvalds/linux", private: false, defaultBranch: "master", permission: "none" },
    );
    for (let i = 1; i <= (options.extraRepos ?? 0); i++) this.repos.push({ id: 2_000_000 + i, fullName: `octocat/repo-${String(i).padStart(3, "0")}`, private: false, defaultBranch: "main", permission: "admin" });
  }

  static start(options: GitHubSimOptions = {}): Promise<GitHubSim> {
    return SimServer.serve((listening) => new GitHubSim(listening, options));
  }

  /** A token for the user with these scopes, as if the OAuth flow had run. */
  issueToken(scopes: string[]): string {
    const token = `gho_${randomBytes(18).toString("hex")}`;
    this.tokens.set(token, { user: this.user, scopes });
    return token;
  }

  /** Every refresh token handed out and not yet spent. */
  refreshTokensOutstanding(): string[] {
    return [...this.refreshTokens.keys()];
  }

  /** The OAuth token of the newest API request that carried one: the token Slipway holds now. */
  lastToken(): string {
    const request = [...this.requests].reverse().find((r) => r.headers.authorization?.startsWith("Bearer gho_"));
    if (!request) throw new Error("no request carried an OAuth token yet");
    return request.headers.authorization!.slice("Bearer ".length);
  }

  /** GitHub stops accepting a token (it expired, or an organisation's policy shut it out); what it made stays. */
  invalidateToken(token: string): void {
    this.tokens.delete(token);
  }

  tokenIsValid(token: string): boolean {
    return this.tokens.has(token);
  }

  repo(fullName: string): SimRepo | undefined {
    return this.repos.find((r) => r.fullName.toLowerCase() === fullName.toLowerCase());
  }

  /**
   * Delivers a webhook as GitHub does ("Webhook events and payloads", "Validating webhook
   * deliveries"): JSON body, X-GitHub-Event/-Delivery/-Hook-ID, and with a secret the
   * X-Hub-Signature-256 (and legacy SHA-1 X-Hub-Signature) headers. Loopback targets only.
   */
  async sendWebhook(target: string, event: string, payload: unknown, secret: string | undefined, opts: { hookId?: number; deliveryId?: string; ca?: string; contentType?: "json" | "form" } = {}): Promise<{ status: number; body: string; deliveryId: string }> {
    const deliveryId = opts.deliveryId ?? randomUUID();
    const text = JSON.stringify(payload);
    const body = opts.contentType === "form" ? `payload=${encodeURIComponent(text)}` : text;
    const headers: Record<string, string> = {
      "content-type": opts.contentType === "form" ? "application/x-www-form-urlencoded" : "application/json",
      "user-agent": "GitHub-Hookshot/044aadd",
      "x-github-event": event,
      "x-github-delivery": deliveryId,
      "x-github-hook-id": String(opts.hookId ?? 0),
      "x-github-hook-installation-target-type": "repository",
      "x-github-hook-installation-target-id": "1296269",
    };
    if (secret !== undefined) {
      headers["x-hub-signature"] = `sha1=${createHmac("sha1", secret).update(body).digest("hex")}`;
      headers["x-hub-signature-256"] = signature256(secret, body);
    }
    return { ...(await postToLoopback(target, headers, body, opts.ca)), deliveryId };
  }

  /** Sends `event` to every active hook on the repository subscribed to it (ping goes to all). */
  async deliver(repo: string, event: string, payload: unknown, opts: { ca?: string } = {}) {
    const hooks = (this.hooks.get(repo.toLowerCase()) ?? []).filter((h) => h.active && (event === "ping" || h.events.includes(event) || h.events.includes("*")));
    return inTurn(hooks, (h) => this.sendWebhook(h.config.url, event, payload, h.config.secret, { hookId: h.id, contentType: h.config.content_type === "form" ? "form" : "json", ...opts }));
  }

  /** A push event payload in the documented shape, trimmed to the commonly read fields. */
  pushPayload(repo: string, push: { ref: string; before?: string; after: string; message?: string }) {
    const r = this.repo(repo);
    if (!r) throw new Error(`no repository ${repo}`);
    const [owner, name] = r.fullName.split("/") as [string, string];
    const commit = { id: push.after, tree_id: push.after, distinct: true, message: push.message ?? "Update README", timestamp: "2024-01-01T00:00:00Z", url: `${this.url}/${r.fullName}/commit/${push.after}`, author: { name: this.user.name, email: "octocat@example.com", username: this.user.login }, committer: { name: this.user.name, email: "octocat@example.com", username: this.user.login }, added: [], removed: [], modified: ["README.md"] };
    return {
      ref: push.ref,
      before: push.before ?? "0".repeat(40),
      after: push.after,
      created: push.before === undefined,
      deleted: false,
      forced: false,
      base_ref: null,
      compare: `${this.url}/${r.fullName}/compare/${(push.before ?? "0".repeat(40)).slice(0, 12)}...${push.after.slice(0, 12)}`,
      commits: [commit],
      head_commit: commit,
      repository: { ...this.repoJson(r), name, owner: { login: owner, id: 1 } },
      pusher: { name: this.user.login, email: "octocat@example.com" },
      sender: { login: this.user.login, id: this.user.id },
    };
  }

  protected error(res: ServerResponse, status: number, message: string): void {
    githubError(res, status, message);
  }

  protected fail(what: GitHubFault, res: ServerResponse): void {
    if ("rateLimit" in what) {
      if (what.rateLimit === "primary") {
        const reset = String(Math.floor(Date.now() / 1000) + 3600);
        githubError(res, 403, `API rate limit exceeded for user ID ${this.user.id}.`, {}, { "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-used": "5000", "x-ratelimit-reset": reset, "x-ratelimit-resource": "core" });
      } else {
        githubError(res, what.status, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", {}, { "retry-after": String(what.retryAfterSeconds) });
      }
      return;
    }
    const bodies: Record<number, () => void> = {
      401: () => githubError(res, 401, "Bad credentials"),
      403: () => githubError(res, 403, "Must have admin rights to Repository."),
      404: () => githubError(res, 404, "Not Found"),
      422: () => validationFailed(res, "Hook", "Hook already exists on this repository"),
      500: () => githubError(res, 500, "Server Error"),
      502: () => html(res, 502, BAD_GATEWAY_PAGE),
      503: () => githubError(res, 503, "Service Unavailable"),
    };
    bodies[what.status]!();
  }

  protected route({ req, method, api, route, query, body }: SimCall, res: ServerResponse): void {
    if (method === "GET" && route === "/login/oauth/authorize") return this.authorize(query, res);
    if (method === "POST" && route === "/login/oauth/access_token") return this.accessToken(req, body, res);
    if (!api) return githubError(res, 404, "Not Found");
    // GitHub refuses API requests without a User-Agent, and API versions it does not know.
    if (!req.headers["user-agent"]) return githubError(res, 403, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header.");
    const version = req.headers["x-github-api-version"];
    if (version !== undefined && version !== "2022-11-28") return githubError(res, 400, `API version ${String(version)} is not supported.`);

    const grantMatch = /^\/applications\/([^/]+)\/grant$/.exec(route);
    if (grantMatch && method === "DELETE") return this.deleteGrant(req, decodeURIComponent(grantMatch[1]!), body, res);

    const auth = /^(?:Bearer|token) (\S+)$/.exec(req.headers.authorization ?? "");
    if (!auth) return githubError(res, 401, "Requires authentication");
    const token = this.tokens.get(auth[1]!);
    if (!token) return githubError(res, 401, "Bad credentials");
    res.setHeader("x-oauth-scopes", token.scopes.join(", "));
    const has = (...scopes: string[]) => scopes.some((s) => token.scopes.includes(s));

    if (method === "GET" && route === "/user") {
      const u = token.user;
      return json(res, 200, { login: u.login, id: u.id, node_id: "MDQ6VXNlcjE=", avatar_url: `${this.url}/avatars/u/${u.id}`, type: "User", site_admin: false, name: u.name, company: null, blog: "", location: null, email: u.publicEmail, bio: null, public_repos: 2, followers: 0, following: 0, created_at: "2011-01-25T18:44:36Z", updated_at: "2024-01-01T00:00:00Z" });
    }
    if (method === "GET" && route === "/user/emails") {
      if (!has("user", "user:email")) return githubError(res, 404, "Not Found");
      return json(res, 200, token.user.emails.map((e) => ({ ...e, visibility: e.primary ? "private" : null })));
    }
    if (method === "GET" && route === "/user/repos") return this.listRepos(query, has("repo"), res);

    const repoMatch = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(route);
    if (!repoMatch) return githubError(res, 404, "Not Found");
    const repo = this.repo(`${decodeURIComponent(repoMatch[1]!)}/${decodeURIComponent(repoMatch[2]!)}`);
    const rest = repoMatch[3] ?? "";
    // Private repositories are invisible without the `repo` scope or without access: 404, not 403.
    if (!repo || (repo.private && (!has("repo") || repo.permission === "none"))) return githubError(res, 404, "Not Found");
    const writeScope = repo.private ? has("repo") : has("repo", "public_repo");
    const isAdmin = repo.permission === "admin";
    const key = repo.fullName.toLowerCase();

    if (method === "GET" && rest === "") return json(res, 200, this.repoJson(repo));
    if (rest === "/keys" && method === "POST") {
      if (!writeScope || !isAdmin) return githubError(res, 404, "Not Found");
      const input = parseObject(body);
      if (typeof input.key !== "string" || !OPENSSH_PUBLIC_KEY.test(input.key)) return validationFailed(res, "PublicKey", "key is invalid. You must supply a key in OpenSSH public key format");
      const list = this.keys.get(key) ?? [];
      if (list.some((k) => keyMaterial(k.key) === keyMaterial(String(input.key)))) return validationFailed(res, "PublicKey", "key is already in use");
      // read_only defaults to false: a key that does not ask for read-only can push.
      const created: SimKey = { id: this.nextId++, title: typeof input.title === "string" ? input.title : "", key: input.key, read_only: input.read_only === true, createdBy: auth[1]! };
      this.keys.set(key, [...list, created]);
      return json(res, 201, { id: created.id, key: created.key, url: `${this.url}/api/v3/repos/${repo.fullName}/keys/${created.id}`, title: created.title, verified: true, created_at: new Date().toISOString(), read_only: created.read_only, added_by: token.user.login, last_used: null, enabled: true });
    }
    const keyMatch = /^\/keys\/(\d+)$/.exec(rest);
    if (keyMatch && method === "DELETE") {
      if (!writeScope || !isAdmin || !removeWhere(this.keys, key, (k) => k.id === Number(keyMatch[1]))) return githubError(res, 404, "Not Found");
      return noContent(res);
    }
    if (rest === "/hooks" && method === "POST") {
      if (!(writeScope || has("admin:repo_hook", "write:repo_hook")) || !isAdmin) return githubError(res, 404, "Not Found");
      const input = parseObject(body);
      const config = (typeof input.config === "object" && input.config !== null ? input.config : {}) as Record<string, unknown>;
      if (typeof config.url !== "string" || !URL.canParse(config.url)) return validationFailed(res, "Hook", "Config must contain URL.");
      const list = this.hooks.get(key) ?? [];
      if (list.some((h) => h.config.url === config.url)) return validationFailed(res, "Hook", "Hook already exists on this repository");
      const created: SimHook = {
        id: this.nextId++,
        name: typeof input.name === "string" ? input.name : "web",
        active: input.active !== false,
        events: Array.isArray(input.events) ? input.events.map(String) : ["push"],
        config: { url: config.url, content_type: typeof config.content_type === "string" ? config.content_type : "form", insecure_ssl: String(config.insecure_ssl ?? "0"), ...(typeof config.secret === "string" ? { secret: config.secret } : {}) },
      };
      this.hooks.set(key, [...list, created]);
      const shown = { ...created.config, ...(created.config.secret ? { secret: "********" } : {}) };
      return json(res, 201, { type: "Repository", id: created.id, name: created.name, active: created.active, events: created.events, config: shown, updated_at: new Date().toISOString(), created_at: new Date().toISOString(), url: `${this.url}/api/v3/repos/${repo.fullName}/hooks/${created.id}`, last_response: { code: null, status: "unused", message: null } });
    }
    const hookMatch = /^\/hooks\/(\d+)$/.exec(rest);
    if (hookMatch && method === "DELETE") {
      if (!(writeScope || has("admin:repo_hook")) || !isAdmin || !removeWhere(this.hooks, key, (h) => h.id === Number(hookMatch[1]))) return githubError(res, 404, "Not Found");
      return noContent(res);
    }
    const statusMatch = /^\/statuses\/([0-9a-fA-F]+)$/.exec(rest);
    if (statusMatch && method === "POST") {
      if (!(writeScope || has("repo:status")) || (repo.permission !== "admin" && repo.permission !== "push")) return githubError(res, 404, "Not Found");
      const sha = statusMatch[1]!;
      if (sha.length !== 40 && sha.length !== 64) return validationFailed(res, "Status", `No commit found for SHA: ${sha}`);
      const input = parseObject(body);
      if (typeof input.state !== "string" || !["error", "failure", "pending", "success"].includes(input.state)) return validationFailed(res, "Status", "state is not included in the list");
      if (typeof input.description === "string" && input.description.length > 140) return validationFailed(res, "Status", "description is too long (maximum is 140 characters)");
      const status: SimStatus = { repo: repo.fullName, sha, state: input.state, target_url: typeof input.target_url === "string" ? input.target_url : null, description: typeof input.description === "string" ? input.description : null, context: typeof input.context === "string" ? input.context : "default" };
      this.statuses.push(status);
      return json(res, 201, { id: this.nextId++, node_id: "MDY6U3RhdHVzMQ==", ...status, created_at: new Date().toISOString(), updated_at: new Date().toISOString(), creator: { login: token.user.login, id: token.user.id } });
    }
    return githubError(res, 404, "Not Found");
  }

  private repoJson(r: SimRepo) {
    const host = new URL(this.url).host;
    return { id: r.id, node_id: "MDEwOlJlcG9zaXRvcnkxMjk2MjY5", name: r.fullName.split("/")[1], full_name: r.fullName, private: r.private, html_url: `${this.url}/${r.fullName}`, clone_url: `${this.url}/${r.fullName}.git`, ssh_url: this.options.sshUrl?.(r.fullName) ?? `git@${host}:${r.fullName}.git`, default_branch: r.defaultBranch, visibility: r.private ? "private" : "public", permissions: { admin: r.permission === "admin", push: r.permission === "admin" || r.permission === "push", pull: r.permission !== "none" } };
  }

  private listRepos(q: URLSearchParams, withPrivate: boolean, res: ServerResponse): void {
    const { page, size: perPage } = pageOf(q, "per_page", 30, 100);
    const visible = this.repos.filter((r) => r.permission !== "none" && (withPrivate || !r.private));
    const links = pageLinks(page, Math.max(1, Math.ceil(visible.length / perPage)), (p) => `${this.url}/api/v3/user/repos?per_page=${perPage}&page=${p}`);
    json(res, 200, visible.slice((page - 1) * perPage, page * perPage).map((r) => this.repoJson(r)), links.length ? { link: links.join(", ") } : {});
  }

  /** "Authorizing OAuth apps", step 1: the signed-in user approves at once; PKCE is required here. */
  private authorize(q: URLSearchParams, res: ServerResponse): void {
    if (q.get("client_id") !== this.clientId) return githubError(res, 404, "Not Found");
    const state = q.get("state") ?? "";
    const registered = new URL(this.callbackUrl);
    const redirect = q.get("redirect_uri");
    const back = (params: Record<string, string>) => redirectWith(res, redirect && this.redirectAllowed(redirect) ? redirect : this.callbackUrl, { ...params, state });
    if (redirect && !this.redirectAllowed(redirect)) return back({ error: "redirect_uri_mismatch", error_description: `The redirect_uri MUST match the registered callback URL for this application (${registered.origin}).` });
    const challenge = q.get("code_challenge");
    if (!challenge || q.get("code_challenge_method") !== "S256") return back({ error: "invalid_request", error_description: "code_challenge with code_challenge_method S256 is required" });
    const scopes = (q.get("scope") ?? "").split(/[ ,]+/).filter(Boolean);
    this.requestedScopes.push(scopes);
    const code = randomBytes(10).toString("hex");
    this.grants.set(code, { scopes, challenge, redirectUri: redirect, used: false });
    back({ code });
  }

  // GitHub ("Authorizing OAuth apps", redirect URLs): same host and port as the registered callback
  // and a path under its path; for a loopback callback the port may differ ("Loopback redirect urls").
  private redirectAllowed(redirect: string): boolean {
    if (!URL.canParse(redirect)) return false;
    const to = new URL(redirect);
    const registered = new URL(this.callbackUrl);
    const sameServer = isLoopback(registered) ? to.protocol === registered.protocol && to.hostname === registered.hostname : to.origin === registered.origin;
    return sameServer && to.pathname.startsWith(registered.pathname);
  }

  /** "Authorizing OAuth apps", step 2: errors come back with HTTP 200 and an `error` field. */
  private accessToken(req: IncomingMessage, body: string, res: ServerResponse): void {
    const p = formOrJson(req, body);
    const answer = (fields: Record<string, string | number>) => {
      if ((req.headers.accept ?? "").includes("application/json")) return json(res, 200, fields);
      // Without `Accept: application/json` GitHub answers form-encoded.
      res.writeHead(200, { "content-type": "application/x-www-form-urlencoded; charset=utf-8" });
      res.end(new URLSearchParams(Object.entries(fields).map(([k, v]): [string, string] => [k, String(v)])).toString());
    };
    const error = (code: string, description: string) => answer({ error: code, error_description: description, error_uri: "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors" });
    if (p.get("client_id") !== this.clientId || p.get("client_secret") !== this.clientSecret) return error("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.");
    let scopes: string[];
    if (p.get("grant_type") === "refresh_token") {
      const old = p.get("refresh_token") ?? "";
      const access = this.refreshTokens.get(old);
      if (!access) return error("bad_refresh_token", "The refresh token passed is incorrect or expired.");
      this.refreshTokens.delete(old);
      scopes = this.tokens.get(access)?.scopes ?? [];
    } else {
      const grant = this.grants.get(p.get("code") ?? "");
      if (!grant || grant.used) return error("bad_verification_code", "The code passed is incorrect or expired.");
      if (grant.redirectUri && p.get("redirect_uri") !== grant.redirectUri) return error("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.");
      // GitHub does not document this error's name; any `error` makes the exchange fail.
      const verifier = p.get("code_verifier") ?? "";
      if (pkceChallenge(verifier, "S256") !== grant.challenge) return error("bad_verification_code", "The code_verifier does not match the code_challenge.");
      grant.used = true;
      scopes = grant.scopes;
    }
    const token = this.issueToken(scopes);
    const fields: Record<string, string | number> = { access_token: token, token_type: "bearer", scope: scopes.join(",") };
    if (this.options.expiringTokens) {
      const refreshToken = `ghr_${randomBytes(30).toString("hex")}`;
      this.refreshTokens.set(refreshToken, token);
      Object.assign(fields, { expires_in: 28800, refresh_token: refreshToken, refresh_token_expires_in: 15897600 });
    }
    answer(fields);
  }

  /** "Delete an app authorization": basic auth with the app's credentials; every token of the grant dies, and the deploy keys they made. */
  private deleteGrant(req: IncomingMessage, clientId: string, body: string, res: ServerResponse): void {
    const [id, secret] = basicCredentials(req) ?? [];
    if (clientId !== this.clientId || id !== this.clientId || secret !== this.clientSecret) return githubError(res, 404, "Not Found");
    const accessToken = parseObject(body).access_token;
    const token = typeof accessToken === "string" ? this.tokens.get(accessToken) : undefined;
    if (!token) return validationFailed(res, "OauthAccess", "access_token is invalid");
    const dead = [...this.tokens].filter(([, t]) => t.user.id === token.user.id).map(([value]) => value);
    for (const value of dead) this.tokens.delete(value);
    for (const [repo, list] of this.keys) this.keys.set(repo, list.filter((k) => !dead.includes(k.createdBy)));
    noContent(res);
  }
}
