import { z } from "zod";
import { checkedInput, clean, commitShaSchema, httpFor, nextPageFromLink, numericIdSchema, providerOptionsShape, readable, readJson, retryAfterMs, statusError, withRetries, type Answer, type Call, type ScmHttp } from "./http.js";
import {
  codeChallenge,
  commitStatusSchema,
  ScmError,
  type CommitStatus,
  type ProviderId,
  type RepositoryPage,
  type ScmRepository,
  type ScmProvider,
  type ScmTokens,
  type ScmUser,
  type WebhookEvent,
  type OAuthPurpose,
} from "./provider.js";

const LABEL = "GitLab";

/**
 * The narrowest OAuth scopes Slipway's features work with (GitLab "Configure GitLab as an OAuth
 * 2.0 authentication identity provider", scope table):
 * - `api`: adding and removing deploy keys and project webhooks, and posting commit statuses, all
 *   of which write; `read_api` only reads and no narrower scope writes any of them. It also covers
 *   the profile (`/user`, with the primary email) and the project listing, so `read_user`,
 *   `read_api` and the OpenID `email`/`profile` scopes would add nothing and are not asked for.
 * Slipway clones with the project's deploy key over SSH, so `read_repository` is not needed either.
 */
export const GITLAB_SCOPES = ["api"] as const;

export const gitlabOptionsSchema = z.object({
  ...providerOptionsShape,
  /** A self-managed instance's address, path included (`https://example.com/gitlab`); gitlab.com when absent. */
  baseUrl: z.url({ protocol: /^https$/ }).optional(),
});
export type GitLabOptions = z.input<typeof gitlabOptionsSchema>;

// GitLab's path rules ("Reserved project and group names", "Namespaces"): each part is letters,
// digits, `_`, `.` and `-`, does not start with `-` and does not end in `.git` or `.atom`; groups
// nest up to 20 deep, so a project is `group/subgroup/.../project`.
const pathPart = /^(?!\.{1,2}$)(?![^/]*\.(?:git|atom)$)[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$/;
const projectPath = z
  .string()
  .max(2048)
  .refine((p) => {
    const parts = p.split("/");
    return parts.length >= 2 && parts.length <= 21 && parts.every((s) => pathPart.test(s));
  });
// "Set the pipeline status of a commit": target_url and description are at most 255 characters.
const statusInput = commitStatusSchema.extend({ targetUrl: commitStatusSchema.shape.targetUrl.max(255) });

// Slipway's states as GitLab names them; GitLab has no separate "error", so both failures are `failed`.
const STATES = { pending: "pending", success: "success", failure: "failed", error: "failed" } as const;
// A project role that may read the code of a private project ("Roles and permissions": Reporter).
const REPORTER = 20;

// The parts of GitLab's documented answers that Slipway reads.
const oauthErrorAnswer = z.object({ error: z.string(), error_description: z.string().optional() });
const tokenAnswer = z.object({
  access_token: z.string().min(1),
  expires_in: z.number().positive().optional(),
  refresh_token: z.string().min(1).optional(),
  // Doorkeeper sends the granted scopes space-separated; the API docs' examples leave it out.
  scope: z.string().optional(),
});
const userAnswer = z.object({ id: z.number().int(), username: z.string().min(1), name: z.string().nullish(), email: z.string().nullish(), public_email: z.string().nullish(), avatar_url: z.string().nullish() });
const projectAnswer = z.object({
  id: z.number().int(),
  path_with_namespace: z.string().min(1),
  ssh_url_to_repo: z.string().min(1),
  http_url_to_repo: z.string().min(1),
  visibility: z.enum(["private", "internal", "public"]),
  // Null while the project has no commits.
  default_branch: z.string().nullish(),
});
const access = z.object({ access_level: z.number().int() }).nullish();
const readAccessAnswer = z.object({
  visibility: z.enum(["private", "internal", "public"]),
  repository_access_level: z.enum(["enabled", "private", "disabled"]).optional(),
  permissions: z.object({ project_access: access, group_access: access }).nullish(),
});
const createdAnswer = z.object({ id: z.number().int() });
const errorAnswer = z.object({
  // A sentence, or per attribute a list of validation messages (REST API troubleshooting, "Status code 400").
  message: z.union([z.string(), z.record(z.string(), z.unknown())]).optional(),
  error: z.string().optional(),
  error_description: z.string().optional(),
});

/** GitLab.com and self-managed GitLab, per the REST API v4 and GitLab's OAuth 2.0 identity provider API. */
export class GitLabProvider implements ScmProvider {
  readonly name = "gitlab" as const;
  readonly scopes = GITLAB_SCOPES;
  readonly signInScopes = ["read_user"] as const;
  private readonly options: z.output<typeof gitlabOptionsSchema>;
  private readonly http: ScmHttp;
  private readonly webBase: string;

  constructor(options: GitLabOptions) {
    this.options = gitlabOptionsSchema.parse(options);
    this.webBase = (this.options.baseUrl ?? "https://gitlab.com").replace(/\/+$/, "");
    this.http = httpFor(LABEL, this.options);
  }

  authorizeUrl(state: string, codeVerifier: string, purpose: OAuthPurpose): URL {
    const url = new URL(`${this.webBase}/oauth/authorize`);
    url.search = new URLSearchParams({
      client_id: this.options.clientId,
      redirect_uri: this.options.redirectUri,
      response_type: "code",
      state,
      scope: (purpose === "sign-in" ? this.signInScopes : this.scopes).join(" "),
      code_challenge: codeChallenge(codeVerifier),
      code_challenge_method: "S256",
    }).toString();
    return url;
  }

  exchangeCode(code: string, codeVerifier: string): Promise<ScmTokens> {
    return this.token({ grant_type: "authorization_code", code, code_verifier: codeVerifier }, "finishing the sign-in");
  }

  refresh(refreshToken: string): Promise<ScmTokens> {
    return this.token({ grant_type: "refresh_token", refresh_token: refreshToken }, "refreshing the token");
  }

  /** RFC 7009 at `/oauth/revoke`; an unknown or already revoked token is not an error there. */
  async revoke(token: string): Promise<void> {
    const what = "revoking Slipway's access";
    const answer = await this.http.send(this.form("/oauth/revoke", { client_id: this.options.clientId, client_secret: this.options.clientSecret, token }, what));
    if (answer.status === 200) return;
    const error = oauthErrorIn(answer);
    if (error === "invalid_client" || error === "unauthorized_client")
      throw new ScmError("invalid", `GitLab did not accept Slipway's OAuth application (client id/secret) while ${what}: the operator must correct the GitLab settings; until then revoke Slipway under GitLab → Preferences → Applications.`);
    throw this.failure(answer, what);
  }

  async currentUser(token: string): Promise<ScmUser> {
    const what = "reading your profile";
    const user = readJson(LABEL, await this.call(token, "GET", "/user", what), userAnswer, what);
    // For the signed-in user `email` is the primary address, whatever the profile shows publicly.
    return { id: String(user.id), login: user.username, name: user.name || null, email: user.email || user.public_email || null, avatarUrl: user.avatar_url || null };
  }

  async repository(token: string, repo: string): Promise<ScmRepository> {
    const what = `reading ${repo}`;
    const p = readJson(LABEL, await this.call(token, "GET", projectPathOf(repo), what), projectAnswer, what);
    // An empty project gets its first branch on the first push; GitLab names it `main` by default.
    return toRepository(p, p.default_branch ?? "main");
  }

  async listRepositories(token: string, page: number): Promise<RepositoryPage> {
    if (!Number.isInteger(page) || page < 1 || page > 100_000) throw new ScmError("invalid", `Page ${page} is not a page number: use 1 or more.`);
    const what = "listing your projects";
    // Projects the account is a member of with at least Reporter (who may read the code), oldest
    // first so that projects created meanwhile do not shift the pages.
    const query = new URLSearchParams({ membership: "true", min_access_level: String(REPORTER), order_by: "id", sort: "asc", per_page: "100", page: String(page) });
    const answer = await this.call(token, "GET", `/projects?${query}`, what);
    const repos = readJson(LABEL, answer, z.array(projectAnswer), what)
      // A project without commits has no default branch and nothing to build yet.
      .flatMap((p) => (p.default_branch ? [toRepository(p, p.default_branch)] : []));
    // "Pagination Link header": "use these links instead of generating your own URLs".
    const nextPage = nextPageFromLink(LABEL, answer.headers, what);
    return nextPage === undefined ? { repos } : { repos, nextPage };
  }

  async addDeployKey(token: string, repo: string, title: string, publicKey: string, readOnly = true): Promise<ProviderId> {
    const what = `adding the deploy key to ${repo}`;
    const answer = await this.call(token, "POST", `${projectPathOf(repo)}/deploy_keys`, what, { title, key: publicKey, can_push: !readOnly });
    return { id: String(readJson(LABEL, answer, createdAnswer, what).id) };
  }

  async removeDeployKey(token: string, repo: string, id: string): Promise<void> {
    await this.call(token, "DELETE", `${projectPathOf(repo)}/deploy_keys/${checked(numericIdSchema, id, "deploy key id")}`, `removing deploy key ${id} from ${repo}`);
  }

  async addWebhook(token: string, repo: string, url: string, secret: string, events: readonly WebhookEvent[]): Promise<ProviderId> {
    const what = `adding the webhook to ${repo}`;
    // Every event flag is set, since GitLab turns push events on when not told. The secret goes
    // back in X-Gitlab-Token; GitLab verifies Slipway's certificate on every delivery.
    const body = { url, token: secret, push_events: events.includes("push"), tag_push_events: events.includes("push"), merge_requests_events: events.includes("pull_request"), enable_ssl_verification: true };
    return { id: String(readJson(LABEL, await this.call(token, "POST", `${projectPathOf(repo)}/hooks`, what, body), createdAnswer, what).id) };
  }

  async removeWebhook(token: string, repo: string, id: string): Promise<void> {
    await this.call(token, "DELETE", `${projectPathOf(repo)}/hooks/${checked(numericIdSchema, id, "webhook id")}`, `removing webhook ${id} from ${repo}`);
  }

  async setCommitStatus(token: string, repo: string, sha: string, status: CommitStatus): Promise<void> {
    const { state, targetUrl, description, context } = checked(statusInput, status, "commit status");
    const path = `${projectPathOf(repo)}/statuses/${checked(commitShaSchema, sha, "commit id")}`;
    const gitlabState = STATES[state];
    const body = { state: gitlabState, target_url: targetUrl, description: description.slice(0, 255), name: context };
    const what = `posting the ${state} status of ${sha.slice(0, 12)} to ${repo}`;
    await withRetries(this.options.statusRetry, async () => {
      const answer = await this.send(token, "POST", path, what, body);
      if (ok(answer) || alreadyIn(answer, gitlabState)) return;
      throw this.failure(answer, what);
    });
  }

  async canRead(token: string, repo: string): Promise<boolean> {
    const what = `checking read access to ${repo}`;
    let project: z.output<typeof readAccessAnswer> | undefined;
    // GitLab answers 404 for a project the account may not see.
    const visible = await readable(async () => (project = readJson(LABEL, await this.call(token, "GET", projectPathOf(repo), what), readAccessAnswer, what)));
    if (!visible || !project) return false;
    // A Guest sees a private project but not its code; anyone signed in reads the code of a public
    // or internal project unless its repository is for members only or turned off.
    const level = Math.max(project.permissions?.project_access?.access_level ?? 0, project.permissions?.group_access?.access_level ?? 0);
    const repository = project.repository_access_level ?? "enabled";
    if (repository === "disabled") return false;
    return level >= REPORTER || (project.visibility !== "private" && repository === "enabled");
  }

  private async token(params: Record<string, string>, what: string): Promise<ScmTokens> {
    const refreshing = params.grant_type === "refresh_token";
    const answer = await this.http.send(this.form("/oauth/token", { client_id: this.options.clientId, client_secret: this.options.clientSecret, redirect_uri: this.options.redirectUri, ...params }, what));
    if (answer.status !== 200) {
      const error = oauthErrorIn(answer);
      throw error === undefined ? this.failure(answer, what) : oauthError(error, errorDetail(answer), what, refreshing);
    }
    const data = readJson(LABEL, answer, tokenAnswer, what);
    return {
      accessToken: data.access_token,
      ...(data.refresh_token ? { refreshToken: data.refresh_token } : {}),
      ...(data.expires_in ? { expiresAt: new Date(Date.now() + data.expires_in * 1000) } : {}),
      scopes: (data.scope ?? "").split(" ").filter(Boolean),
    };
  }

  private form(path: string, params: Record<string, string>, what: string): Call {
    return { method: "POST", url: new URL(`${this.webBase}${path}`), headers: { accept: "application/json", "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(params).toString(), what };
  }

  private send(token: string, method: Call["method"], path: string, what: string, body?: unknown): Promise<Answer> {
    const headers: Record<string, string> = { accept: "application/json", authorization: `Bearer ${token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    return this.http.send({ method, url: new URL(`${this.webBase}/api/v4${path}`), headers, what, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  }

  /** An authenticated REST call that must succeed. */
  private async call(token: string, method: Call["method"], path: string, what: string, body?: unknown): Promise<Answer> {
    const answer = await this.send(token, method, path, what, body);
    if (ok(answer)) return answer;
    throw this.failure(answer, what);
  }

  private failure(answer: Answer, what: string): ScmError {
    // A token without a scope an endpoint needs is refused with 403 `insufficient_scope`.
    if (answer.status === 403 && oauthErrorIn(answer) === "insufficient_scope")
      return new ScmError("forbidden", `GitLab refused ${what}: the connection lacks the ${GITLAB_SCOPES.join(", ")} scope; reconnect your GitLab account (the operator must allow that scope on the GitLab application).`);
    return statusError(LABEL, answer.status, what, errorDetail(answer), rateLimitWait(answer));
  }
}

const ok = (answer: Answer) => answer.status >= 200 && answer.status < 300;

/** `/projects/group%2Fsub%2Fname` for a checked project path ("Namespaced paths" are URL-encoded whole). */
const toRepository = (p: z.output<typeof projectAnswer>, defaultBranch: string): ScmRepository => ({ id: String(p.id), fullName: p.path_with_namespace, sshUrl: p.ssh_url_to_repo, cloneUrl: p.http_url_to_repo, private: p.visibility !== "public", defaultBranch });

const projectPathOf = (repo: string): string => `/projects/${encodeURIComponent(checked(projectPath, repo, "project (group/…/name)"))}`;

const checked = <S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> => checkedInput(LABEL, schema, value, what);

function parsedBody(answer: Answer): z.output<typeof errorAnswer> | undefined {
  try {
    const parsed = errorAnswer.safeParse(JSON.parse(answer.body.toString("utf8")));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** GitLab's own words from an error body: the message, each attribute's validation messages, or the OAuth error. */
function errorDetail(answer: Answer): string {
  const body = parsedBody(answer);
  if (!body) return "";
  if (typeof body.message === "string") return body.message;
  if (body.message) return Object.entries(body.message).map(([field, says]) => `${field} ${Array.isArray(says) ? says.join(", ") : JSON.stringify(says)}`).join("; ");
  return body.error_description ?? body.error ?? "";
}

/** The OAuth error code of a failed token or revocation request, if the body names one. */
const oauthErrorIn = (answer: Answer): string | undefined => oauthErrorAnswer.safeParse(parsedBody(answer)).data?.error;

/**
 * A status GitLab already has: posting the state a status is in (pending twice) is refused with
 * 400 "Cannot transition status via :enqueue from :pending", as after a retry whose first
 * attempt got through.
 */
function alreadyIn(answer: Answer, state: string): boolean {
  return answer.status === 400 && new RegExp(`^Cannot transition status via :\\w+ from :${state}\\b`).test(errorDetail(answer));
}

/**
 * How long GitLab asks to wait ("Rate limits"): `Retry-After`, else `RateLimit-Reset` (epoch
 * seconds), else a minute; GitLab signals rate limits with 429 only.
 */
function rateLimitWait(answer: Answer): number | undefined {
  if (answer.status !== 429) return undefined;
  const after = retryAfterMs(answer.headers);
  if (after !== undefined) return after;
  const reset = Number(answer.headers["ratelimit-reset"]);
  return Number.isFinite(reset) && reset > 0 ? Math.max(0, reset * 1000 - Date.now()) : 60_000;
}

/** The token endpoint's errors (RFC 6749 §5.2, as Doorkeeper sends them). */
function oauthError(code: string, detail: string, what: string, refreshing: boolean): ScmError {
  const said = detail && detail !== code ? ` (GitLab said: ${clean(detail)})` : ` (${clean(code)})`;
  switch (code) {
    case "invalid_grant":
      return refreshing
        ? new ScmError("unauthorized", `GitLab did not accept the refresh token while ${what}${said}: the connection was revoked or has expired; reconnect your GitLab account.`)
        : new ScmError("invalid", `GitLab did not accept the sign-in code while ${what}${said}: it expired or was used already; start the sign-in again.`);
    case "invalid_client":
    case "unauthorized_client":
      return new ScmError("invalid", `GitLab did not accept Slipway's OAuth application settings while ${what}${said}: the operator must correct the client id, secret or callback URL.`);
    case "invalid_scope":
      return new ScmError("invalid", `GitLab refused the scopes Slipway asks for while ${what}${said}: the operator must allow the ${GITLAB_SCOPES.join(", ")} scope on the GitLab application.`);
    default:
      return new ScmError("invalid", `GitLab refused ${what}${said}: start the sign-in again.`);
  }
}
