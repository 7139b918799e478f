import { z } from "zod";
import { checkedInput, checkedPage, clean, commitShaSchema, httpFor, nextPageFromLink, numericIdSchema, providerOptionsShape, readable, readJson, repoPath as repoPathOf, retryAfterMs, sendJson, statusError, withRetries, type Answer, type Call, type ScmHttp } from "./http.js";
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

const LABEL = "Gitea";

/**
 * The narrowest OAuth scopes Slipway's features work with. Gitea (≥ 1.23) and Forgejo take the
 * access-token scopes in OAuth requests ("OAuth2 Provider" → Granular Scopes), where `read:`
 * opens a category's GET routes and `write:` all of them:
 * - `write:repository`: deploy keys, webhooks and commit statuses (writes under /repos), and
 *   reading private repositories. `read:repository` cannot write any of them.
 * - `read:user`: the profile with its email (GET /user), and the repository listing, which sits
 *   under /user and needs this category as well as `repository`.
 * Not `public-only` (it hides private repositories) nor the OIDC scopes (Slipway reads the API).
 * Older servers ignore scopes and grant full access, as their consent page tells the user; and a
 * user who granted other scopes before must revoke that grant before signing in again.
 */
export const GITEA_SCOPES = ["read:user", "write:repository"] as const;

export const giteaOptionsSchema = z.object({
  ...providerOptionsShape,
  /** The server's address, with its sub-path if it has one (`https://git.example.com`); Gitea and Forgejo are always self-hosted. */
  baseUrl: z.url({ protocol: /^https$/ }),
});
export type GiteaOptions = z.input<typeof giteaOptionsSchema>;

// Gitea's naming rules: user and organization names start with an alphanumeric and hold
// [A-Za-z0-9_.-] (≤ 40); repository names [A-Za-z0-9_.-] (≤ 100), never "." or "..".
const repoName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}\/[A-Za-z0-9_.-]{1,100}$/).refine((r) => !/\/\.{1,2}$/.test(r));
// Gitea serves at most MAX_RESPONSE_ITEMS (50 unless the admin changed it) a page.
const PAGE_SIZE = 50;

// The parts of Gitea's documented answers that Slipway reads.
const tokenAnswer = z.object({
  access_token: z.string().min(1),
  expires_in: z.number().positive().optional(),
  refresh_token: z.string().min(1).optional(),
  scope: z.string().optional(),
});
const oauthErrorAnswer = z.object({ error: z.string(), error_description: z.string().optional() });
const userAnswer = z.object({ id: z.number().int(), login: z.string().min(1), full_name: z.string().nullish(), email: z.string().nullish(), avatar_url: z.string().nullish() });
const repoAnswer = z.object({ id: z.number().int(), full_name: z.string().min(1), ssh_url: z.string().min(1), clone_url: z.string().min(1), private: z.boolean(), default_branch: z.string().min(1) });
const toRepository = (r: z.output<typeof repoAnswer>): ScmRepository => ({ id: String(r.id), fullName: r.full_name, sshUrl: r.ssh_url, cloneUrl: r.clone_url, private: r.private, defaultBranch: r.default_branch });
const createdAnswer = z.object({ id: z.number().int() });
const errorAnswer = z.object({ message: z.string().optional(), errors: z.array(z.string()).nullish() });

/** Gitea and Forgejo (which keeps Gitea's API), per their OAuth2 provider and REST API v1 documentation. */
export class GiteaProvider implements ScmProvider {
  readonly name = "gitea" as const;
  readonly scopes = GITEA_SCOPES;
  readonly signInScopes = ["read:user"] as const;
  private readonly options: z.output<typeof giteaOptionsSchema>;
  private readonly http: ScmHttp;
  private readonly base: string;

  constructor(options: GiteaOptions) {
    this.options = giteaOptionsSchema.parse(options);
    this.base = this.options.baseUrl.replace(/\/+$/, "");
    this.http = httpFor(LABEL, this.options);
  }

  authorizeUrl(state: string, codeVerifier: string, purpose: OAuthPurpose): URL {
    const url = new URL(`${this.base}/login/oauth/authorize`);
    url.search = new URLSearchParams({
      client_id: this.options.clientId,
      redirect_uri: this.options.redirectUri,
      response_type: "code",
      scope: (purpose === "sign-in" ? this.signInScopes : this.scopes).join(" "),
      state,
      code_challenge: codeChallenge(codeVerifier),
      code_challenge_method: "S256",
    }).toString();
    return url;
  }

  exchangeCode(code: string, codeVerifier: string): Promise<ScmTokens> {
    return this.token({ grant_type: "authorization_code", code, code_verifier: codeVerifier, redirect_uri: this.options.redirectUri }, "finishing the sign-in");
  }

  /** Gitea mints a new refresh token each time; with INVALIDATE_REFRESH_TOKENS (Forgejo's default) the old one is spent. */
  refresh(refreshToken: string): Promise<ScmTokens> {
    return this.token({ grant_type: "refresh_token", refresh_token: refreshToken }, "refreshing the token");
  }

  // No `revoke`: Gitea's API cannot revoke an OAuth grant; the user does it under Settings →
  // Applications, and Slipway deletes its copy of the token.

  async currentUser(token: string): Promise<ScmUser> {
    const what = "reading your profile";
    // For the signed-in user Gitea shows the real email, even one kept private from others.
    const user = readJson(LABEL, await this.call(token, "GET", "/user", what), userAnswer, what);
    return { id: String(user.id), login: user.login, name: user.full_name || null, email: user.email || null, avatarUrl: user.avatar_url || null };
  }

  async repository(token: string, repo: string): Promise<ScmRepository> {
    const what = `reading ${repo}`;
    return toRepository(readJson(LABEL, await this.call(token, "GET", repoPath(repo), what), repoAnswer, what));
  }

  async listRepositories(token: string, page: number): Promise<RepositoryPage> {
    const what = "listing your repositories";
    const answer = await this.call(token, "GET", `/user/repos?limit=${PAGE_SIZE}&page=${checkedPage(page)}`, what);
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
    // Type "gitea" is known to Forgejo too. `active` defaults to false in Gitea's API, so it is
    // sent. Slipway's event names are Gitea's: `pull_request` turns on every pull request event
    // (opened, reopened, synchronized, …), and tag pushes arrive as `push`.
    const body = { type: "gitea", active: true, events, config: { url, content_type: "json", secret } };
    return { id: String(readJson(LABEL, await this.call(token, "POST", `${repoPath(repo)}/hooks`, what, body), createdAnswer, what).id) };
  }

  async removeWebhook(token: string, repo: string, id: string): Promise<void> {
    await this.call(token, "DELETE", `${repoPath(repo)}/hooks/${checked(numericIdSchema, id, "webhook id")}`, `removing webhook ${id} from ${repo}`);
  }

  async setCommitStatus(token: string, repo: string, sha: string, status: CommitStatus): Promise<void> {
    // Slipway's four states are four of Gitea's five (it also has `warning`).
    const { state, targetUrl, description, context } = checked(commitStatusSchema, status, "commit status");
    const path = `${repoPath(repo)}/statuses/${checked(commitShaSchema, sha, "commit id")}`;
    const body = { state, target_url: targetUrl, description, context };
    await withRetries(this.options.statusRetry, () => this.call(token, "POST", path, `posting the ${state} status of ${sha.slice(0, 12)} to ${repo}`, body));
  }

  canRead(token: string, repo: string): Promise<boolean> {
    // Gitea answers 404 for a private repository the account cannot see, and 403 when it may see
    // the repository but none of its parts.
    return readable(() => this.call(token, "GET", repoPath(repo), `checking read access to ${repo}`));
  }

  private async token(params: Record<string, string>, what: string): Promise<ScmTokens> {
    const body = new URLSearchParams({ client_id: this.options.clientId, client_secret: this.options.clientSecret, ...params }).toString();
    const answer = await this.http.send({ method: "POST", url: new URL(`${this.base}/login/oauth/access_token`), headers: { accept: "application/json", "content-type": "application/x-www-form-urlencoded" }, body, what });
    if (answer.status === 400) {
      const parsed = oauthErrorAnswer.safeParse(parseJson(answer));
      if (parsed.success) throw oauthError(parsed.data.error, parsed.data.error_description ?? "", what, params.grant_type === "refresh_token");
    }
    if (answer.status !== 200) throw this.failure(answer, what);
    const data = readJson(LABEL, answer, tokenAnswer, what);
    return {
      accessToken: data.access_token,
      ...(data.refresh_token ? { refreshToken: data.refresh_token } : {}),
      ...(data.expires_in ? { expiresAt: new Date(Date.now() + data.expires_in * 1000) } : {}),
      // Gitea's answer has no `scope`; RFC 6749 §5.1 says that means the scopes asked for.
      scopes: data.scope === undefined ? [...this.scopes] : data.scope.split(/[\s,]+/).filter(Boolean),
    };
  }

  /** An authenticated REST call that must succeed. */
  private async call(token: string, method: Call["method"], path: string, what: string, body?: unknown): Promise<Answer> {
    const answer = await sendJson(this.http, { method, url: new URL(`${this.base}/api/v1${path}`), headers: { accept: "application/json", authorization: `Bearer ${token}` }, what, json: body });
    if (answer.status >= 200 && answer.status < 300) return answer;
    throw this.failure(answer, what);
  }

  private failure(answer: Answer, what: string): ScmError {
    const detail = errorAnswer.safeParse(parseJson(answer));
    const said = detail.success ? [detail.data.message, ...(detail.data.errors ?? [])].filter(Boolean).join("; ") : "";
    // Gitea has no rate limit of its own; a proxy in front of it may answer 429 with Retry-After.
    const wait = answer.status === 429 ? (retryAfterMs(answer.headers) ?? 60_000) : undefined;
    return statusError(LABEL, answer.status, what, said, wait);
  }
}

const repoPath = (repo: string): string => repoPathOf(LABEL, repoName, repo);

const checked = <S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> => checkedInput(LABEL, schema, value, what);

function parseJson(answer: Answer): unknown {
  try {
    return JSON.parse(answer.body.toString("utf8"));
  } catch {
    return undefined;
  }
}

/**
 * The token endpoint's errors (HTTP 400, RFC 6749 §5.2). Gitea names most failures
 * `unauthorized_client` and tells them apart in `error_description`.
 */
function oauthError(code: string, description: string, what: string, refreshing: boolean): ScmError {
  const said = ` (Gitea said: ${clean(description || code)})`;
  if (code === "invalid_client" || /secret|redirect/i.test(description))
    return new ScmError("invalid", `Gitea did not accept Slipway's OAuth application while ${what}${said}: the operator must correct the client id, secret or redirect URI (it must match the registered one exactly).`);
  if (refreshing) return new ScmError("unauthorized", `Gitea did not accept the refresh token while ${what}${said}: the connection was revoked, has expired or the token was used already; reconnect your Gitea account.`);
  return new ScmError("invalid", `Gitea did not accept the sign-in code while ${what}${said}: it expired or was used already; start the sign-in again.`);
}
