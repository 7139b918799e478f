import { z } from "zod";
import { checkedInput, clean, commitShaSchema, httpFor, numericIdSchema, providerOptionsShape, readJson, retryAfterMs, statusError, withRetries, type Answer, type Call, type ScmHttp } from "./http.js";
import {
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

const LABEL = "Bitbucket";

/**
 * The narrowest OAuth scopes Slipway's features work with ("Scopes for the Bitbucket Cloud REST
 * API" and each endpoint's documented scopes). Bitbucket takes them from the OAuth consumer's
 * permission checkboxes, not from the sign-in request, so the operator ticks exactly these:
 * - `account`: the profile (`GET /user`).
 * - `email`: the primary confirmed email (`GET /user/emails`); the profile carries none.
 * - `pullrequest`: a webhook may only subscribe to `pullrequest:*` events with it. It implies
 *   `repository` (listing and reading repositories, commit statuses), which is not listed apart.
 * - `repository:admin`: adding and removing deploy keys (with `repository`).
 * - `webhook`: adding and removing webhooks.
 * `repository:write` is not needed: commit statuses take `repository`, and the deploy key is read-only.
 */
export const BITBUCKET_SCOPES = ["account", "email", "pullrequest", "repository:admin", "webhook"] as const;

// Scopes Bitbucket grants along with another ("pullrequest ... implies repository").
const IMPLIED: Record<string, string[]> = { pullrequest: ["repository"], "repository:write": ["repository"], "pullrequest:write": ["pullrequest", "repository"] };

export const bitbucketOptionsSchema = z.object({
  ...providerOptionsShape,
  /** Where sign-in happens (https://bitbucket.org when absent); set only to point at a stand-in. */
  baseUrl: z.url({ protocol: /^https$/ }).optional(),
  /** The REST API 2.0 root (https://api.bitbucket.org/2.0 when absent), a separate host from `baseUrl`. */
  apiUrl: z.url({ protocol: /^https$/ }).optional(),
});
export type BitbucketOptions = z.input<typeof bitbucketOptionsSchema>;

// Workspace ids and repository slugs: letters, digits, `-`, `_` (and `.` in slugs).
const repoName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,61}\/[A-Za-z0-9._-]{1,128}$/).refine((r) => !/\/\.{1,2}$/.test(r));
// Webhook ids are UUIDs, shown in braces; either form is accepted.
const hookId = z.string().regex(/^\{?[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\}?$/);

// The parts of Bitbucket's documented answers that Slipway reads.
const tokenAnswer = z.object({
  access_token: z.string().min(1),
  // `scopes` until Bitbucket's 2026 OAuth changes, `scope` after.
  scope: z.string().optional(),
  scopes: z.string().optional(),
  expires_in: z.number().positive().optional(),
  refresh_token: z.string().min(1).optional(),
});
const oauthErrorAnswer = z.object({ error: z.string(), error_description: z.string().optional() });
const link = z.object({ href: z.string() });
const userAnswer = z.object({ uuid: z.string().min(1), username: z.string().min(1).optional(), nickname: z.string().min(1).optional(), display_name: z.string().nullish(), links: z.object({ avatar: link.optional() }).optional() });
const page = <T extends z.ZodType>(item: T) => z.object({ values: z.array(item), next: z.string().optional() });
const emailAnswer = z.object({ email: z.string(), is_primary: z.boolean(), is_confirmed: z.boolean() });
const repoAnswer = z.object({
  uuid: z.string().min(1),
  full_name: z.string().min(1),
  is_private: z.boolean(),
  mainbranch: z.object({ name: z.string().min(1) }).nullish(),
  links: z.object({ clone: z.array(z.object({ name: z.string(), href: z.string() })) }),
});
const deployKeyAnswer = z.object({ id: z.number().int() });
const hookAnswer = z.object({ uuid: z.string().min(1) });
const errorAnswer = z.object({ error: z.object({ message: z.string().optional(), detail: z.unknown().optional(), fields: z.record(z.string(), z.unknown()).optional() }) });

/** Bitbucket's names of the events Slipway builds on ("Event payloads"). */
const EVENTS: Record<WebhookEvent, string[]> = { push: ["repo:push"], pull_request: ["pullrequest:created", "pullrequest:updated"] };

/** Bitbucket's build states ("Create a build status for a commit"); it has no separate error state. */
const STATES: Record<CommitStatus["state"], string> = { pending: "INPROGRESS", success: "SUCCESSFUL", failure: "FAILED", error: "FAILED" };

/**
 * Bitbucket Cloud, per its REST API 2.0 and OAuth 2.0 documentation. Bitbucket documents no
 * PKCE (BCLOUD-23469) and no token revocation endpoint: the consumer is confidential, and a user
 * revokes Slipway under Bitbucket's personal settings, so `revoke` is absent.
 */
export class BitbucketProvider implements ScmProvider {
  readonly name = "bitbucket" as const;
  readonly scopes = BITBUCKET_SCOPES;
  private readonly options: z.output<typeof bitbucketOptionsSchema>;
  private readonly http: ScmHttp;
  private readonly webBase: string;
  private readonly apiBase: string;

  constructor(options: BitbucketOptions) {
    this.options = bitbucketOptionsSchema.parse(options);
    this.webBase = this.options.baseUrl?.replace(/\/+$/, "") ?? "https://bitbucket.org";
    this.apiBase = this.options.apiUrl?.replace(/\/+$/, "") ?? "https://api.bitbucket.org/2.0";
    this.http = httpFor(LABEL, this.options);
  }

  /** The verifier is not used: Bitbucket has no PKCE, and the client secret binds the code instead. */
  /** Bitbucket takes no scopes in the request: the consumer's permissions decide, for sign-in too. */
  readonly signInScopes = BITBUCKET_SCOPES;

  authorizeUrl(state: string, _codeVerifier: string, _purpose: OAuthPurpose): URL {
    const url = new URL(`${this.webBase}/site/oauth2/authorize`);
    url.search = new URLSearchParams({ client_id: this.options.clientId, response_type: "code", redirect_uri: this.options.redirectUri, state }).toString();
    return url;
  }

  async exchangeCode(code: string, _codeVerifier: string): Promise<ScmTokens> {
    const tokens = await this.token({ grant_type: "authorization_code", code, redirect_uri: this.options.redirectUri }, "finishing the sign-in");
    // The consumer's checkboxes decide the scopes, so a missing one is caught here, not at the first link.
    const granted = new Set(tokens.scopes.flatMap((s) => [s, ...(IMPLIED[s] ?? [])]));
    const missing = this.scopes.filter((s) => !granted.has(s));
    if (missing.length)
      throw new ScmError("forbidden", `Bitbucket granted Slipway's OAuth consumer only "${tokens.scopes.join(" ")}", without ${missing.join(", ")}: the operator must tick exactly ${this.scopes.join(", ")} in the consumer's permissions (workspace settings → OAuth consumers); then sign in again.`);
    return tokens;
  }

  refresh(refreshToken: string): Promise<ScmTokens> {
    return this.token({ grant_type: "refresh_token", refresh_token: refreshToken }, "refreshing the token");
  }

  async currentUser(token: string, opts = { email: true }): Promise<ScmUser> {
    const user = readJson(LABEL, await this.call(token, "GET", "/user", "reading your profile"), userAnswer, "reading your profile");
    const login = user.username ?? user.nickname;
    if (!login) throw new ScmError("malformed", `Bitbucket's profile has neither a username nor a nickname while reading your profile: try again later.`);
    return { id: user.uuid, login, name: user.display_name || null, email: opts.email ? await this.primaryEmail(token) : null, avatarUrl: user.links?.avatar?.href ?? null };
  }

  async repository(token: string, repo: string): Promise<ScmRepository> {
    const what = `reading ${repo}`;
    return toRepository(readJson(LABEL, await this.call(token, "GET", repoPath(repo), what), repoAnswer, what));
  }

  async listRepositories(token: string, pageNumber: number): Promise<RepositoryPage> {
    if (!Number.isInteger(pageNumber) || pageNumber < 1 || pageNumber > 100_000) throw new ScmError("invalid", `Page ${pageNumber} is not a page number: use 1 or more.`);
    const what = "listing your repositories";
    // `role=member`: the repositories the account was given access to, not every public one.
    // Bitbucket marks this cross-workspace listing deprecated in favour of one listing per
    // workspace, which has no single page numbering; it is the only one that lists them all.
    const answer = await this.call(token, "GET", `/repositories?role=member&pagelen=100&page=${pageNumber}`, what);
    const data = readJson(LABEL, answer, page(repoAnswer), what);
    const repos = data.values.map(toRepository);
    if (data.next === undefined) return { repos };
    // Bitbucket's `next` is a URL to follow; the page number in it is what the interface carries.
    const next = Number(URL.canParse(data.next) ? new URL(data.next).searchParams.get("page") : NaN);
    if (!Number.isInteger(next) || next <= pageNumber) throw new ScmError("malformed", `Bitbucket's next-page link names no later page while ${what}: try again later.`);
    return { repos, nextPage: next };
  }

  async addDeployKey(token: string, repo: string, title: string, publicKey: string, readOnly = true): Promise<ProviderId> {
    // Bitbucket's repository access keys can only read; asking for more is a mistake to surface.
    if (!readOnly) throw new ScmError("invalid", `Bitbucket deploy keys are always read-only: Slipway cannot add a key that pushes to ${repo}.`);
    const what = `adding the deploy key to ${repo}`;
    const answer = await this.call(token, "POST", `${repoPath(repo)}/deploy-keys`, what, { key: publicKey, label: title });
    return { id: String(readJson(LABEL, answer, deployKeyAnswer, what).id) };
  }

  async removeDeployKey(token: string, repo: string, id: string): Promise<void> {
    await this.call(token, "DELETE", `${repoPath(repo)}/deploy-keys/${checked(numericIdSchema, id, "deploy key id")}`, `removing deploy key ${id} from ${repo}`);
  }

  async addWebhook(token: string, repo: string, url: string, secret: string, events: readonly WebhookEvent[]): Promise<ProviderId> {
    const what = `adding the webhook to ${repo}`;
    // With `secret` set Bitbucket signs each delivery (`X-Hub-Signature`).
    const body = { description: "Slipway", url, active: true, secret, events: events.flatMap((e) => EVENTS[e]) };
    return { id: readJson(LABEL, await this.call(token, "POST", `${repoPath(repo)}/hooks`, what, body), hookAnswer, what).uuid };
  }

  async removeWebhook(token: string, repo: string, id: string): Promise<void> {
    const uuid = checked(hookId, id, "webhook id").replace(/[{}]/g, "");
    await this.call(token, "DELETE", `${repoPath(repo)}/hooks/${encodeURIComponent(`{${uuid}}`)}`, `removing webhook ${id} from ${repo}`);
  }

  async setCommitStatus(token: string, repo: string, sha: string, status: CommitStatus): Promise<void> {
    const { state, targetUrl, description, context } = checked(commitStatusSchema, status, "commit status");
    const path = `${repoPath(repo)}/commit/${checked(commitShaSchema, sha, "commit id")}/statuses/build`;
    // The key identifies Slipway's status on the commit, so a later state replaces an earlier one.
    const body = { key: context, name: context, state: STATES[state], url: targetUrl, description };
    await withRetries(this.options.statusRetry, () => this.call(token, "POST", path, `posting the ${state} status of ${sha.slice(0, 12)} to ${repo}`, body));
  }

  async canRead(token: string, repo: string): Promise<boolean> {
    const what = `checking read access to ${repo}`;
    const answer = await this.send(token, "GET", repoPath(repo), what);
    if (answer.status >= 200 && answer.status < 300) return true;
    // Bitbucket answers 403 for a private repository the account cannot see and 404 for none;
    // a 403 for missing scopes is Slipway's configuration, not a "no".
    if (answer.status === 404 || (answer.status === 403 && lackingScopes(answer) === undefined)) return false;
    throw this.failure(answer, what);
  }

  private async primaryEmail(token: string): Promise<string | null> {
    const what = "reading your email addresses";
    const emails = readJson(LABEL, await this.call(token, "GET", "/user/emails", what), page(emailAnswer), what);
    return emails.values.find((e) => e.is_primary && e.is_confirmed)?.email ?? null;
  }

  /** The token endpoint ("OAuth 2.0"): the consumer authenticates with HTTP Basic; errors per RFC 6749 §5.2. */
  private async token(params: Record<string, string>, what: string): Promise<ScmTokens> {
    const basic = Buffer.from(`${this.options.clientId}:${this.options.clientSecret}`).toString("base64");
    const headers = { accept: "application/json", authorization: `Basic ${basic}`, "content-type": "application/x-www-form-urlencoded" };
    const answer = await this.http.send({ method: "POST", url: new URL(`${this.webBase}/site/oauth2/access_token`), headers, body: new URLSearchParams(params).toString(), what });
    if (answer.status !== 200) throw oauthError(answer, params.grant_type === "refresh_token", what) ?? this.failure(answer, what);
    const data = readJson(LABEL, answer, tokenAnswer, what);
    return {
      accessToken: data.access_token,
      ...(data.refresh_token ? { refreshToken: data.refresh_token } : {}),
      ...(data.expires_in ? { expiresAt: new Date(Date.now() + data.expires_in * 1000) } : {}),
      scopes: (data.scope ?? data.scopes ?? "").split(/[\s,]+/).filter(Boolean),
    };
  }

  /** An authenticated REST call that must succeed. */
  private async call(token: string, method: Call["method"], path: string, what: string, body?: unknown): Promise<Answer> {
    const answer = await this.send(token, method, path, what, body);
    if (answer.status >= 200 && answer.status < 300) return answer;
    throw this.failure(answer, what);
  }

  private send(token: string, method: Call["method"], path: string, what: string, body?: unknown): Promise<Answer> {
    const headers: Record<string, string> = { accept: "application/json", authorization: `Bearer ${token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    return this.http.send({ method, url: new URL(`${this.apiBase}${path}`), headers, what, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  }

  private failure(answer: Answer, what: string): ScmError {
    const scopes = lackingScopes(answer);
    if (scopes !== undefined)
      return new ScmError("forbidden", `Bitbucket refused ${what}: Slipway's OAuth consumer lacks the scope ${scopes || "it needs"}; the operator must tick it in the consumer's permissions (workspace settings → OAuth consumers), then you reconnect your Bitbucket account.`);
    // Bitbucket's 429 may carry Retry-After; without it statusError assumes a minute.
    return statusError(LABEL, answer.status, what, errorDetail(answer), answer.status === 429 ? retryAfterMs(answer.headers) : undefined);
  }
}

/** `/repositories/{workspace}/{repo_slug}` for a checked `workspace/slug`. */
function toRepository(r: z.output<typeof repoAnswer>): ScmRepository {
  const clone = (name: string) => r.links.clone.find((c) => c.name === name)?.href ?? "";
  // An empty repository has no main branch yet; Bitbucket names the first one `main`.
  return { id: r.uuid, fullName: r.full_name, sshUrl: clone("ssh"), cloneUrl: clone("https"), private: r.is_private, defaultBranch: r.mainbranch?.name ?? "main" };
}

function repoPath(repo: string): string {
  const [workspace, slug] = checked(repoName, repo, "repository (workspace/slug)").split("/") as [string, string];
  return `/repositories/${encodeURIComponent(workspace)}/${encodeURIComponent(slug)}`;
}

const checked = <S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> => checkedInput(LABEL, schema, value, what);

function errorBody(answer: Answer): z.output<typeof errorAnswer>["error"] | undefined {
  try {
    const parsed = errorAnswer.safeParse(JSON.parse(answer.body.toString("utf8")));
    return parsed.success ? parsed.data.error : undefined;
  } catch {
    return undefined;
  }
}

/** Bitbucket's own words from an error body: `message`, a textual `detail`, and each field's complaint. */
function errorDetail(answer: Answer): string {
  const error = errorBody(answer);
  if (!error) return "";
  const fields = Object.entries(error.fields ?? {}).map(([field, said]) => `${field}: ${Array.isArray(said) ? said.join(", ") : String(said)}`);
  return [error.message, typeof error.detail === "string" ? error.detail : undefined, ...fields].filter(Boolean).join("; ");
}

/**
 * The scopes a 403 says the token lacks ("Your credentials lack one or more required privilege
 * scopes", with `detail.required`), or undefined for any other answer.
 */
function lackingScopes(answer: Answer): string | undefined {
  if (answer.status !== 403) return undefined;
  const detail = z.object({ required: z.array(z.string()) }).safeParse(errorBody(answer)?.detail);
  return detail.success ? clean(detail.data.required.join(", ")) : undefined;
}

/** The token endpoint's RFC 6749 errors, phrased for the user; undefined when the body is not one. */
function oauthError(answer: Answer, refreshing: boolean, what: string): ScmError | undefined {
  let parsed;
  try {
    parsed = oauthErrorAnswer.safeParse(JSON.parse(answer.body.toString("utf8")));
  } catch {
    return undefined;
  }
  if (!parsed.success) return undefined;
  const { error, error_description: description } = parsed.data;
  const said = ` (Bitbucket said: ${clean(description ?? error)})`;
  if (error === "invalid_client" || error === "unauthorized_client")
    return new ScmError("invalid", `Bitbucket did not accept Slipway's OAuth consumer while ${what}${said}: the operator must correct the consumer's key, secret or callback URL.`);
  if (error === "invalid_grant" && refreshing)
    return new ScmError("unauthorized", `Bitbucket did not accept the refresh token while ${what}${said}: the connection was revoked or has expired; reconnect your Bitbucket account.`);
  if (error === "invalid_grant") return new ScmError("invalid", `Bitbucket did not accept the sign-in code while ${what}${said}: it expired or was used already; start the sign-in again.`);
  return new ScmError("invalid", `Bitbucket refused ${what}${said}: start the sign-in again.`);
}
