import { EventEmitter } from "node:events";
import { sql } from "kysely";
import type { SecretBox } from "../crypto/secret-box.js";
import type { Store } from "../store/database.js";

export interface LogChunk {
  offset: number;
  data: Buffer;
}

/** Rows opened per query when reading a log back: a few MiB at most, however long the log. */
const PAGE_ROWS = 4;

/** The log's last line once it reached its cap: later output is dropped, and the reader learns why and what to change. */
export function truncationNotice(maxBytes: number): Buffer {
  const size = maxBytes % 1024 ** 2 === 0 ? `${maxBytes / 1024 ** 2} MiB` : `${maxBytes} bytes`;
  return Buffer.from(`\n\x1b[0mslipway: log truncated at ${size}: later output of this job is not stored (the job goes on); raise the cap with the maxJobLogBytes setting (SLIPWAY_MAX_JOB_LOG_BYTES)\n`);
}

/**
 * A job's output, stored in chunks sealed with its project's key, and told to live readers the
 * moment a chunk is stored. Appends name their offset, so a runner that retries an append after
 * a lost answer never stores a line twice, and a gap is refused rather than papered over. A log
 * stops at `maxBytes` plus the truncation notice: a log longer than the cap is a truncated one.
 */
export class JobLogs {
  private readonly live = new EventEmitter();
  private readonly notice: Buffer;

  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly maxBytes: number,
  ) {
    this.live.setMaxListeners(0);
    this.notice = truncationNotice(maxBytes);
  }

  /**
   * Stores `data` at `offset`; returns the log's size afterwards and whether it is truncated. Once it
   * is, every append is answered the same and dropped, so a runner is not sent into retries.
   */
  async append(projectId: string, jobId: string, offset: number, data: Buffer): Promise<{ size: number; truncated: boolean }> {
    const owner = { kind: "project", id: projectId } as const;
    const { size, stored } = await this.store.db.transaction().execute(async (tx) => {
      await this.store.lock(tx, `log:${jobId}`);
      const job = await tx.selectFrom("jobs").select("log_bytes").where("id", "=", jobId).executeTakeFirstOrThrow();
      const have = Number(job.log_bytes);
      if (have > this.maxBytes || offset + data.length <= have) return { size: have, stored: undefined };
      if (offset !== have) throw new LogGapError(have);
      const room = this.maxBytes - have;
      const chunk = data.length > room ? Buffer.concat([data.subarray(0, room), this.notice]) : data;
      await tx.insertInto("log_chunks").values({ job_id: jobId, offset, size: chunk.length, data: await this.box.seal(tx, owner, `log:${jobId}:${offset}`, chunk) }).execute();
      await tx.updateTable("jobs").set({ log_bytes: have + chunk.length }).where("id", "=", jobId).execute();
      return { size: have + chunk.length, stored: chunk };
    });
    if (stored) this.live.emit(jobId, { offset, data: stored } satisfies LogChunk);
    return { size, truncated: size > this.maxBytes };
  }

  /** The stored log from byte `from` on, opened a page of chunks at a time, so a long log is never held whole. */
  async *chunks(projectId: string, jobId: string, from = 0): AsyncGenerator<LogChunk> {
    const owner = { kind: "project", id: projectId } as const;
    let at = from;
    for (;;) {
      const rows = await this.store.db.selectFrom("log_chunks").selectAll().where("job_id", "=", jobId).where(sql<boolean>`${sql.ref("offset")} + ${sql.ref("size")} > ${at}`).orderBy("offset").limit(PAGE_ROWS).execute();
      for (const r of rows) {
        const data = await this.box.open(this.store.db, owner, `log:${jobId}:${Number(r.offset)}`, r.data);
        const skip = Math.max(0, at - Number(r.offset));
        yield { offset: Number(r.offset) + skip, data: data.subarray(skip) };
        at = Number(r.offset) + Number(r.size);
      }
      if (rows.length < PAGE_ROWS) return;
    }
  }

  /** Calls `listener` for every chunk stored from now on; returns the unsubscribe function. */
  follow(jobId: string, listener: (chunk: LogChunk) => void): () => void {
    this.live.on(jobId, listener);
    return () => this.live.off(jobId, listener);
  }

  /** Tells followers a job ended, so live streams can close. */
  ended(jobId: string): void {
    this.live.emit(`${jobId}:end`);
  }

  onEnd(jobId: string, listener: () => void): () => void {
    this.live.once(`${jobId}:end`, listener);
    return () => this.live.off(`${jobId}:end`, listener);
  }
}

export class LogGapError extends Error {
  constructor(readonly expected: number) {
    super(`log chunks must follow each other: the next one starts at byte ${expected}`);
  }
}
