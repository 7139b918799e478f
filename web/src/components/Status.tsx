import type { BuildStatus } from "../types";

const words: Record<string, string> = { "waiting-for-approval": "waiting for approval" };

/** A build's, job's or step's status as a coloured label that also says it in words. */
export function Status({ status }: { status: BuildStatus | string }) {
  return <span className={`status status-${status}`}>{words[status] ?? status}</span>;
}

export const isLive = (status: string) => status === "queued" || status === "running";
