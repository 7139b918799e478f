import { z } from "zod";
import { commitIdSchema, gitRefSchema } from "../builds/events.js";
import { KNOWN_HOSTS_MAX, knownHostsSchema } from "../projects/known-hosts.js";

/** Heads and tags one poll may report; a repository with more is told to use the signed webhook. */
export const MAX_POLLED_REFS = 5_000;
/** Room for MAX_POLLED_REFS of the longest refs as JSON, and the host keys. */
export const POLL_REPORT_BODY_LIMIT = MAX_POLLED_REFS * 320 + KNOWN_HOSTS_MAX * 2;

const refsSchema = z.record(gitRefSchema, commitIdSchema).refine((r) => Object.keys(r).length <= MAX_POLLED_REFS, `at most ${MAX_POLLED_REFS} refs`);

/** What a runner found: the repository's heads and tags (commit each points at), or why it could not list them. */
export const pollResultSchema = z.union([z.object({ refs: refsSchema }).strict(), z.object({ error: z.string().min(1).max(2000) }).strict()]);
export type PollResult = z.infer<typeof pollResultSchema>;

/** The report's body: the result, and the host keys ssh saw when none were pinned (trust on first use). */
export const pollReportSchema = z.union([z.object({ refs: refsSchema, knownHosts: knownHostsSchema.optional() }).strict(), pollResultSchema.options[1]]);
export type PollReport = z.infer<typeof pollReportSchema>;
