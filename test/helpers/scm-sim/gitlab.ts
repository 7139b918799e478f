import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { inTurn, postToLoopback } from "./deliver.js";
import { basicCredentials, formOrJson, html, jsonAnswer, type Listening, noContent, parseObject, pkceChallenge, redirectWith, removeWhere, type SimCall, SimServer } from "./sim-server.js";

// A self-managed GitLab stand-in on 127.0.0.1 over real TLS, written from GitLab's public
// documentation and nothing in src/scm, so a misreading of the API in the client is caught here
// rather than mirrored:
// - "OAuth 2.0 identity provider API" (doc/api/oauth2.md): /oauth/authorize, /oauth/token with
//   PKCE and rotating refresh tokens (a refresh "invalidates the existing access_token and
//   refresh_token"), /oauth/revoke answering 200 and `{}`; Doorkeeper's RFC 6749 error bodies.
// - "Configure GitLab as an OAuth 2.0 identity provider": the scope table (`api` reads and
//   writes, `read_api` only reads, `read_user` only `/user`), tokens expiring after two hours.
// - "REST API" (doc/api/rest): /api/v4, URL-encoded namespaced paths, offset pagination with
//   `x-next-page`/`x-total`/`Link`, and "Status codes" for the error bodies.
// - "Projects API", "Deploy keys API", "Project webhooks API" (Maintainer role needed), "Commits
//   API: Set the pipeline status of a commit" (Developer role, 255-character limits).
// - "Webhooks" and "Webhook events": X-Gitlab-Event/-Token/-Event-UUID/-Webhook-UUID/-Instance,
//   and the push and merge request payloads.

export interface SimUser {
  id: number;
  username: string;
  name: string;
  /** The primary email, shown to the user themself. */
  email: string;
  /** What the profile shows to others; empty when kept private (the default). */
  publicEmail: string;
}

/** Project roles and their `access_level` ("Roles and permissions"). */
export const ROLES = { guest: 10, reporter: 20, developer: 30, maintainer: 40, owner: 50 } as const;
export type Role = keyof typeof ROLES | "none";

export interface SimProject {
  id: number;
  /** `path_with_namespace`: groups nest, so `group/subgroup/project`. */
  path: string;
  visibility: "private" | "internal" | "public";
  /** Null for a project without commits. */
  defaultBranch: string | null;
  role: Role;
  repositoryAccess?: "enabled" | "private" | "disabled";
}

export interface SimKey {
  id: number;
  title: string;
  key: string;
  can_push: boolean;
}

export interface SimHook {
  id: number;
  url: string;
  /** The secret GitLab sends back in X-Gitlab-Token; never shown by the API. */
  token: string | null;
  push_events: boolean;
  tag_push_events: boolean;
  merge_requests_events: boolean;
  enable_ssl_verification: boolean;
}

export interface SimStatus {
  project: string;
  sha: string;
  status: string;
  name: string;
  target_url: string | null;
  description: string | null;
}

/** Ways to make the next matching requests fail as GitLab can, besides those every simulator has. */
export type GitLabFault = { status: 400 | 401 | 403 | 404 | 409 | 422 | 500 | 502 | 503 } | { rateLimit: "retry-after"; seconds: number } | { rateLimit: "reset"; seconds: number };

interface Token {
  user: SimUser;
  scopes: string[];
  refreshToken: string;
  expiresAt: number;
  revoked: boolean;
}

interface Grant {
  scopes: string[];
  redirectUri: string;
  challenge: string | null;
  method: string;
  used: boolean;
}

export interface GitLabSimOptions {
  /** Projects with the maintainer role besides the fixed ones (for pagination). */
  extraProjects?: number;
  /** The scopes the OAuth application was registered with; asking for others is refused. */
  appScopes?: string[];
  /** The OAuth application's redirect URI (GitLab matches it exactly). */
  callbackUrl?: string;
  /** Where a project is cloned over SSH (`ssh_url_to_repo`), e.g. a test's own sshd; GitLab's form by default. */
  sshUrl?: (path: string) => string;
}

const LIFETIME_S = 7200;
const FORBIDDEN = { message: "403 Forbidden" };
const JSON_TYPE = "application/json";
const json = jsonAnswer(JSON_TYPE);
const notFound = (res: ServerResponse, what = "") => json(res, 404, { message: `404${what ? ` ${what}` : ""} Not Found` });
const oauthError = (res: ServerResponse, status: number, error: string, error_description: string) => json(res, status, { error, error_description });

export class GitLabSim extends SimServer<GitLabFault> {
  readonly clientId = "4b1d6a0c9e8f7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170";
  readonly clientSecret = "gloas-sim-6f1e2d3c4b5a69788796a5b4c3d2e1f0";
  readonly callbackUrl: string;
  readonly user: SimUser = { id: 1, username: "root", name: "Administrator", email: "admin@example.com", publicEmail: "" };
  readonly projects: SimProject[] = [
    { id: 3, path: "diaspora/diaspora-client", visibility: "private", defaultBranch: "master", role: "maintainer" },
    { id: 4, path: "acme/platform/api", visibility: "private", defaultBranch: "main", role: "owner" },
    { id: 5, path: "acme/reporting", visibility: "private", defaultBranch: "main", role: "reporter" },
    { id: 6, path: "acme/guest-only", visibility: "private", defaultBranch: "main", role: "guest" },
    { id: 7, path: "acme/secret", visibility: "private", defaultBranch: "main", role: "none" },
    { id: 8, path: "gitlab-org/gitlab", visibility: "public", defaultBranch: "master", role: "none" },
    { id: 9, path: "acme/empty", visibility: "internal", defaultBranch: null, role: "maintainer" },
    { id: 10, path: "acme/members-code", visibility: "internal", defaultBranch: "main", role: "none", repositoryAccess: "private" },
  ];
  readonly keys = new Map<string, SimKey[]>();
  readonly hooks = new Map<string, SimHook[]>();
  readonly statuses: SimStatus[] = [];
  /** Scope lists asked for at the authorize endpoint, in order. */
  readonly requestedScopes: string[][] = [];
  private readonly appScopes: string[];
  private readonly tokens = new Map<string, Token>();
  private readonly grants = new Map<string, Grant>();
  private nextId = 100;

  private constructor(
    listening: Listening,
    private readonly options: GitLabSimOptions,
  ) {
    super(listening, { apiPrefix: "/api/v4", jsonType: JSON_TYPE });
    this.callbackUrl = options.callbackUrl ?? "https://127.0.0.1:8443/api/v1/scm/gitlab/callback";
    this.appScopes = options.appScopes ?? ["api", "read_api", "read_user"];
    for (let i = 1; i <= (options.extraProjects ?? 0); i++) this.projects.push({ id: 1000 + i, path: `root/project-${String(i).padStart(3, "0")}`, visibility: "private", defaultBranch: "main", role: "maintainer" });
  }

  static start(options: GitLabSimOptions = {}): Promise<GitLabSim> {
    return SimServer.serve((listening) => new GitLabSim(listening, options));
  }

  /** A token for the user with these scopes, as if the OAuth flow had run. */
  issueToken(scopes: string[]): string {
    return this.mint(scopes).access_token;
  }

  tokenIsValid(token: string): boolean {
    const t = this.tokens.get(token);
    return !!t && !t.revoked && t.expiresAt > Date.now();
  }

  /** Makes a token expire now, as two hours passing would. */
  expire(token: string): void {
    const t = this.tokens.get(token);
    if (t) t.expiresAt = Date.now() - 1;
  }

  project(path: string): SimProject | undefined {
    return this.projects.find((p) => p.path.toLowerCase() === path.toLowerCase() || String(p.id) === path);
  }

  /**
   * Delivers a webhook as GitLab does ("Webhooks"): JSON body, `X-Gitlab-Event` naming the hook
   * (`Push Hook`, `Tag Push Hook`, `Merge Request Hook`), a fresh `X-Gitlab-Event-UUID`, and the
   * hook's secret as it is in `X-Gitlab-Token`. Loopback targets only.
   */
  async sendWebhook(target: string, event: string, payload: unknown, token: string | null, opts: { eventUuid?: string; webhookUuid?: string; ca?: string } = {}) {
    const eventUuid = opts.eventUuid ?? randomUUID();
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": "GitLab/17.6.0",
      "idempotency-key": randomUUID(),
      "x-gitlab-event": event,
      "x-gitlab-event-uuid": eventUuid,
      "x-gitlab-webhook-uuid": opts.webhookUuid ?? randomUUID(),
      "x-gitlab-instance": this.url,
      ...(token === null ? {} : { "x-gitlab-token": token }),
    };
    return { ...(await postToLoopback(target, headers, JSON.stringify(payload), opts.ca)), eventUuid };
  }

  /** Sends the event to every hook on the project that subscribed to its kind. */
  async deliver(path: string, event: "Push Hook" | "Tag Push Hook" | "Merge Request Hook", payload: unknown, opts: { ca?: string } = {}) {
    const flag = ({ "Push Hook": "push_events", "Tag Push Hook": "tag_push_events", "Merge Request Hook": "merge_requests_events" } as const)[event];
    return inTurn((this.hooks.get(path.toLowerCase()) ?? []).filter((h) => h[flag]), (hook) => this.sendWebhook(hook.url, event, payload, hook.token, opts));
  }

  /** A push event payload ("Webhook events: Push events"), trimmed to commonly read fields. */
  pushPayload(path: string, push: { ref: string; before?: string; after: string; message?: string }) {
    const p = this.requireProject(path);
    const commit = { id: push.after, message: push.message ?? "Update README.md\n", title: (push.message ?? "Update README.md").split("\n")[0], timestamp: "2024-01-01T00:00:00+00:00", url: `${this.url}/${p.path}/-/commit/${push.after}`, author: { name: this.user.name, email: this.user.email }, added: [], modified: ["README.md"], removed: [] };
    const tag = push.ref.startsWith("refs/tags/");
    return {
      object_kind: tag ? "tag_push" : "push",
      event_name: tag ? "tag_push" : "push",
      before: push.before ?? "0".repeat(40),
      after: push.after,
      ref: push.ref,
      ref_protected: false,
      checkout_sha: push.after,
      message: null,
      user_id: this.user.id,
      user_name: this.user.name,
      user_username: this.user.username,
      user_email: "",
      project_id: p.id,
      project: this.hookProject(p),
      commits: [commit],
      total_commits_count: 1,
      push_options: {},
      repository: { name: p.path.split("/").at(-1), url: this.sshUrl(p), homepage: `${this.url}/${p.path}`, git_http_url: `${this.url}/${p.path}.git`, git_ssh_url: this.sshUrl(p), visibility_level: { private: 0, internal: 10, public: 20 }[p.visibility] },
    };
  }

  /** A merge request event payload ("Webhook events: Merge request events"). */
  mergeRequestPayload(path: string, mr: { iid: number; action: "open" | "update" | "reopen" | "close"; sourceBranch: string; sha: string; oldrev?: string; sourceProjectId?: number; title?: string }) {
    const p = this.requireProject(path);
    return {
      object_kind: "merge_request",
      event_type: "merge_request",
      user: { id: this.user.id, name: this.user.name, username: this.user.username, email: "[REDACTED]" },
      project: this.hookProject(p),
      object_attributes: {
        id: 90 + mr.iid,
        iid: mr.iid,
        target_branch: p.defaultBranch ?? "main",
        source_branch: mr.sourceBranch,
        source_project_id: mr.sourceProjectId ?? p.id,
        target_project_id: p.id,
        title: mr.title ?? "MS-Viewport",
        state: mr.action === "close" ? "closed" : "opened",
        action: mr.action,
        ...(mr.oldrev ? { oldrev: mr.oldrev } : {}),
        last_commit: { id: mr.sha, message: `${mr.title ?? "MS-Viewport"}\n`, title: mr.title ?? "MS-Viewport", timestamp: "2024-01-01T00:00:00+00:00", url: `${this.url}/${p.path}/-/commit/${mr.sha}`, author: { name: this.user.name, email: this.user.email } },
        url: `${this.url}/${p.path}/-/merge_requests/${mr.iid}`,
      },
      labels: [],
      changes: {},
      repository: { name: p.path.split("/").at(-1), url: this.sshUrl(p), homepage: `${this.url}/${p.path}` },
    };
  }

  private requireProject(path: string): SimProject {
    const p = this.project(path);
    if (!p) throw new Error(`no project ${path}`);
    return p;
  }

  private sshUrl(p: SimProject): string {
    return this.options.sshUrl?.(p.path) ?? `git@${new URL(this.url).hostname}:${p.path}.git`;
  }

  private hookProject(p: SimProject) {
    return { id: p.id, name: p.path.split("/").at(-1), web_url: `${this.url}/${p.path}`, git_ssh_url: this.sshUrl(p), git_http_url: `${this.url}/${p.path}.git`, namespace: p.path.split("/").slice(0, -1).join("/"), visibility_level: { private: 0, internal: 10, public: 20 }[p.visibility], path_with_namespace: p.path, default_branch: p.defaultBranch };
  }

  private mint(scopes: string[]) {
    const access_token = randomBytes(32).toString("hex");
    const refreshToken = randomBytes(32).toString("hex");
    this.tokens.set(access_token, { user: this.user, scopes, refreshToken, expiresAt: Date.now() + LIFETIME_S * 1000, revoked: false });
    return { access_token, token_type: "Bearer", expires_in: LIFETIME_S, refresh_token: refreshToken, scope: scopes.join(" "), created_at: Math.floor(Date.now() / 1000) };
  }

  protected error(res: ServerResponse, status: number, message: string): void {
    json(res, status, { message: `${status} ${message}` });
  }

  protected fail(what: GitLabFault, res: ServerResponse): void {
    if ("rateLimit" in what) {
      // Rack::Attack's throttled answer ("Rate limits"): plain text, RateLimit-* headers.
      const reset = Math.floor(Date.now() / 1000) + what.seconds;
      const headers: Record<string, string> = { "content-type": "text/plain", "ratelimit-limit": "600", "ratelimit-observed": "601", "ratelimit-remaining": "0", "ratelimit-reset": String(reset), "ratelimit-resettime": new Date(reset * 1000).toUTCString() };
      if (what.rateLimit === "retry-after") headers["retry-after"] = String(what.seconds);
      res.writeHead(429, headers);
      res.end("Retry later\n");
      return;
    }
    const bodies: Record<number, () => void> = {
      400: () => json(res, 400, { message: { url: ["is blocked: Requests to the local network are not allowed"] } }),
      401: () => json(res, 401, { message: "401 Unauthorized" }),
      403: () => json(res, 403, FORBIDDEN),
      404: () => notFound(res, "Project"),
      409: () => json(res, 409, { message: "409 Conflict" }),
      422: () => json(res, 422, { message: "422 Unprocessable Entity" }),
      500: () => json(res, 500, { message: "500 Internal Server Error" }),
      502: () => html(res, 502, "<html><body><h1>502</h1><p>Whoops, GitLab is taking too much time to respond.</p></body></html>"),
      503: () => json(res, 503, { message: "503 Service Unavailable" }),
    };
    bodies[what.status]!();
  }

  protected route({ req, method, path, api, route, query, body }: SimCall, res: ServerResponse): void {
    if (method === "GET" && path === "/oauth/authorize") return this.authorize(query, res);
    if (method === "POST" && path === "/oauth/token") return this.token(req, body, res);
    if (method === "POST" && path === "/oauth/revoke") return this.revoke(req, body, res);
    if (!api) return notFound(res);

    const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? "")?.[1];
    const token = bearer === undefined ? undefined : this.tokens.get(bearer);
    if (!token) return json(res, 401, { message: "401 Unauthorized" });
    if (token.revoked) return oauthError(res, 401, "invalid_token", "Token was revoked. You have to re-authorize from the user.");
    if (token.expiresAt <= Date.now()) return oauthError(res, 401, "invalid_token", "Token is expired. You can either do re-authorization or token refresh.");
    // The scope table: `api` does everything, `read_api` only reads, `read_user` only reads /user.
    const allowed = token.scopes.includes("api") || (method === "GET" && (token.scopes.includes("read_api") || (route === "/user" && token.scopes.includes("read_user"))));
    if (!allowed) return json(res, 403, { error: "insufficient_scope", error_description: "The request requires higher privileges than provided by the access token.", scope: "api" });

    if (method === "GET" && route === "/user") {
      const u = token.user;
      return json(res, 200, { id: u.id, username: u.username, name: u.name, state: "active", locked: false, avatar_url: `${this.url}/uploads/-/system/user/avatar/${u.id}/avatar.png`, web_url: `${this.url}/${u.username}`, created_at: "2012-05-23T08:00:58Z", bio: "", public_email: u.publicEmail, email: u.email, commit_email: u.email, two_factor_enabled: true, is_admin: false });
    }
    if (method === "GET" && route === "/projects") return this.listProjects(query, res);

    // `:id` is a number or the URL-encoded path: an unencoded `/` does not match the route (404).
    const match = /^\/projects\/([^/]+)(\/.*)?$/.exec(route);
    if (!match) return notFound(res);
    const project = this.project(decodeURIComponent(match[1]!));
    if (!project || !this.visible(project)) return notFound(res, "Project");
    const rest = match[2] ?? "";
    const level = project.role === "none" ? 0 : ROLES[project.role];
    const key = project.path.toLowerCase();
    const input = parseBody(req, body);

    if (method === "GET" && rest === "") return json(res, 200, this.projectJson(project));
    if (rest === "/deploy_keys" || rest.startsWith("/deploy_keys/") || rest === "/hooks" || rest.startsWith("/hooks/")) {
      if (level < ROLES.maintainer) return json(res, 403, FORBIDDEN);
    }
    if (method === "GET" && rest === "/deploy_keys") return json(res, 200, this.keys.get(key) ?? []);
    if (method === "POST" && rest === "/deploy_keys") {
      if (typeof input.title !== "string" || !input.title) return json(res, 400, { error: "title is missing" });
      if (typeof input.key !== "string" || !input.key) return json(res, 400, { error: "key is missing" });
      if (!/^(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) [A-Za-z0-9+/]+={0,3}(?: .*)?$/.test(input.key)) return json(res, 400, { message: { key: ["is invalid"], fingerprint_sha256: ["cannot be generated"] } });
      const list = this.keys.get(key) ?? [];
      const blob = (k: string) => k.split(" ")[1];
      if (list.some((k) => blob(k.key) === blob(input.key as string))) return json(res, 400, { message: { "deploy_key.fingerprint_sha256": ["has already been taken"] } });
      // can_push defaults to false: a key asked for without it cannot push.
      const created: SimKey = { id: this.nextId++, title: input.title, key: input.key, can_push: input.can_push === true || input.can_push === "true" };
      this.keys.set(key, [...list, created]);
      return json(res, 201, { ...created, created_at: new Date().toISOString(), expires_at: null, fingerprint_sha256: `SHA256:${createHash("sha256").update(blob(created.key) ?? "").digest("base64").replace(/=+$/, "")}` });
    }
    const keyMatch = /^\/deploy_keys\/(\d+)$/.exec(rest);
    if (keyMatch && method === "DELETE") return this.remove(this.keys, key, Number(keyMatch[1]), "Deploy Key", res);
    if (method === "GET" && rest === "/hooks") return json(res, 200, (this.hooks.get(key) ?? []).map((h) => this.hookJson(project, h)));
    if (method === "POST" && rest === "/hooks") {
      if (typeof input.url !== "string" || !input.url) return json(res, 400, { error: "url is missing" });
      if (!URL.canParse(input.url) || !/^https?:$/.test(new URL(input.url).protocol)) return json(res, 422, { message: { url: ["is blocked: Only allowed schemes are http, https"] } });
      const flag = (name: string, fallback: boolean) => (input[name] === undefined ? fallback : input[name] === true || input[name] === "true");
      // push_events is on unless turned off; the other events are off unless turned on.
      const created: SimHook = { id: this.nextId++, url: input.url, token: typeof input.token === "string" ? input.token : null, push_events: flag("push_events", true), tag_push_events: flag("tag_push_events", false), merge_requests_events: flag("merge_requests_events", false), enable_ssl_verification: flag("enable_ssl_verification", true) };
      this.hooks.set(key, [...(this.hooks.get(key) ?? []), created]);
      return json(res, 201, this.hookJson(project, created));
    }
    const hookMatch = /^\/hooks\/(\d+)$/.exec(rest);
    if (hookMatch && method === "DELETE") return this.remove(this.hooks, key, Number(hookMatch[1]), "Hook", res);
    const statusMatch = /^\/statuses\/([^/]+)$/.exec(rest);
    if (statusMatch && method === "POST") return this.postStatus(project, level, statusMatch[1]!, input, res);
    return notFound(res);
  }

  private remove<T extends { id: number }>(store: Map<string, T[]>, key: string, id: number, what: string, res: ServerResponse): void {
    if (removeWhere(store, key, (x) => x.id === id)) noContent(res);
    else notFound(res, what);
  }

  private postStatus(project: SimProject, level: number, sha: string, input: Record<string, unknown>, res: ServerResponse): void {
    if (level < ROLES.developer) return json(res, 403, FORBIDDEN);
    if (!/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(sha)) return notFound(res, "Commit");
    const state = input.state;
    if (typeof state !== "string" || !["pending", "running", "success", "failed", "canceled", "skipped"].includes(state)) return json(res, 400, { error: "state does not have a valid value" });
    const tooLong = (["target_url", "description"] as const).filter((f) => typeof input[f] === "string" && (input[f] as string).length > 255);
    if (tooLong.length) return json(res, 400, { message: Object.fromEntries(tooLong.map((f) => [f, ["is too long (maximum is 255 characters)"]])) });
    const name = typeof input.name === "string" ? input.name : typeof input.context === "string" ? input.context : "default";
    // A status still pending or running is updated in place, through GitLab's state machine,
    // which refuses to enter the state it is in; a finished one is followed by a new status.
    const open = this.statuses.find((s) => s.project === project.path && s.sha === sha && s.name === name && (s.status === "pending" || s.status === "running"));
    const event = ({ pending: "enqueue", running: "run", success: "succeed", failed: "drop", canceled: "cancel", skipped: "skip" } as Record<string, string>)[state]!;
    if (open && open.status === state) return json(res, 400, { message: `Cannot transition status via :${event} from :${state} (Reason(s): Status cannot transition via "${event}")` });
    const status: SimStatus = { project: project.path, sha, status: state, name, target_url: typeof input.target_url === "string" ? input.target_url : null, description: typeof input.description === "string" ? input.description : null };
    if (open) Object.assign(open, status);
    else this.statuses.push(status);
    json(res, 201, { id: this.nextId++, sha, ref: null, status: state, name, target_url: status.target_url, description: status.description, created_at: new Date().toISOString(), started_at: null, finished_at: null, allow_failure: false, coverage: null, author: { id: this.user.id, username: this.user.username, name: this.user.name, state: "active" } });
  }

  private visible(p: SimProject): boolean {
    return p.role !== "none" || p.visibility !== "private";
  }

  private projectJson(p: SimProject) {
    const level = p.role === "none" ? null : { access_level: ROLES[p.role], notification_level: 3 };
    return {
      id: p.id,
      description: null,
      name: p.path.split("/").at(-1),
      name_with_namespace: p.path.split("/").join(" / "),
      path: p.path.split("/").at(-1),
      path_with_namespace: p.path,
      created_at: "2013-09-30T13:46:02Z",
      default_branch: p.defaultBranch,
      ssh_url_to_repo: this.sshUrl(p),
      http_url_to_repo: `${this.url}/${p.path}.git`,
      web_url: `${this.url}/${p.path}`,
      visibility: p.visibility,
      archived: false,
      repository_access_level: p.repositoryAccess ?? "enabled",
      namespace: { id: 2, name: p.path.split("/")[0], path: p.path.split("/")[0], kind: "group", full_path: p.path.split("/").slice(0, -1).join("/") },
      permissions: { project_access: level, group_access: null },
    };
  }

  private hookJson(p: SimProject, h: SimHook) {
    // The token is never returned ("Add a webhook to a project").
    const { token: _secret, ...shown } = h;
    return { ...shown, name: null, description: null, project_id: p.id, issues_events: false, note_events: false, job_events: false, pipeline_events: false, wiki_page_events: false, alert_status: "executable", created_at: new Date().toISOString() };
  }

  /** "List all projects" with offset pagination and every documented pagination header. */
  private listProjects(q: URLSearchParams, res: ServerResponse): void {
    const perPage = Math.min(100, Math.max(1, Number(q.get("per_page") ?? 20) || 20));
    const page = Math.max(1, Number(q.get("page") ?? 1) || 1);
    const min = Number(q.get("min_access_level") ?? 0);
    let list = this.projects.filter((p) => this.visible(p) && (q.get("membership") !== "true" || p.role !== "none") && (!min || (p.role !== "none" && ROLES[p.role] >= min)));
    // Default order: created_at descending, which here follows the id.
    const ascending = q.get("sort") === "asc";
    list = [...list].sort((a, b) => (ascending ? a.id - b.id : b.id - a.id));
    const pages = Math.max(1, Math.ceil(list.length / perPage));
    const link = (p: number, rel: string) => {
      const u = new URL(`${this.url}/api/v4/projects`);
      for (const [k, v] of q) u.searchParams.set(k, v);
      u.searchParams.set("page", String(p));
      return `<${u}>; rel="${rel}"`;
    };
    const links = [...(page > 1 ? [link(page - 1, "prev")] : []), ...(page < pages ? [link(page + 1, "next")] : []), link(1, "first"), link(pages, "last")];
    json(res, 200, list.slice((page - 1) * perPage, page * perPage).map((p) => this.projectJson(p)), {
      link: links.join(", "),
      "x-page": String(page),
      "x-per-page": String(perPage),
      "x-next-page": page < pages ? String(page + 1) : "",
      "x-prev-page": page > 1 ? String(page - 1) : "",
      "x-total": String(list.length),
      "x-total-pages": String(pages),
    });
  }

  /** Authorization code request: the signed-in user approves at once. */
  private authorize(q: URLSearchParams, res: ServerResponse): void {
    // Doorkeeper shows an error page, not a redirect, for an unknown client or redirect URI.
    if (q.get("client_id") !== this.clientId || q.get("redirect_uri") !== this.callbackUrl) return html(res, 400, "<html><body><h2>An error has occurred</h2><p>The redirect URI included is not valid.</p></body></html>");
    const back = (params: Record<string, string>) => redirectWith(res, this.callbackUrl, { ...params, state: q.get("state") ?? "" });
    if (q.get("response_type") !== "code") return back({ error: "unsupported_response_type", error_description: "The authorization server does not support this response type." });
    const scopes = (q.get("scope") ?? "").split(" ").filter(Boolean);
    this.requestedScopes.push(scopes);
    if (!scopes.length || scopes.some((s) => !this.appScopes.includes(s))) return back({ error: "invalid_scope", error_description: "The requested scope is invalid, unknown, or malformed." });
    const method = q.get("code_challenge_method") ?? "plain";
    if (!["plain", "S256"].includes(method)) return back({ error: "invalid_request", error_description: "The code_challenge_method is not supported." });
    const code = randomBytes(32).toString("hex");
    this.grants.set(code, { scopes, redirectUri: this.callbackUrl, challenge: q.get("code_challenge"), method, used: false });
    back({ code });
  }

  private clientAuthenticated(req: IncomingMessage, p: URLSearchParams): boolean {
    const [id, secret] = basicCredentials(req) ?? [p.get("client_id"), p.get("client_secret")];
    return id === this.clientId && secret === this.clientSecret;
  }

  /** Access token request: authorization_code (with the PKCE check) or refresh_token (rotating). */
  private token(req: IncomingMessage, body: string, res: ServerResponse): void {
    const p = formOrJson(req, body);
    const invalidGrant = () => oauthError(res, 400, "invalid_grant", "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.");
    if (!this.clientAuthenticated(req, p)) return oauthError(res, 401, "invalid_client", "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.");
    const grantType = p.get("grant_type");
    if (grantType === "authorization_code") {
      const grant = this.grants.get(p.get("code") ?? "");
      if (!grant || grant.used || p.get("redirect_uri") !== grant.redirectUri) return invalidGrant();
      if (grant.challenge !== null) {
        const verifier = p.get("code_verifier") ?? "";
        if (!verifier || pkceChallenge(verifier, grant.method) !== grant.challenge) return invalidGrant();
      }
      grant.used = true;
      return json(res, 200, this.mint(grant.scopes));
    }
    if (grantType === "refresh_token") {
      const old = [...this.tokens].find(([, t]) => t.refreshToken === p.get("refresh_token") && !t.revoked);
      if (!old) return invalidGrant();
      old[1].revoked = true;
      return json(res, 200, this.mint(old[1].scopes));
    }
    oauthError(res, 400, "unsupported_grant_type", "The authorization grant type is not supported by the authorization server.");
  }

  /** Token revocation (RFC 7009): an access or refresh token; unknown tokens are no error. */
  private revoke(req: IncomingMessage, body: string, res: ServerResponse): void {
    const p = formOrJson(req, body);
    if (!this.clientAuthenticated(req, p)) return oauthError(res, 401, "invalid_client", "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.");
    const value = p.get("token") ?? "";
    const token = this.tokens.get(value) ?? [...this.tokens.values()].find((t) => t.refreshToken === value);
    if (token) token.revoked = true;
    json(res, 200, {});
  }
}

/** A JSON or form body as attributes (Grape takes both). */
function parseBody(req: IncomingMessage, body: string): Record<string, unknown> {
  return (req.headers["content-type"] ?? "").includes("json") ? parseObject(body) : Object.fromEntries(new URLSearchParams(body));
}
