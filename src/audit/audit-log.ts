import { createHmac, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import type { RequestContext } from "../auth/permissions.js";
import type { Executor, Store, Tx } from "../store/database.js";
import type { AuditLogTable } from "../store/schema.js";

export const auditActions = [
  "auth.signin",
  "auth.signin_failed",
  "auth.signout",
  "auth.signup",
  "auth.email_verified",
  "auth.password_changed",
  "auth.profile_changed",
  "auth.2fa_enabled",
  "auth.2fa_disabled",
  "auth.recovery_code_used",
  "token.created",
  "token.revoked",
  "user.created",
  "org.created",
  "org.updated",
  "org.member_invited",
  "org.member_added",
  "org.role_changed",
  "org.member_removed",
  "project.created",
  "project.updated",
  "project.deleted",
  "project.assignment_added",
  "project.assignment_removed",
  "project.deploy_key_regenerated",
  "project.known_hosts_changed",
  "project.known_hosts_pinned",
  "project.known_hosts_confirmed",
  "project.badge_regenerated",
  "project.env_file_decrypted",
  "project.webhook_secret_regenerated",
  "project.repository_linked",
  "project.repository_unlinked",
  "project.polling_changed",
  "scm.connected",
  "scm.disconnected",
  "webhook.accepted",
  "webhook.rejected",
  "build.step_approved",
  "runner.registered",
  "runner.removed",
  "secret.set",
  "secret.deleted",
  "crypto.master_key_rotated",
  "auth.ssh_key_added",
  "auth.ssh_key_removed",
  "workspace.opened",
  "workspace.ssh_session",
  "workspace.snapshot_created",
  "workspace.snapshot_deleted",
  "workspace.sharing_changed",
  "workspace.join_requested",
  "workspace.guest_approved",
  "workspace.guest_denied",
  "workspace.deleted",
] as const;
export type AuditAction = (typeof auditActions)[number];

export interface AuditEntry {
  action: AuditAction;
  actorId?: string | null;
  /** How the actor is named in the log: an email, "cli" or "anonymous". */
  actor: string;
  orgId?: string | null;
  target?: string | null;
  ip?: string | null;
  details?: Record<string, unknown>;
}

/** Who did something, as an entry names them. */
export type AuditActor = Pick<AuditEntry, "actorId" | "actor" | "ip">;

/** The actor fields of an entry, taken from the caller of the operation. */
export function actorOf(ctx: RequestContext): AuditActor {
  return { actorId: ctx.principal.userId, actor: ctx.principal.email, ip: ctx.ip };
}

export interface AuditRow {
  seq: number;
  at: string;
  actorId: string | null;
  actor: string;
  orgId: string | null;
  action: string;
  target: string | null;
  ip: string | null;
  details: Record<string, unknown>;
  hash: string;
}

/** An entry as an organisation's audit log shows it. */
export const auditEntrySchema = z.object({
  seq: z.number(),
  at: z.string(),
  actorId: z.string().nullable(),
  actor: z.string(),
  action: z.string(),
  target: z.string().nullable(),
  ip: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
});

/** Whether the hash chain holds, as one organisation is told, and when the log was walked to find out. */
export const auditChainSchema = z.object({ verified: z.boolean(), problem: z.string().nullable(), checkedAt: z.string() });

export interface ChainProblem {
  seq: number;
  /** The organisation of the row that breaks the chain, as the row says (null for a deleted row). */
  orgId: string | null;
  problem: "edited" | "missing" | "out_of_order";
  message: string;
}

const GENESIS = "0".repeat(64);
/** Rows read at a time while verifying, so a long log is walked in bounded memory. */
const VERIFY_BATCH = 1000;
/** At most this many problems are described to an organisation; the CLI lists them all. */
const DESCRIBED_PROBLEMS = 5;

/**
 * The tamper-evident audit log: each row carries an HMAC over its own fields and the previous
 * row's hash. The HMAC key is derived from the server's data key, which only the master key
 * unwraps, so someone who can change the database but lacks the master key cannot edit, remove
 * or move a row without `slipway admin audit verify` naming it.
 */
/** One walk of the chain: when it began (rows written later may not be in it) and what it found. */
interface Walk {
  at: string;
  rows: number;
  problems: ChainProblem[];
}

export class AuditLog {
  private walking?: Promise<Walk>;
  private lastWalk?: Walk;

  constructor(
    private readonly store: Store,
    private readonly key: Buffer,
  ) {}

  /** Appends inside the caller's transaction when given one, so the entry commits with the action. */
  async record(entry: AuditEntry, tx?: Tx): Promise<void> {
    if (tx) return this.append(tx, entry);
    await this.store.db.transaction().execute((t) => this.append(t, entry));
  }

  private async append(tx: Tx, entry: AuditEntry): Promise<void> {
    await this.store.lock(tx, "audit_log");
    const last = await tx.selectFrom("audit_log").select(["seq", "hash"]).orderBy("seq", "desc").limit(1).executeTakeFirst();
    const row: Omit<AuditLogTable, "hash"> = {
      seq: (last ? Number(last.seq) : 0) + 1,
      at: new Date().toISOString(),
      actor_id: entry.actorId ?? null,
      actor: entry.actor,
      org_id: entry.orgId ?? null,
      action: entry.action,
      target: entry.target ?? null,
      ip: entry.ip ?? null,
      details: JSON.stringify(entry.details ?? {}),
      prev_hash: last?.hash ?? GENESIS,
    };
    await tx.insertInto("audit_log").values({ ...row, hash: this.hashOf(row) }).execute();
  }

  /** `since` and `until` are ISO times (at and before); rows store theirs as toISOString() writes them, so they compare as text. */
  async list(ex: Executor, filter: { orgId: string; before?: number; limit: number; action?: string; actorId?: string; since?: string; until?: string }): Promise<AuditRow[]> {
    let q = ex.selectFrom("audit_log").selectAll().where("org_id", "=", filter.orgId);
    if (filter.before !== undefined) q = q.where("seq", "<", filter.before);
    if (filter.action) q = q.where("action", "=", filter.action);
    if (filter.actorId) q = q.where("actor_id", "=", filter.actorId);
    if (filter.since) q = q.where("at", ">=", new Date(filter.since).toISOString());
    if (filter.until) q = q.where("at", "<=", new Date(filter.until).toISOString());
    const rows = await q.orderBy("seq", "desc").limit(filter.limit).execute();
    return rows.map((r) => ({
      seq: Number(r.seq),
      at: r.at,
      actorId: r.actor_id,
      actor: r.actor,
      orgId: r.org_id,
      action: r.action,
      target: r.target,
      ip: r.ip,
      details: JSON.parse(r.details) as Record<string, unknown>,
      hash: r.hash,
    }));
  }

  /** Walks the whole chain; returns every row that breaks it (empty when intact). */
  async verify(): Promise<{ rows: number; problems: ChainProblem[] }> {
    const { rows, problems } = await this.walked(0);
    return { rows, problems };
  }

  /**
   * The last walk if it began less than `maxAgeMs` ago, else a new one. Callers that ask while a
   * walk is under way share it: the answer is the same for all, and the work is the whole log's.
   */
  private walked(maxAgeMs: number): Promise<Walk> {
    const last = this.lastWalk;
    if (last && Date.now() - Date.parse(last.at) < maxAgeMs) return Promise.resolve(last);
    this.walking ??= this.walk()
      .then((walk) => (this.lastWalk = walk))
      .finally(() => {
        this.walking = undefined;
      });
    return this.walking;
  }

  private async walk(): Promise<Walk> {
    const at = new Date().toISOString();
    const problems: ChainProblem[] = [];
    let prevHash = GENESIS;
    let expectedSeq = 1;
    let rows = 0;
    for (let after = 0; ; ) {
      const batch = await this.store.db.selectFrom("audit_log").selectAll().where("seq", ">", after).orderBy("seq", "asc").limit(VERIFY_BATCH).execute();
      for (const r of batch) {
        const seq = Number(r.seq);
        const { hash, ...fields } = r;
        const recomputed = this.hashOf({ ...fields, seq });
        if (!sameHex(recomputed, hash)) {
          problems.push({ seq, orgId: r.org_id, problem: "edited", message: `row ${seq} (${r.action}) was changed after it was written` });
        } else if (seq !== expectedSeq) {
          problems.push({
            seq,
            orgId: null,
            problem: "missing",
            message: `row${seq - expectedSeq > 1 ? `s ${expectedSeq}-${seq - 1}` : ` ${expectedSeq}`} before row ${seq} were deleted`,
          });
        } else if (!sameHex(r.prev_hash, prevHash)) {
          problems.push({ seq, orgId: r.org_id, problem: "out_of_order", message: `row ${seq} (${r.action}) does not follow row ${seq - 1}: rows were reordered or replaced` });
        }
        prevHash = hash;
        expectedSeq = seq + 1;
        after = seq;
      }
      rows += batch.length;
      if (batch.length < VERIFY_BATCH) return { at, rows, problems };
    }
  }

  /**
   * The chain as one organisation's admins may see it. The chain runs through every
   * organisation's rows, so any break counts; but rows of other organisations are only counted,
   * never described. Deleted rows belong to no one the log can still name: they are described.
   * Any user can make an organisation and ask, so a walk that began less than `maxAgeMs` ago answers.
   */
  async verifyFor(orgId: string, maxAgeMs = 0): Promise<z.infer<typeof auditChainSchema>> {
    const { at: checkedAt, problems } = await this.walked(maxAgeMs);
    if (problems.length === 0) return { verified: true, problem: null, checkedAt };
    const ours = problems.filter((p) => p.problem === "missing" || p.orgId === orgId);
    const others = problems.length - ours.length;
    const said = ours.slice(0, DESCRIBED_PROBLEMS).map((p) => p.message);
    if (ours.length > DESCRIBED_PROBLEMS) said.push(`${ours.length - DESCRIBED_PROBLEMS} more problem(s) like these`);
    if (others > 0) said.push(`${others} problem(s) in other organizations' rows`);
    return { verified: false, problem: `The audit log was tampered with: ${said.join("; ")}. An instance administrator can list every problem with \`slipway admin audit verify\`.`, checkedAt };
  }

  private hashOf(row: Omit<AuditLogTable, "hash">): string {
    const canonical = JSON.stringify([
      Number(row.seq),
      row.at,
      row.actor_id,
      row.actor,
      row.org_id,
      row.action,
      row.target,
      row.ip,
      row.details,
      row.prev_hash,
    ]);
    return createHmac("sha256", this.key).update(canonical).digest("hex");
  }
}

function sameHex(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}
