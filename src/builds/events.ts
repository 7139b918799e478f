import { z } from "zod";

/**
 * What a push notification says, whoever sends it: the generic signed webhook today, provider
 * webhooks later. The webhook route validates the payload with this and hands the event to the
 * push handler (services.hooks.onPush), which turns it into a build.
 */

/** A git ref name as `git check-ref-format` allows it, under refs/heads/ or refs/tags/. */
export const gitRefSchema = z
  .string()
  .max(255)
  .regex(/^refs\/(heads|tags)\/[^\0-\x20\x7f~^:?*[\\]+$/, 'a ref is "refs/heads/<branch>" or "refs/tags/<tag>", without spaces, control characters or ~^:?*[\\')
  .refine((r) => !/\.\.|@\{|\/\/|\/\.|\.lock(\/|$)|[/.]$/.test(r), "that is not a valid git ref name (see git check-ref-format)");

export const commitIdSchema = z.string().regex(/^[0-9a-f]{40}$/, "a commit is its full 40-character lowercase hex SHA-1");

export const pushPayloadSchema = z.object({
  ref: gitRefSchema,
  commit: commitIdSchema.refine((c) => /[^0]/.test(c), "an all-zero commit means the ref was deleted: there is nothing to build"),
  message: z.string().max(64 * 1024).optional(),
  author: z.object({ name: z.string().max(256), email: z.string().max(320) }).optional(),
  /** Set when the push is the head of a pull request: builds of it are treated as untrusted. */
  pullRequest: z.number().int().positive().max(2 ** 31 - 1).optional(),
  /** Set when that pull request's head lives in another repository (a fork): its project may want to approve it first. */
  fromFork: z.boolean().optional(),
});
export type PushPayload = z.infer<typeof pushPayloadSchema>;

export interface PushEvent extends PushPayload {
  /** The sender's delivery id (X-Slipway-Delivery), unique per project. */
  deliveryId: string;
}

/** Turns a push into a build; `buildId` null when nothing was started (e.g. no builds yet, or [skip ci]). */
export type PushHandler = (projectId: string, event: PushEvent) => Promise<{ buildId: string | null }>;

/** `refs/heads/main` → branch main, `refs/tags/v1` → tag v1. */
export function refName(ref: string): { kind: "branch" | "tag"; name: string } {
  const m = /^refs\/(heads|tags)\/(.+)$/.exec(ref);
  if (!m) throw new Error(`not a branch or tag ref: ${ref}`);
  return { kind: m[1] === "heads" ? "branch" : "tag", name: m[2]! };
}
