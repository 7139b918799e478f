import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * How each git host signs and labels a webhook delivery, as its documentation describes:
 * - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, `X-GitHub-Delivery`, `X-GitHub-Event`;
 * - GitLab: `X-Gitlab-Token: <the secret itself>`, `X-Gitlab-Event-UUID`, `X-Gitlab-Event`;
 * - Bitbucket Cloud: `X-Hub-Signature: sha256=<hex HMAC>`, `X-Request-UUID`, `X-Event-Key`;
 * - Gitea / Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC>`, `X-Gitea-Delivery` /
 *   `X-Forgejo-Delivery`, `X-Gitea-Event` / `X-Forgejo-Event`.
 */
export const webhookProviders = ["github", "gitlab", "bitbucket", "gitea"] as const;
export type WebhookProvider = (typeof webhookProviders)[number];

export type Headers = Record<string, string | string[] | undefined>;

export interface Delivery {
  /** The provider's id of this delivery, unique per project (replays are refused by it). */
  id: string;
  /** The provider's name of the event, e.g. `push`, `Merge Request Hook`, `repo:push`. */
  event: string;
}

/** What a delivery's headers say, or why they cannot be a delivery of this provider. */
export function readDelivery(provider: WebhookProvider, headers: Headers): Delivery | { missing: string } {
  const names = {
    github: ["x-github-delivery", "x-github-event"],
    gitlab: ["x-gitlab-event-uuid", "x-gitlab-event"],
    bitbucket: ["x-request-uuid", "x-event-key"],
    gitea: [header(headers, "x-forgejo-delivery") ? "x-forgejo-delivery" : "x-gitea-delivery", header(headers, "x-forgejo-event") ? "x-forgejo-event" : "x-gitea-event"],
  }[provider] as [string, string];
  const id = header(headers, names[0]);
  if (!id || !/^[A-Za-z0-9{}._:-]{1,128}$/.test(id)) return { missing: names[0] };
  const event = header(headers, names[1]);
  if (!event || event.length > 64) return { missing: names[1] };
  return { id: id.replace(/[{}]/g, ""), event };
}

/**
 * Whether the delivery is signed with `secret` as the provider signs: an HMAC-SHA256 of the raw
 * body, or for GitLab the secret sent as a token. Compared in constant time.
 */
export function signedWith(provider: WebhookProvider, headers: Headers, raw: Buffer, secret: string | Buffer): boolean {
  if (provider === "gitlab") return sameBytes(Buffer.from(header(headers, "x-gitlab-token") ?? ""), Buffer.from(secret));
  const value = provider === "github" ? header(headers, "x-hub-signature-256") : provider === "bitbucket" ? header(headers, "x-hub-signature") : (header(headers, "x-forgejo-signature") ?? header(headers, "x-gitea-signature"));
  const hex = provider === "gitea" ? value : /^sha256=(.*)$/.exec(value ?? "")?.[1];
  if (!hex || !/^[0-9a-fA-F]{64}$/.test(hex)) return false;
  return sameBytes(Buffer.from(hex, "hex"), createHmac("sha256", secret).update(raw).digest());
}

/** Whether the headers carry a signature at all (an unsigned delivery is refused for that reason). */
export function hasSignature(provider: WebhookProvider, headers: Headers): boolean {
  const name = { github: ["x-hub-signature-256"], gitlab: ["x-gitlab-token"], bitbucket: ["x-hub-signature"], gitea: ["x-gitea-signature", "x-forgejo-signature"] }[provider];
  return name.some((n) => header(headers, n) !== undefined);
}

function header(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return typeof value === "string" ? value : undefined;
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
