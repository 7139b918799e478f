import { createHash, randomBytes } from "node:crypto";
import { z } from "zod";
import type { WebhookProvider } from "./webhook-deliveries.js";

/**
 * What every git host with an API does for Slipway. Each implementation talks to one host over
 * HTTPS with a timeout and a response size limit, checks every answer against a schema, and
 * reports every failure as an `ScmError` whose message says what to do next.
 */
export interface ScmProvider {
  readonly name: WebhookProvider;
  /** The OAuth scopes connecting an account asks for: the narrowest set the features below need (P15). */
  readonly scopes: readonly string[];
  /** What signing in to Slipway asks for: enough to read who the account is, nothing more. */
  readonly signInScopes: readonly string[];
  /** Where to send the browser; `codeVerifier` is kept server-side for `exchangeCode` (PKCE S256). */
  authorizeUrl(state: string, codeVerifier: string, purpose: OAuthPurpose): URL;
  exchangeCode(code: string, codeVerifier: string): Promise<ScmTokens>;
  /** A new token pair from a refresh token; the old refresh token is spent (rotation). */
  refresh(refreshToken: string): Promise<ScmTokens>;
  /** Revokes the token (and the app's grant) at the provider; absent where the API has no way to. */
  revoke?(token: string): Promise<void>;
  /** The account's profile; without `email`, only what a sign-in token may read (no email lookup). */
  currentUser(token: string, opts?: { email: boolean }): Promise<ScmUser>;
  /** One repository the account can see, by its full name; `not_found` when it cannot. */
  repository(token: string, repo: string): Promise<ScmRepository>;
  /** One page (1-based) of the repositories the account can see. */
  listRepositories(token: string, page: number): Promise<RepositoryPage>;
  addDeployKey(token: string, repo: string, title: string, publicKey: string, readOnly?: boolean): Promise<ProviderId>;
  removeDeployKey(token: string, repo: string, id: string): Promise<void>;
  addWebhook(token: string, repo: string, url: string, secret: string, events: readonly WebhookEvent[]): Promise<ProviderId>;
  removeWebhook(token: string, repo: string, id: string): Promise<void>;
  /** Retried with backoff (bounded) when the provider fails or rate-limits; other calls never retry. */
  setCommitStatus(token: string, repo: string, sha: string, status: CommitStatus): Promise<void>;
  /** Whether the token's account can read the repository; false when the provider hides or refuses it. */
  canRead(token: string, repo: string): Promise<boolean>;
}

/** Connecting an account (scopes for every feature) or signing in with it (identity only). */
export type OAuthPurpose = "connect" | "sign-in";

export const scmTokensSchema = z.object({
  accessToken: z.string().min(1),
  refreshToken: z.string().min(1).optional(),
  expiresAt: z.date().optional(),
  /** What the provider says it granted, which may differ from what was asked. */
  scopes: z.array(z.string()),
});
export type ScmTokens = z.infer<typeof scmTokensSchema>;

/** Only basic profile data, nothing more (P15). */
export const scmUserSchema = z.object({
  id: z.string().min(1),
  login: z.string().min(1),
  name: z.string().nullable(),
  email: z.string().nullable(),
  avatarUrl: z.string().nullable(),
});
export type ScmUser = z.infer<typeof scmUserSchema>;

export const scmRepositorySchema = z.object({
  id: z.string().min(1),
  /** `owner/name` (GitLab: `group/…/name`), the form every other call takes. */
  fullName: z.string().min(1),
  sshUrl: z.string().min(1),
  cloneUrl: z.string().min(1),
  private: z.boolean(),
  defaultBranch: z.string().min(1),
});
export type ScmRepository = z.infer<typeof scmRepositorySchema>;

export const repositoryPageSchema = z.object({ repos: z.array(scmRepositorySchema), nextPage: z.number().int().positive().optional() });
export type RepositoryPage = z.infer<typeof repositoryPageSchema>;

/** The provider's id of something Slipway installed (a deploy key, a webhook), kept to remove it later. */
export const providerIdSchema = z.object({ id: z.string().min(1) });
export type ProviderId = z.infer<typeof providerIdSchema>;

/** Events Slipway builds on; each provider maps them to its own names (tags arrive as pushes). */
export const webhookEventSchema = z.enum(["push", "pull_request"]);
export type WebhookEvent = z.infer<typeof webhookEventSchema>;

export const commitStatusSchema = z.object({
  state: z.enum(["pending", "success", "failure", "error"]),
  targetUrl: z.url({ protocol: /^https?$/ }),
  description: z.string(),
  context: z.string().min(1),
});
export type CommitStatus = z.infer<typeof commitStatusSchema>;

export const scmErrorKinds = ["unauthorized", "forbidden", "not_found", "invalid", "rate_limited", "unavailable", "timeout", "malformed"] as const;
export type ScmErrorKind = (typeof scmErrorKinds)[number];

/** A provider call that failed; `message` is written for the user and says what to do next. */
export class ScmError extends Error {
  override readonly name = "ScmError";
  constructor(
    readonly kind: ScmErrorKind,
    message: string,
    /** For `rate_limited`: how long the provider asked to wait. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

/** A fresh PKCE verifier (RFC 7636: 43–128 unreserved characters) or OAuth state value. */
export const newOAuthSecret = (): string => randomBytes(32).toString("base64url");

/** The S256 code challenge for a verifier (RFC 7636 §4.2). */
export const codeChallenge = (verifier: string): string => createHash("sha256").update(verifier).digest("base64url");
