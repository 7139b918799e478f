import { z } from "zod";
import { checkedInput, checkedPage, clean, commitShaSchema, httpFor, nextPageFromLink, numericIdSchema, providerOptionsShape, readable, readJson, repoPath as repoPathOf, retryAfterMs, sendJson, statusError, withRetries, type Answer, type Call, type ScmHttp } from "./http.js";
import {
  codeChallenge,
  commitStatusSchema,
  ScmError,
  type CommitStatus,
  type ProviderId,
  type RepositoryPage,
  type ScmProvider,
  type ScmRepository,
  type ScmTokens,
  type ScmUser,
  type WebhookEvent,
  type OAuthPurpose,
} from "./provider.js";

const LABEL = "GitHub";

/**
 * The narrowest OAuth scopes Slipway's features work with (GitHub "Scopes for OAuth apps"):
 * - `repo`: deploy keys, webhooks and commit statuses on private repositories, and listing them.
 *   No narrower scope covers deploy keys (`admin:public_key` is for the user's own keys), and
 *   `repo` already includes `admin:repo_hook` and `repo:status`, so those are not asked for.
 * - `user:email`: the primary verified email when the profile shows none publicly.
 * The profile itself (id, login, name, avatar) needs no scope, so `read:user` is not asked for.
 */
export const GITHUB_SCOPES = ["repo", "user:email"] as const;

export const githubOptionsSchema = z.object({
  ...providerOptionsShape,
  /** A GitHub Enterprise Server's address (`https://github.example.com`); github.com when absent. */
  baseUrl: z.url({ protocol: /^https$/ }).optional(),
});
export type GitHubOptions = z.input<typeof githubOptionsSchema>;

const API_HEADERS = { accept: "application/vnd.github+json", "x-github-api-version": "2022-11-28" };

// GitHub's naming rules: owners are alphanumerics and single hyphens (≤ 39), names [A-Za-z0-9._-].
const repoName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,38}\/[A-Za-z0-9._-]{1,100}$/).refine((r) => !/\/\.{1,2}$/.test(r));

// The parts of GitHub's documented answers that Slipway reads.
const tokenAnswer = z.union([
  z.object({ error: z.string(), error_description: z.string().optional() }),
  z.object({
    access_token: z.string().min(1),
    scope: z.string().default(""),
    // Only GitHub Apps with expiring user tokens send these; OAuth app tokens do not expire.
    expires_in: z.number().positive().optional(),
    refresh_token: z.string().min(1).optional(),
  }),
]);
const userAnswer = z.object({ id: z.number().int(), login: z.string().min(1), name: z.string().nullish(), email: z.string().nullish(), avatar_url: z.string().nullish() });
const emailsAnswer = z.array(z.object({ email: z.string(), primary: z.boolean(), verified: z.boolean() }));
const repoAnswer = z.object({ id: z.number().int(), full_name: z.string().min(1), ssh_url: z.string().min(1), clone_url: z.string().min(1), private: z.boolean(), default_branch: z.string().min(1) });
const createdAnswer = z.object({ id: z.number().int() });
const errorAnswer = z.object({ message: z.string().optional(), errors: z.array(z.union([z.string(), z.object({ message: z.string().optional(), field: z.string().optional(), code: z.string().optional() })])).optional() });

/** GitHub and GitHub Enterprise Server, per GitHub's REST API (version 2022-11-28) and OAuth web flow. */
export class GitHubProvider implements ScmProvider {
  readonly name = "github" as const;
  readonly scopes = GITHUB_SCOPES;
  readonly signInScopes = ["read:user"] as const;
  private readonly options: z.output<typeof githubOptionsSchema>;
  private readonly http: ScmHttp;
  private readonly apiBase: string;
  private readonly webBase: string;

  constructor(options: GitHubOptions) {
    this.options = githubOptionsSchema.parse(options);
    const base = this.options.baseUrl?.replace(/\/+$/, "");
    this.webBase = base ?? "https://github.com";
    this.apiBase = base ? `${base}/api/v3` : "https://api.github.com";
    this.http = httpFor(LABEL, this.options);
  }

  authorizeUrl(state: string, codeVerifier: string, purpose: OAuthPurpose): URL {
    const url = new URL(`${this.webBase}/login/oauth/authorize`);
    url.search = new URLSearchParams({
      client_id: this.options.clientId,
      redirect_uri: this.options.redirectUri,
      scope: (purpose === "sign-in" ? this.signInScopes : this.scopes).join(" "),
      state,
      code_challenge: codeChallenge(codeVerifier),
      code_challenge_method: "S256",
    }).toString();
    return url;
  }

  exchangeCode(code: string, codeVerifier: string): Promise<ScmTokens> {
    return this.token({ code, code_verifier: codeVerifier, redirect_uri: this.options.redirectUri }, "finishing the sign-in");
  }

  refresh(refreshToken: string): Promise<ScmTokens> {
    return this.token({ grant_type: "refresh_token", refresh_token: refreshToken }, "refreshing the token");
  }

  async revoke(token: string): Promise<void> {
    const what = "revoking Slipway's access";
    const basic = Buffer.from(`${this.options.clientId}:${this.options.clientSecret}`).toString("base64");
    const answer = await this.http.send({ method: "DELETE", url: this.api(`/applications/${encodeURIComponent(this.options.clientId)}/grant`), headers: { ...API_HEADERS, authorization: `Basic ${basic}`, "content-type": "application/json" }, body: JSON.stringify({ access_token: token }), what });
    if (answer.status === 204) return;
    const error = this.failure(answer, what);
    // This call authenticates the OAuth app, not the user, so these point at Slipway's settings.
    if (error.kind === "unauthorized" || error.kind === "not_found")
      throw new ScmError(error.kind, `GitHub did not accept Slipway's OAuth app (client id/secret) while ${what}: the operator must correct the GitHub settings; until then revoke Slipway under GitHub → Settings → Applications.`);
    if (error.kind === "invalid") throw new ScmError("invalid", `GitHub did not accept the token while ${what}: it is most likely revoked already, so nothing is left to revoke.`);
    throw error;
  }

  async currentUser(token: string, opts = { email: true }): Promise<ScmUser> {
    const user = readJson(LABEL, await this.call(token, "GET", "/user", "reading your profile"), userAnswer, "reading your profile");
    const email = user.email || (opts.email ? await this.primaryEmail(token) : null);
    return { id: String(user.id), login: user.login, name: user.name || null, email, avatarUrl: user.avatar_url || null };
  }

  async repository(token: string, repo: string): Promise<ScmRepository> {
    const what = `reading ${repo}`;
    return toRepository(readJson(LABEL, await this.call(token, "GET", repoPath(repo), what), repoAnswer, what));
  }

  async listRepositories(token: string, page: number): Promise<RepositoryPage> {
    const what = "listing your repositories";
    const answer = await this.call(token, "GET", `/user/repos?per_page=100&page=${checkedPage(page)}`, what);
    const repos = readJson(LABEL, answer, z.array(repoAnswer), what).map(toRepository);
    const nextPage = nextPageFromLink(LABEL, answer.headers, what);
    return nextPage === undefined ? { repos } : { repos, nextPage };
  }

  async addDeployKey(token: string, repo: string, title: string, publicKey: string, readOnly = true): Promise<ProviderId> {
    const what = `adding the deploy key to ${repo}`;
    const answer = await this.call(token, "POST", `${repoPath(repo)}/keys`, what, { title, key: publicKey, read_only: readOnly });
    return { id: String(readJson(LABEL, answer, createdAnswer, what).id) };
  }

  async removeDeployKey(token: string, repo: string, id: string): Promise<void> {
    await this.call(token, "DELETE", `${repoPath(repo)}/keys/${checked(numericIdSchema, id, "deploy key id")}`, `removing deploy key ${id} from ${repo}`);
  }

  async addWebhook(token: string, repo: string, url: string, secret: string, events: readonly WebhookEvent[]): Promise<ProviderId> {
    const what = `adding the webhook to ${repo}`;
    // insecure_ssl "0": GitHub verifies Slipway's certificate on every delivery. Slipway's event
    // names are GitHub's own.
    const body = { name: "web", active: true, events, config: { url, content_type: "json", secret, insecure_ssl: "0" } };
    return { id: String(readJson(LABEL, await this.call(token, "POST", `${repoPath(repo)}/hooks`, what, body), createdAnswer, what).id) };
  }

  async removeWebhook(token: string, repo: string, id: string): Promise<void> {
    await this.call(token, "DELETE", `${repoPath(repo)}/hooks/${checked(numericIdSchema, id, "webhook id")}`, `removing webhook ${id} from ${repo}`);
  }

  async setCommitStatus(token: string, repo: string, sha: string, status: CommitStatus): Promise<void> {
    const { state, targetUrl, description, context } = checked(commitStatusSchema, status, "commit status");
    const path = `${repoPath(repo)}/statuses/${checked(commitShaSchema, sha, "commit id")}`;
    // GitHub refuses descriptions longer than 140 characters.
    const body = { state, target_url: targetUrl, description: description.slice(0, 140), context };
    await withRetries(this.options.statusRetry, () => this.call(token, "POST", path, `posting the ${state} status of ${sha.slice(0, 12)} to ${repo}`, body));
  }

  canRead(token: string, repo: string): Promise<boolean> {
    // GitHub answers 404 for a private repository the account cannot see, and 403 when an
    // organization's policy (e.g. SAML SSO) keeps this token out.
    return readable(() => this.call(token, "GET", repoPath(repo), `checking read access to ${repo}`));
  }

  private async primaryEmail(token: string): Promise<string | null> {
    const what = "reading your email addresses";
    const emails = readJson(LABEL, await this.call(token, "GET", "/user/emails", what), emailsAnswer, what);
    return emails.find((e) => e.primary && e.verified)?.email ?? null;
  }

  private async token(params: Record<string, string>, what: string): Promise<ScmTokens> {
    const body = new URLSearchParams({ client_id: this.options.clientId, client_secret: this.options.clientSecret, ...params }).toString();
    const answer = await this.http.send({ method: "POST", url: new URL(`${this.webBase}/login/oauth/access_token`), headers: { accept: "application/json", "content-type": "application/x-www-form-urlencoded" }, body, what });
    if (answer.status !== 200) throw this.failure(answer, what);
    const data = readJson(LABEL, answer, tokenAnswer, what);
    if ("error" in data) throw oauthError(data.error, data.error_description ?? "", what);
    return {
      accessToken: data.access_token,
      ...(data.refresh_token ? { refreshToken: data.refresh_token } : {}),
      ...(data.expires_in ? { expiresAt: new Date(Date.now() + data.expires_in * 1000) } : {}),
      scopes: data.scope.split(",").map((s) => s.trim()).filter(Boolean),
    };
  }

  /** An authenticated REST call that must succeed. */
  private async call(token: string, method: Call["method"], path: string, what: string, body?: unknown): Promise<Answer> {
    const answer = await sendJson(this.http, { method, url: this.api(path), headers: { ...API_HEADERS, authorization: `Bearer ${token}` }, what, json: body });
    if (answer.status >= 200 && answer.status < 300) return answer;
    throw this.failure(answer, what);
  }

  private api(path: string): URL {
    return new URL(`${this.apiBase}${path}`);
  }

  private failure(answer: Answer, what: string): ScmError {
    return statusError(LABEL, answer.status, what, errorDetail(answer), rateLimitWait(answer));
  }
}

const toRepository = (r: z.output<typeof repoAnswer>): ScmRepository => ({ id: String(r.id), fullName: r.full_name, sshUrl: r.ssh_url, cloneUrl: r.clone_url, private: r.private, defaultBranch: r.default_branch });

/** `/repos/{owner}/{repo}` for a checked `owner/name`. */
const repoPath = (repo: string): string => repoPathOf(LABEL, repoName, repo);

const checked = <S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> => checkedInput(LABEL, schema, value, what);

/** GitHub's own words from an error body: `message`, plus each validation error. */
function errorDetail(answer: Answer): string {
  try {
    const parsed = errorAnswer.safeParse(JSON.parse(answer.body.toString("utf8")));
    if (!parsed.success) return "";
    const errors = (parsed.data.errors ?? []).map((e) => (typeof e === "string" ? e : (e.message ?? [e.field, e.code].filter(Boolean).join(" "))));
    return [parsed.data.message, ...errors].filter(Boolean).join("; ");
  } catch {
    return "";
  }
}

/**
 * How long GitHub asks to wait, per "Rate limits for the REST API": a `retry-after` header
 * (secondary limits), else `x-ratelimit-remaining: 0` until `x-ratelimit-reset` (epoch seconds),
 * else at least a minute for a 429. A 403 without these is a real refusal.
 */
function rateLimitWait(answer: Answer): number | undefined {
  if (answer.status !== 403 && answer.status !== 429) return undefined;
  const after = retryAfterMs(answer.headers);
  if (after !== undefined) return after;
  if (answer.headers["x-ratelimit-remaining"] === "0") {
    const reset = Number(answer.headers["x-ratelimit-reset"]);
    return Number.isFinite(reset) && reset > 0 ? Math.max(0, reset * 1000 - Date.now()) : 60_000;
  }
  return answer.status === 429 ? 60_000 : undefined;
}

/** The OAuth token endpoint's errors (GitHub "Troubleshooting OAuth app access token request errors"). */
function oauthError(code: string, description: string, what: string): ScmError {
  const said = description ? ` (GitHub said: ${clean(description)})` : ` (${clean(code)})`;
  switch (code) {
    case "bad_verification_code":
      return new ScmError("invalid", `GitHub did not accept the sign-in code while ${what}${said}: it expired or was used already; start the sign-in again.`);
    case "bad_refresh_token":
      return new ScmError("unauthorized", `GitHub did not accept the refresh token while ${what}${said}: the connection was revoked or has expired; reconnect your GitHub account.`);
    case "incorrect_client_credentials":
    case "redirect_uri_mismatch":
      return new ScmError("invalid", `GitHub did not accept Slipway's OAuth app settings while ${what}${said}: the operator must correct the client id, secret or callback URL.`);
    case "unverified_user_email":
      return new ScmError("forbidden", `GitHub refused ${what}${said}: verify your primary email address on GitHub, then sign in again.`);
    default:
      return new ScmError("invalid", `GitHub refused ${what}${said}: start the sign-in again.`);
  }
}
