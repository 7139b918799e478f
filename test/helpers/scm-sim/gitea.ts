import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { hmacSha256Hex, inTurn, postToLoopback } from "./deliver.js";
import { BAD_GATEWAY_PAGE, formOrJson, html, jsonAnswer, keyMaterial, type Listening, noContent, OPENSSH_PUBLIC_KEY, pageLinks, pageOf, parseObject, pkceChallenge, redirectWith, removeWhere, type SimCall, SimServer } from "./sim-server.js";

// A Gitea / Forgejo stand-in on 127.0.0.1 over real TLS, written from their public documentation
// and nothing in src/scm, so a misreading of the API in the client is caught here rather than
// mirrored:
// - "OAuth2 Provider" (docs.gitea.com/development/oauth2-provider): /login/oauth/authorize and
//   /login/oauth/access_token, PKCE (S256 and plain), JSON or form bodies, tokens expiring in
//   3600 s with a refresh token, errors as `{error, error_description}` with HTTP 400, granular
//   scopes (≥ 1.23) named as for access tokens: `read:` allows GET routes, `write:` every method.
// - "Config Cheat Sheet" [oauth2]: every refresh mints a new refresh token; with
//   INVALIDATE_REFRESH_TOKENS (Forgejo's default) a spent one is refused.
// - "API Usage": OAuth tokens in `Authorization: bearer …`, pagination by `page`/`limit` (at most
//   MAX_RESPONSE_ITEMS = 50) with `Link` and `X-Total-Count`, the API under /api/v1.
// - The API reference (/api/swagger): GET /user, /user/emails, /user/repos, /repos/{owner}/{repo},
//   repository keys and hooks (admins only), POST /repos/{owner}/{repo}/statuses/{sha} (writers),
//   errors as `{message, url}`, 404 "The target couldn't be found.", 403 for missing scopes.
// - "Webhooks" (Gitea and Forgejo): JSON POSTs with X-Gitea-Event/-Delivery and, with a secret,
//   X-Gitea-Signature = hex HMAC-SHA256 of the raw body; Forgejo adds the X-Forgejo-* names.
// There is no API to revoke an OAuth grant: users revoke it in their settings (`revokeGrant`).

export interface SimUser {
  id: number;
  login: string;
  fullName: string;
  email: string;
}

export interface SimRepo {
  id: number;
  fullName: string;
  private: boolean;
  defaultBranch: string;
  /** What the signed-in user may do: admin (keys, hooks), write (statuses), read, or none (hidden if private). */
  permission: "admin" | "write" | "read" | "none";
}

export interface SimKey {
  id: number;
  title: string;
  key: string;
  read_only: boolean;
}

export interface SimHook {
  id: number;
  type: string;
  active: boolean;
  events: string[];
  config: { url: string; content_type: string; secret?: string };
}

export interface SimStatus {
  repo: string;
  sha: string;
  state: string;
  target_url: string;
  description: string;
  context: string;
}

/** Ways to make the next matching requests fail as a Gitea server (or the proxy before it) can, besides those every simulator has. */
export type GiteaFault = { status: 401 | 403 | 404 | 422 | 500 | 502 | 503 } | { status: 429 | 503; retryAfterSeconds: number };

interface Grant {
  id: number;
  scopes: string[];
  /** Bumped by each token issued, as Gitea's grant counter: only the newest refresh token is live. */
  counter: number;
}

interface Code {
  grant: Grant;
  challenge: string;
  method: string;
  redirectUri: string;
}

export interface GiteaSimOptions {
  clientId?: string;
  clientSecret?: string;
  /** The OAuth application's registered redirect URI. */
  callbackUrl?: string;
  /** Where a repository is cloned over SSH (its `ssh_url`), e.g. a test's own sshd; Gitea's form by default. */
  sshUrl?: (fullName: string) => string;
  /** Forgejo sends X-Forgejo-* webhook headers besides Gitea's. */
  flavour?: "gitea" | "forgejo";
  /** INVALIDATE_REFRESH_TOKENS; on unless false. */
  invalidateRefreshTokens?: boolean;
  /** Repositories owned by the user, besides the fixed ones below (for pagination). */
  extraRepos?: number;
  /** A sub-path the server is served under (ROOT_URL = https://host/gitea/). */
  subPath?: string;
}

const JSON_TYPE = "application/json;charset=utf-8";
const json = jsonAnswer(JSON_TYPE);
const MAX_RESPONSE_ITEMS = 50;
const SCOPE_CATEGORIES = ["activitypub", "admin", "issue", "misc", "notification", "organization", "package", "repository", "user"];

/** Gitea's webhook signature: the bare hex HMAC-SHA256 of the raw body with the hook's secret. */
export const giteaSignature = hmacSha256Hex;

export class GiteaSim extends SimServer<GiteaFault> {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly callbackUrl: string;
  readonly user: SimUser = { id: 1, login: "alice", fullName: "Alice Liddell", email: "alice@example.com" };
  readonly repos: SimRepo[] = [];
  readonly keys = new Map<string, SimKey[]>();
  readonly hooks = new Map<string, SimHook[]>();
  readonly statuses: SimStatus[] = [];
  /** Scope lists asked for at the authorize endpoint, in order. */
  readonly requestedScopes: string[][] = [];
  private readonly tokens = new Map<string, Grant>();
  private readonly refreshTokens = new Map<string, { grant: Grant; counter: number }>();
  private readonly grants = new Map<number, Grant>();
  private readonly codes = new Map<string, Code>();
  private nextId = 100;

  private constructor(
    listening: Listening,
    private readonly options: GiteaSimOptions,
  ) {
    super(listening, { apiPrefix: "/api/v1", jsonType: JSON_TYPE });
    this.clientId = options.clientId ?? "a4792ccc-144e-407e-86c9-5e7d8d9c3269";
    this.clientSecret = options.clientSecret ?? "gto_sim_client_secret_7q2w";
    this.callbackUrl = options.callbackUrl ?? "https://127.0.0.1:8443/auth/gitea/callback";
    this.repos.push(
      { id: 11, fullName: "alice/hello", private: false, defaultBranch: "main", permission: "admin" },
      { id: 12, fullName: "acme/private-app", private: true, defaultBranch: "trunk", permission: "admin" },
      { id: 13, fullName: "acme/writer", private: true, defaultBranch: "main", permission: "write" },
      { id: 14, fullName: "acme/read-only", private: true, defaultBranch: "main", permission: "read" },
      { id: 15, fullName: "acme/secret", private: true, defaultBranch: "main", permission: "none" },
      { id: 16, fullName: "gitea/tea", private: false, defaultBranch: "main", permission: "none" },
    );
    for (let i = 1; i <= (options.extraRepos ?? 0); i++) this.repos.push({ id: 1000 + i, fullName: `alice/repo-${String(i).padStart(3, "0")}`, private: false, defaultBranch: "main", permission: "admin" });
  }

  /** A server under `subPath` has its sub-path in `url`, as Gitea's ROOT_URL. */
  static start(options: GiteaSimOptions = {}): Promise<GiteaSim> {
    return SimServer.serve((listening) => new GiteaSim(listening, options), options.subPath);
  }

  /** An access token of a new grant with these scopes, as if the OAuth flow had run. */
  issueToken(scopes: string[]): string {
    return this.mint(this.newGrant(scopes)).access_token;
  }

  tokenIsValid(token: string): boolean {
    const grant = this.tokens.get(token);
    return grant !== undefined && this.grants.has(grant.id);
  }

  /** What the user does under Settings → Applications → Authorized OAuth2 applications: every token of the grant dies. */
  revokeGrant(token: string): void {
    const grant = this.tokens.get(token);
    if (grant) this.grants.delete(grant.id);
  }

  repo(fullName: string): SimRepo | undefined {
    return this.repos.find((r) => r.fullName.toLowerCase() === fullName.toLowerCase());
  }

  /**
   * Delivers a webhook as Gitea does ("Webhooks"): a JSON POST with the event and delivery
   * headers under Gitea's, GitHub's and Gogs' names (and Forgejo's on Forgejo), and with a secret
   * the hex HMAC-SHA256 signature. `type` is the event type (`push`, `pull_request`,
   * `pull_request_sync`, …); the X-Gitea-Event header carries its family. Loopback targets only.
   */
  async sendWebhook(target: string, type: string, payload: unknown, secret: string | undefined, opts: { deliveryId?: string; ca?: string } = {}): Promise<{ status: number; body: string; deliveryId: string }> {
    const deliveryId = opts.deliveryId ?? randomUUID();
    const event = type.startsWith("pull_request") ? "pull_request" : type;
    const body = JSON.stringify(payload, null, 2);
    const headers: Record<string, string> = { "content-type": "application/json", "user-agent": "Go-http-client/1.1", "x-gogs-delivery": deliveryId, "x-gogs-event": event, "x-github-delivery": deliveryId, "x-github-event": event };
    const signature = secret === undefined ? undefined : giteaSignature(secret, body);
    for (const name of this.options.flavour === "forgejo" ? ["forgejo", "gitea"] : ["gitea"]) {
      Object.assign(headers, { [`x-${name}-delivery`]: deliveryId, [`x-${name}-event`]: event, [`x-${name}-event-type`]: type });
      if (signature) headers[`x-${name}-signature`] = signature;
    }
    if (signature) Object.assign(headers, { "x-gogs-signature": signature, "x-hub-signature-256": `sha256=${signature}` });
    return { ...(await postToLoopback(target, headers, body, opts.ca)), deliveryId };
  }

  /**
   * Sends an event of `type` to every active hook on the repository that chose it; a hook that
   * chose `pull_request` gets every pull request type (as the API's CreateHookOption does).
   */
  async deliver(repo: string, type: string, payload: unknown, opts: { ca?: string } = {}) {
    const chose = (h: SimHook) => h.events.includes(type) || (type.startsWith("pull_request") && h.events.includes("pull_request"));
    return inTurn((this.hooks.get(repo.toLowerCase()) ?? []).filter((h) => h.active && chose(h)), (h) => this.sendWebhook(h.config.url, type, payload, h.config.secret, opts));
  }

  /** The documented push payload ("Webhooks" → Event information), for this repository. */
  pushPayload(repo: string, push: { ref: string; before?: string; after: string; message?: string }) {
    const r = this.repo(repo);
    if (!r) throw new Error(`no repository ${repo}`);
    const before = push.before ?? "0".repeat(40);
    const person = { name: this.user.fullName, email: this.user.email, username: this.user.login };
    const commit = { id: push.after, message: push.message ?? "Webhooks Yay!", url: `${this.url}/${r.fullName}/commit/${push.after}`, author: person, committer: person, timestamp: "2017-03-13T13:52:11-04:00" };
    return {
      ref: push.ref,
      before,
      after: push.after,
      compare_url: `${this.url}/${r.fullName}/compare/${before}...${push.after}`,
      commits: [commit],
      head_commit: commit,
      repository: this.repoJson(r),
      pusher: this.userJson(),
      sender: this.userJson(),
    };
  }

  /** A pull request payload (PullRequestPayload in the API reference), its head on `branch` of `headRepo`. */
  pullRequestPayload(repo: string, pr: { action: string; number: number; branch: string; sha: string; headRepo?: string }) {
    const r = this.repo(repo);
    if (!r) throw new Error(`no repository ${repo}`);
    const head = this.repo(pr.headRepo ?? repo) ?? { ...r, id: 99, fullName: pr.headRepo! };
    const side = (ref: string, sha: string, on: SimRepo) => ({ label: ref, ref, sha, repo_id: on.id, repo: this.repoJson(on) });
    return {
      action: pr.action,
      number: pr.number,
      pull_request: { id: 500 + pr.number, number: pr.number, user: this.userJson(), title: "Add a feature", body: "", state: "open", html_url: `${this.url}/${r.fullName}/pulls/${pr.number}`, head: side(pr.branch, pr.sha, head), base: side(r.defaultBranch, "0".repeat(40), r), merged: false },
      repository: this.repoJson(r),
      sender: this.userJson(),
    };
  }

  /** Gitea's API errors: `{message, url}` pointing at the API reference; 404s add `errors`. */
  protected error(res: ServerResponse, status: number, message: string): void {
    const extra = status === 404 ? { errors: [] } : {};
    json(res, status, { message, url: `${this.url}/api/swagger`, ...extra });
  }

  protected fail(what: GiteaFault, res: ServerResponse): void {
    // Gitea has no API rate limit of its own; a reverse proxy in front of it answers these.
    if ("retryAfterSeconds" in what) return json(res, what.status, { message: what.status === 429 ? "Too Many Requests" : "Service Unavailable" }, { "retry-after": String(what.retryAfterSeconds) });
    const bodies: Record<number, () => void> = {
      401: () => this.error(res, 401, "user does not exist [uid: 0, name: ]"),
      403: () => this.error(res, 403, "user should be an owner or a collaborator with admin write of a repository"),
      404: () => this.error(res, 404, "The target couldn't be found."),
      422: () => this.error(res, 422, "A hook with the same URL already exists"),
      500: () => this.error(res, 500, "Internal Server Error"),
      502: () => html(res, 502, BAD_GATEWAY_PAGE),
      503: () => this.error(res, 503, "Service Unavailable"),
    };
    bodies[what.status]!();
  }

  protected route({ req, method, path, api, route, query, body }: SimCall, res: ServerResponse): void {
    if (method === "GET" && path === "/login/oauth/authorize") return this.authorize(query, res);
    if (method === "POST" && path === "/login/oauth/access_token") return this.accessToken(req, body, res);
    if (!api) return this.error(res, 404, "The target couldn't be found.");

    const auth = /^(?:bearer|token) (\S+)$/i.exec(req.headers.authorization ?? "");
    if (!auth) return this.error(res, 401, "token is required");
    const grant = this.tokens.get(auth[1]!);
    // A token whose grant is gone (revoked, or never issued) belongs to no user.
    if (!grant || !this.grants.has(grant.id)) return this.error(res, 401, "user does not exist [uid: 0, name: ]");
    // tokenRequiresScopes: each category needs `read:` for GET and `write:` otherwise.
    const lacks = (...categories: string[]): boolean => {
      const needed = categories.map((c) => `${method === "GET" ? "read" : "write"}:${c}`);
      const missing = needed.filter((n) => !(grant.scopes.includes("all") || grant.scopes.includes(n) || grant.scopes.includes(n.replace(/^read:/, "write:"))));
      if (missing.length) this.error(res, 403, `token does not have at least one of required scope(s), required=[${needed.join(" ")}], token scope=${grant.scopes.join(",")}`);
      return missing.length > 0;
    };
    const publicOnly = grant.scopes.includes("public-only");

    if (method === "GET" && route === "/user") return lacks("user") ? undefined : json(res, 200, this.userJson());
    if (method === "GET" && route === "/user/emails") return lacks("user") ? undefined : json(res, 200, [{ email: this.user.email, verified: true, primary: true, user_id: this.user.id, username: this.user.login }]);
    if (method === "GET" && route === "/user/repos") return lacks("user", "repository") ? undefined : this.listRepos(query, publicOnly, res);

    const repoMatch = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(route);
    if (!repoMatch) return this.error(res, 404, "The target couldn't be found.");
    if (lacks("repository")) return;
    const repo = this.repo(`${decodeURIComponent(repoMatch[1]!)}/${decodeURIComponent(repoMatch[2]!)}`);
    const rest = repoMatch[3] ?? "";
    // repoAssignment: a private repository the user cannot see does not exist for them.
    if (!repo || (repo.private && (publicOnly || repo.permission === "none"))) return this.error(res, 404, "The target couldn't be found.");
    const key = repo.fullName.toLowerCase();
    // reqAdmin: keys and hooks are for repository admins only.
    const notAdmin = (): boolean => {
      if (repo.permission === "admin") return false;
      this.error(res, 403, "user should be an owner or a collaborator with admin write of a repository");
      return true;
    };

    if (method === "GET" && rest === "") return json(res, 200, this.repoJson(repo));
    if (rest === "/keys" && method === "POST") {
      if (notAdmin()) return;
      const input = parseObject(body);
      if (typeof input.title !== "string" || !input.title || typeof input.key !== "string" || !input.key) return this.error(res, 422, "[Title]: Required; [Key]: Required");
      if (!OPENSSH_PUBLIC_KEY.test(input.key)) return this.error(res, 422, "Invalid key content: Unable to verify key content");
      const list = this.keys.get(key) ?? [];
      if (list.some((k) => keyMaterial(k.key) === keyMaterial(String(input.key)))) return this.error(res, 422, "This key has already been added to this repository");
      if (list.some((k) => k.title === input.title)) return this.error(res, 422, "A key with the same name already exists");
      // CreateKeyOption.read_only is a plain bool: absent means a key that can push.
      const created: SimKey = { id: this.nextId++, title: input.title, key: input.key, read_only: input.read_only === true };
      this.keys.set(key, [...list, created]);
      return json(res, 201, { id: created.id, key_id: created.id, key: created.key, url: `${this.url}/api/v1/repos/${repo.fullName}/keys/${created.id}`, title: created.title, fingerprint: "SHA256:sim", created_at: new Date().toISOString(), read_only: created.read_only });
    }
    const keyMatch = /^\/keys\/(\d+)$/.exec(rest);
    if (keyMatch && method === "DELETE") {
      if (notAdmin()) return;
      return removeWhere(this.keys, key, (k) => k.id === Number(keyMatch[1])) ? noContent(res) : this.error(res, 404, "The target couldn't be found.");
    }
    if (rest === "/hooks" && method === "POST") {
      if (notAdmin()) return;
      const input = parseObject(body);
      const config = (typeof input.config === "object" && input.config !== null ? input.config : {}) as Record<string, unknown>;
      // checkCreateHookOption, in its order.
      if (!["gitea", "forgejo", "gogs", "slack", "discord", "dingtalk", "telegram", "msteams", "feishu", "wechatwork", "packagist"].includes(String(input.type))) return this.error(res, 422, "Invalid hook type");
      for (const name of ["url", "content_type"]) if (typeof config[name] !== "string") return this.error(res, 422, `Missing config option: ${name}`);
      if (!["json", "form"].includes(String(config.content_type))) return this.error(res, 422, "Invalid content type");
      if (!URL.canParse(String(config.url))) return this.error(res, 422, "Invalid url");
      const list = this.hooks.get(key) ?? [];
      const created: SimHook = {
        id: this.nextId++,
        type: String(input.type),
        // CreateHookOption.active defaults to false: a hook created without it never fires.
        active: input.active === true,
        events: Array.isArray(input.events) && input.events.length ? input.events.map(String) : ["push"],
        config: { url: String(config.url), content_type: String(config.content_type), ...(typeof config.secret === "string" ? { secret: config.secret } : {}) },
      };
      this.hooks.set(key, [...list, created]);
      const now = new Date().toISOString();
      // The secret is never shown back.
      return json(res, 201, { id: created.id, type: created.type, branch_filter: "*", config: { url: created.config.url, content_type: created.config.content_type, http_method: "post" }, events: created.events, authorization_header: "", active: created.active, updated_at: now, created_at: now });
    }
    const hookMatch = /^\/hooks\/(\d+)$/.exec(rest);
    if (hookMatch && method === "DELETE") {
      if (notAdmin()) return;
      return removeWhere(this.hooks, key, (h) => h.id === Number(hookMatch[1])) ? noContent(res) : this.error(res, 404, "The target couldn't be found.");
    }
    const statusMatch = /^\/statuses\/([^/]+)$/.exec(rest);
    if (statusMatch && method === "POST") {
      if (repo.permission !== "admin" && repo.permission !== "write") return this.error(res, 403, "user should have a permission to write to a repo");
      const sha = decodeURIComponent(statusMatch[1]!);
      if (!/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(sha)) return this.error(res, 404, `object does not exist [id: ${sha}, rel_path: ]`);
      const input = parseObject(body);
      if (!["pending", "success", "error", "failure", "warning"].includes(String(input.state))) return this.error(res, 422, `invalid state: ${String(input.state)}`);
      const str = (v: unknown) => (typeof v === "string" ? v : "");
      const status: SimStatus = { repo: repo.fullName, sha, state: String(input.state), target_url: str(input.target_url), description: str(input.description), context: str(input.context) || "default" };
      this.statuses.push(status);
      const now = new Date().toISOString();
      return json(res, 201, { id: this.nextId++, status: status.state, target_url: status.target_url, description: status.description, url: `${this.url}/api/v1/repos/${repo.fullName}/statuses/${sha}`, context: status.context, creator: this.userJson(), created_at: now, updated_at: now });
    }
    return this.error(res, 404, "The target couldn't be found.");
  }

  private userJson() {
    const u = this.user;
    return { id: u.id, login: u.login, login_name: "", source_id: 0, full_name: u.fullName, email: u.email, avatar_url: `${this.url}/avatars/${u.id}`, html_url: `${this.url}/${u.login}`, language: "en-US", is_admin: false, last_login: "2024-01-01T00:00:00Z", created: "2023-01-01T00:00:00Z", restricted: false, active: true, prohibit_login: false, location: "", website: "", description: "", visibility: "public", followers_count: 0, following_count: 0, starred_repos_count: 0, username: u.login };
  }

  private repoJson(r: SimRepo) {
    const [owner, name] = r.fullName.split("/") as [string, string];
    const host = new URL(this.url).hostname;
    return {
      id: r.id,
      owner: { id: owner === this.user.login ? this.user.id : 2, login: owner, full_name: "", email: "", avatar_url: `${this.url}/avatars/${owner}`, username: owner },
      name,
      full_name: r.fullName,
      description: "",
      empty: false,
      private: r.private,
      fork: false,
      template: false,
      mirror: false,
      size: 42,
      html_url: `${this.url}/${r.fullName}`,
      url: `${this.url}/api/v1/repos/${r.fullName}`,
      ssh_url: this.options.sshUrl?.(r.fullName) ?? `git@${host}:${r.fullName}.git`,
      clone_url: `${this.url}/${r.fullName}.git`,
      default_branch: r.defaultBranch,
      archived: false,
      created_at: "2023-01-01T00:00:00Z",
      updated_at: "2024-01-01T00:00:00Z",
      permissions: { admin: r.permission === "admin", push: r.permission === "admin" || r.permission === "write", pull: r.permission !== "none" },
      internal: false,
      object_format_name: "sha1",
    };
  }

  /** GET /user/repos: `page` (1-based) and `limit` (capped at MAX_RESPONSE_ITEMS), `Link` and `X-Total-Count`. */
  private listRepos(q: URLSearchParams, publicOnly: boolean, res: ServerResponse): void {
    const { page, size: limit } = pageOf(q, "limit", MAX_RESPONSE_ITEMS, MAX_RESPONSE_ITEMS);
    const visible = this.repos.filter((r) => r.permission !== "none" && !(publicOnly && r.private));
    const links = pageLinks(page, Math.max(1, Math.ceil(visible.length / limit)), (p) => `${this.url}/api/v1/user/repos?limit=${limit}&page=${p}`);
    const headers: Record<string, string> = { "x-total-count": String(visible.length), "access-control-expose-headers": "Link, X-Total-Count" };
    if (links.length) headers.link = links.join(",");
    json(res, 200, visible.slice((page - 1) * limit, page * limit).map((r) => this.repoJson(r)), headers);
  }

  /** The user is signed in and approves at once; errors go back to the redirect URI when it is registered. */
  private authorize(q: URLSearchParams, res: ServerResponse): void {
    const state = q.get("state") ?? "";
    const redirect = q.get("redirect_uri") ?? "";
    // Without a known client or a registered redirect URI there is nowhere safe to send the user.
    if (q.get("client_id") !== this.clientId || !this.redirectRegistered(redirect)) return html(res, 400, "<p>Client ID not registered or redirect URI mismatch</p>");
    const back = (params: Record<string, string>) => redirectWith(res, redirect, { ...params, state }, 303);
    if (q.get("response_type") !== "code") return back({ error: "unsupported_response_type", error_description: "Only code response type is supported." });
    const method = q.get("code_challenge_method") ?? "";
    if (method !== "S256" && method !== "plain") return back({ error: "invalid_request", error_description: method ? "unsupported code challenge method" : "PKCE is required for public clients" });
    const scopes = (q.get("scope") ?? "").split(" ").filter(Boolean);
    this.requestedScopes.push(scopes);
    const code = randomBytes(16).toString("hex");
    this.codes.set(code, { grant: this.newGrant(scopes), challenge: q.get("code_challenge") ?? "", method, redirectUri: redirect });
    back({ code });
  }

  // Gitea compares redirect URIs exactly (after lower-casing and dropping one trailing slash).
  private redirectRegistered(redirect: string): boolean {
    const norm = (u: string) => u.toLowerCase().replace(/\/$/, "");
    return norm(redirect) === norm(this.callbackUrl);
  }

  /** The access token endpoint: JSON or form bodies; every error is HTTP 400 `{error, error_description}`. */
  private accessToken(req: IncomingMessage, body: string, res: ServerResponse): void {
    const p = formOrJson(req, body);
    const error = (code: string, description: string) => json(res, 400, { error: code, error_description: description });
    if (p.get("client_id") !== this.clientId) return error("invalid_client", `cannot load client with client id: '${p.get("client_id") ?? ""}'`);
    const secretOk = p.get("client_secret") === this.clientSecret;
    const grantType = p.get("grant_type");
    if (grantType === "refresh_token") {
      if (!secretOk) return error("invalid_client", "invalid client secret");
      const held = this.refreshTokens.get(p.get("refresh_token") ?? "");
      if (!held) return error("unauthorized_client", "unable to parse refresh token");
      if (!this.grants.has(held.grant.id)) return error("invalid_grant", "grant does not exist");
      if (this.options.invalidateRefreshTokens !== false && held.counter !== held.grant.counter) return error("unauthorized_client", "token was already used");
      return json(res, 200, this.mint(held.grant));
    }
    if (grantType !== "authorization_code") return error("unsupported_grant_type", "Only refresh_token or authorization_code grant type is supported");
    if (!secretOk) return error("unauthorized_client", "invalid client secret");
    if (p.get("redirect_uri") && !this.redirectRegistered(p.get("redirect_uri")!)) return error("unauthorized_client", "unexpected redirect URI");
    const code = this.codes.get(p.get("code") ?? "");
    if (!code) return error("unauthorized_client", "client is not authorized");
    const verifier = p.get("code_verifier") ?? "";
    if (pkceChallenge(verifier, code.method) !== code.challenge) return error("unauthorized_client", "failed PKCE code challenge");
    this.codes.delete(p.get("code")!);
    json(res, 200, this.mint(code.grant));
  }

  private newGrant(scopes: string[]): Grant {
    // Scopes that are no token scopes (openid, email, …) grant nothing by themselves; none at all means full access.
    const known = scopes.filter((s) => s === "public-only" || s === "all" || SCOPE_CATEGORIES.some((c) => s === `read:${c}` || s === `write:${c}`));
    const grant: Grant = { id: this.nextId++, scopes: known.length ? known : ["all"], counter: 0 };
    this.grants.set(grant.id, grant);
    return grant;
  }

  /** A new token pair for the grant; the grant's counter moves on, so earlier refresh tokens are spent. */
  private mint(grant: Grant) {
    grant.counter++;
    const accessToken = randomBytes(24).toString("base64url");
    const refreshToken = randomBytes(32).toString("base64url");
    this.tokens.set(accessToken, grant);
    this.refreshTokens.set(refreshToken, { grant, counter: grant.counter });
    return { access_token: accessToken, token_type: "bearer", expires_in: 3600, refresh_token: refreshToken };
  }
}
