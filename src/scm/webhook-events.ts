import { z } from "zod";
import { pushPayloadSchema, type PushPayload } from "../builds/events.js";
import type { WebhookProvider } from "./webhook-deliveries.js";

/** What a provider's delivery means to Slipway: pushes to build, a ping, or nothing to do (and why). */
export type ScmEvent = { kind: "build"; pushes: PushPayload[] } | { kind: "ping" } | { kind: "ignored"; why: string };

const ZERO = /^0{40}$/;
const person = z.object({ name: z.string(), email: z.string() });
const commit = z.object({ id: z.string(), message: z.string().optional(), author: person.partial().optional() });

// The parts of each provider's documented payloads that Slipway reads; everything else is ignored.
const githubPush = z.object({ ref: z.string(), after: z.string(), deleted: z.boolean().optional(), head_commit: commit.nullable().optional() });
const repo = z.object({ full_name: z.string() }).nullable().optional();
const githubPullRequest = z.object({
  action: z.string(),
  number: z.number(),
  pull_request: z.object({ title: z.string().optional(), head: z.object({ sha: z.string(), ref: z.string(), repo }), base: z.object({ repo }).optional() }),
});
const gitlabPush = z.object({ ref: z.string(), after: z.string().optional(), checkout_sha: z.string().nullable().optional(), commits: z.array(commit).optional() });
const gitlabMergeRequest = z.object({
  object_attributes: z.object({ iid: z.number(), action: z.string().optional(), oldrev: z.string().optional(), source_branch: z.string(), source_project_id: z.number().optional(), target_project_id: z.number().optional(), last_commit: commit }),
});
const bitbucketTarget = z.object({ hash: z.string(), message: z.string().optional(), author: z.object({ raw: z.string().optional() }).optional() });
const bitbucketPush = z.object({ push: z.object({ changes: z.array(z.object({ new: z.object({ type: z.string(), name: z.string(), target: bitbucketTarget }).nullable() })) }) });
const bitbucketPullRequest = z.object({ pullrequest: z.object({ id: z.number(), title: z.string().optional(), source: z.object({ branch: z.object({ name: z.string() }), commit: z.object({ hash: z.string() }) }) }) });
const giteaPullRequest = githubPullRequest;

/** Turns a verified delivery into an event; a payload that does not have the documented shape throws a PayloadError. */
export function readEvent(provider: WebhookProvider, event: string, body: unknown): ScmEvent {
  switch (provider) {
    case "github":
      if (event === "ping") return { kind: "ping" };
      if (event === "push") return githubStylePush(parse(githubPush, body));
      if (event === "pull_request") return pullRequest(parse(githubPullRequest, body), ["opened", "synchronize", "reopened"]);
      return ignored(event);
    case "gitea":
      if (event === "push") return githubStylePush(parse(githubPush, body));
      if (event === "pull_request") return pullRequest(parse(giteaPullRequest, body), ["opened", "synchronized", "reopened"]);
      return ignored(event);
    case "gitlab":
      if (event === "Push Hook" || event === "Tag Push Hook") return gitlabPushEvent(parse(gitlabPush, body));
      if (event === "Merge Request Hook") return gitlabMergeRequestEvent(parse(gitlabMergeRequest, body));
      return ignored(event);
    case "bitbucket":
      if (event === "repo:push") return bitbucketPushEvent(parse(bitbucketPush, body));
      if (event === "pullrequest:created" || event === "pullrequest:updated") return bitbucketPullRequestEvent(parse(bitbucketPullRequest, body));
      return ignored(event);
  }
}

export class PayloadError extends Error {}

function parse<T extends z.ZodType>(schema: T, body: unknown): z.output<T> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new PayloadError(`the payload does not have the documented shape: ${z.prettifyError(parsed.error).replace(/\n+/g, "; ")}`);
  return parsed.data;
}

const ignored = (event: string): ScmEvent => ({ kind: "ignored", why: `Slipway does not act on ${event} events` });

/** One push to build, checked as the generic webhook checks its body. */
function build(push: PushPayload): ScmEvent {
  const checked = pushPayloadSchema.safeParse(push);
  if (!checked.success) throw new PayloadError(`the payload names no buildable ref and commit: ${z.prettifyError(checked.error).replace(/\n+/g, "; ")}`);
  return { kind: "build", pushes: [checked.data] };
}

const author = (a: { name?: string; email?: string } | undefined) => (a?.name !== undefined && a.email !== undefined ? { author: { name: a.name, email: a.email } } : {});

function githubStylePush(p: z.output<typeof githubPush>): ScmEvent {
  if (p.deleted || ZERO.test(p.after)) return { kind: "ignored", why: `${p.ref} was deleted` };
  const head = p.head_commit ?? undefined;
  return build({ ref: p.ref, commit: p.after, ...(head?.message !== undefined && { message: head.message }), ...author(head?.author) });
}

function pullRequest(p: z.output<typeof githubPullRequest>, actions: string[]): ScmEvent {
  if (!actions.includes(p.action)) return { kind: "ignored", why: `pull request ${p.action}: only ${actions.join(", ")} start builds` };
  const { head, base, title } = p.pull_request;
  // A head whose repository is gone (a deleted fork) or is not the base's came from a fork.
  const fromFork = !head.repo || !base?.repo || head.repo.full_name !== base.repo.full_name;
  return build({ ref: `refs/heads/${head.ref}`, commit: head.sha, ...(title !== undefined && { message: title }), pullRequest: p.number, fromFork });
}

function gitlabPushEvent(p: z.output<typeof gitlabPush>): ScmEvent {
  const sha = p.checkout_sha ?? p.after;
  if (!sha || ZERO.test(sha)) return { kind: "ignored", why: `${p.ref} was deleted` };
  const head = p.commits?.find((c) => c.id === sha);
  return build({ ref: p.ref, commit: sha, ...(head?.message !== undefined && { message: head.message }), ...author(head?.author) });
}

function gitlabMergeRequestEvent(p: z.output<typeof gitlabMergeRequest>): ScmEvent {
  const mr = p.object_attributes;
  // An update without `oldrev` changed the title or labels, not the code.
  const newCode = mr.action === "open" || mr.action === "reopen" || (mr.action === "update" && mr.oldrev !== undefined);
  if (!newCode) return { kind: "ignored", why: `merge request ${mr.action ?? "event"} without new commits` };
  const fromFork = mr.source_project_id === undefined || mr.source_project_id !== mr.target_project_id;
  return build({ ref: `refs/heads/${mr.source_branch}`, commit: mr.last_commit.id, ...(mr.last_commit.message !== undefined && { message: mr.last_commit.message }), ...author(mr.last_commit.author), pullRequest: mr.iid, fromFork });
}

function bitbucketPushEvent(p: z.output<typeof bitbucketPush>): ScmEvent {
  const pushes: PushPayload[] = [];
  for (const change of p.push.changes) {
    if (!change.new) continue;
    const kind = change.new.type === "tag" ? "tags" : change.new.type === "branch" ? "heads" : undefined;
    if (!kind) continue;
    const raw = change.new.target.author?.raw;
    const m = raw ? /^(.*?)\s*<([^>]*)>\s*$/.exec(raw) : null;
    const event = build({ ref: `refs/${kind}/${change.new.name}`, commit: change.new.target.hash, ...(change.new.target.message !== undefined && { message: change.new.target.message }), ...(m && { author: { name: m[1]!, email: m[2]! } }) });
    if (event.kind === "build") pushes.push(...event.pushes);
  }
  return pushes.length ? { kind: "build", pushes } : { kind: "ignored", why: "the push only deleted branches or tags" };
}

function bitbucketPullRequestEvent(p: z.output<typeof bitbucketPullRequest>): ScmEvent {
  const pr = p.pullrequest;
  // Bitbucket names the commit by a 12-character prefix, which cannot pin what is built.
  if (!/^[0-9a-f]{40}$/.test(pr.source.commit.hash)) return { kind: "ignored", why: `pull request ${pr.id}: Bitbucket sends a shortened commit id; its pushes to ${pr.source.branch.name} are built instead` };
  return build({ ref: `refs/heads/${pr.source.branch.name}`, commit: pr.source.commit.hash, ...(pr.title !== undefined && { message: pr.title }), pullRequest: pr.id });
}
