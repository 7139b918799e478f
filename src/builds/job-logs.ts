import { EventEmitter } from "node:events";
import { sql } from "kysely";
import type { SecretBox } from "../crypto/secret-box.js";
import type { Store } from "../store/database.js";

export interface LogChunk {
  offset: number;
  data: Buffer;
}

/**
 * A job's output, stored in chunks sealed with its project's key, and told to live readers the
 * moment a chunk is stored. Appends name their offset, so a runner that retries an append after
 * a lost answer never stores a line twice, and a gap is refused rather than papered over.
 */
export class JobLogs {
  private readonly live = new EventEmitter();

  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
  ) {
    this.live.setMaxListeners(0);
  }

  /** Stores `data` at `offset`; returns the log's size afterwards. */
  async append(projectId: string, jobId: string, offset: number, data: Buffer): Promise<number> {
    const owner = { kind: "project", id: projectId } as const;
    const size = await this.store.db.transaction().execute(async (tx) => {
      await this.store.lock(tx, `log:${jobId}`);
      const job = await tx.selectFrom("jobs").select("log_bytes").where("id", "=", jobId).executeTakeFirstOrThrow();
      const have = Number(job.log_bytes);
      if (offset + data.length <= have) return have;
      if (offset !== have) throw new LogGapError(have);
      await tx.insertInto("log_chunks").values({ job_id: jobId, offset, size: data.length, data: await this.box.seal(tx, owner, `log:${jobId}:${offset}`, data) }).execute();
      await tx.updateTable("jobs").set({ log_bytes: have + data.length }).where("id", "=", jobId).execute();
      return have + data.length;
    });
    this.live.emit(jobId, { offset, data } satisfies LogChunk);
    return size;
  }

  async read(projectId: string, jobId: string, from = 0): Promise<LogChunk[]> {
    const owner = { kind: "project", id: projectId } as const;
    const rows = await this.store.db.selectFrom("log_chunks").selectAll().where("job_id", "=", jobId).where(sql<boolean>`${sql.ref("offset")} + ${sql.ref("size")} > ${from}`).orderBy("offset").execute();
    const out: LogChunk[] = [];
    for (const r of rows) {
      const data = await this.box.open(this.store.db, owner, `log:${jobId}:${Number(r.offset)}`, r.data);
      const skip = Math.max(0, from - Number(r.offset));
      out.push({ offset: Number(r.offset) + skip, data: data.subarray(skip) });
    }
    return out;
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
