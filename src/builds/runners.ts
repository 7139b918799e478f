import { z } from "zod";
import type { AuditActor, AuditLog } from "../audit/audit-log.js";
import { tokenHash } from "../crypto/secret-box.js";
import { notFound } from "../errors.js";
import type { Store } from "../store/database.js";
import { newId, now, randomToken } from "../store/ids.js";

const PREFIX = "slr_";
/** An idle runner asks for work every 25 s at most, so one unseen for a minute is gone. */
const ONLINE_MS = 60_000;

/** A runner as the instance's administrators see it: never its token or the token's hash. */
export const runnerSchema = z.object({ id: z.string(), name: z.string(), createdAt: z.string(), lastSeenAt: z.string().nullable(), online: z.boolean() });
export type RunnerInfo = z.infer<typeof runnerSchema>;

const toInfo = (r: { id: string; name: string; created_at: string; last_seen_at: string | null }): RunnerInfo => ({
  id: r.id,
  name: r.name,
  createdAt: r.created_at,
  lastSeenAt: r.last_seen_at,
  online: r.last_seen_at !== null && Date.now() - Date.parse(r.last_seen_at) < ONLINE_MS,
});

/** Runners and their tokens: a token is shown once at registration and kept only as a hash. */
export class Runners {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
  ) {}

  /** `by` audits the registration; the embedded runner, registered at every start of the server, passes none. */
  async register(name: string, by?: AuditActor): Promise<{ id: string; token: string; runner: RunnerInfo }> {
    const row = { id: newId("run"), name, created_at: now(), last_seen_at: null };
    const token = PREFIX + randomToken();
    await this.store.db.transaction().execute(async (tx) => {
      await tx.insertInto("runners").values({ ...row, token_hash: tokenHash(token) }).execute();
      if (by) await this.audit.record({ action: "runner.registered", ...by, target: row.id, details: { name } }, tx);
    });
    return { id: row.id, token, runner: toInfo(row) };
  }

  async list(): Promise<RunnerInfo[]> {
    const rows = await this.store.db.selectFrom("runners").select(["id", "name", "created_at", "last_seen_at"]).orderBy("created_at").orderBy("id").execute();
    return rows.map(toInfo);
  }

  async resolve(token: string): Promise<string | undefined> {
    if (!token.startsWith(PREFIX) || token.length > 200) return undefined;
    const row = await this.store.db.selectFrom("runners").select(["id", "last_seen_at"]).where("token_hash", "=", tokenHash(token)).executeTakeFirst();
    if (!row) return undefined;
    if (!row.last_seen_at || Date.now() - Date.parse(row.last_seen_at) > 10_000) {
      await this.store.db.updateTable("runners").set({ last_seen_at: now() }).where("id", "=", row.id).execute();
    }
    return row.id;
  }

  /** The server's own embedded runner, at shutdown. */
  async remove(id: string): Promise<void> {
    await this.store.db.deleteFrom("runners").where("id", "=", id).execute();
  }

  /** An administrator's removal: the token stops working with the next request, as the row is gone. */
  async deregister(id: string, by: AuditActor): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      const row = await tx.selectFrom("runners").select("name").where("id", "=", id).executeTakeFirst();
      if (!row) throw notFound("runner");
      await tx.deleteFrom("runners").where("id", "=", id).execute();
      await this.audit.record({ action: "runner.removed", ...by, target: id, details: { name: row.name } }, tx);
    });
  }
}
