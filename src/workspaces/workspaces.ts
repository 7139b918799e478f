import { EventEmitter } from "node:events";
import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import type { SecretBox } from "../crypto/secret-box.js";
import { conflict, notFound } from "../errors.js";
import { problemSchema, type Problem } from "../pipeline/problems.js";
import { workspaceConfigSchema, type PortVisibility, type WorkspaceConfig } from "../pipeline/workspace-model.js";
import type { Executor, Store } from "../store/database.js";
import { newId, now } from "../store/ids.js";
import type { WorkspacesTable } from "../store/schema.js";

export const workspaceStates = ["pending", "creating", "initializing", "running", "stopping", "stopped", "failed"] as const;
export type WorkspaceState = (typeof workspaceStates)[number];

/** Where each state may go. A stopped or failed workspace starts again from pending. */
const NEXT: Record<WorkspaceState, readonly WorkspaceState[]> = {
  pending: ["creating", "failed"],
  creating: ["initializing", "stopping", "failed"],
  initializing: ["running", "stopping", "failed"],
  running: ["stopping", "failed"],
  // Back to running when its archive could not be written: the sandbox still holds the work.
  stopping: ["stopped", "running", "failed"],
  stopped: ["pending"],
  failed: ["pending"],
};

/** States in which a sandbox may exist: a server that starts finds none of them alive. */
export const LIVE_STATES: readonly WorkspaceState[] = ["creating", "initializing", "running", "stopping"];

export const workspaceSchema = z.object({
  id: z.string(),
  ownerId: z.string(),
  projectId: z.string(),
  repositoryUrl: z.string(),
  ref: z.string().nullable(),
  commit: z.string().nullable(),
  state: z.enum(workspaceStates),
  reason: z.string().nullable().describe("Why it failed or stopped, in words that say what to do next"),
  config: workspaceConfigSchema.nullable().describe("The workspace config it was opened with, once read from the repository"),
  problems: z.array(problemSchema).describe("Findings about the repository's workspace config (file:line:col)"),
  initialized: z.boolean().describe("Whether the tasks' init commands have run (they run on the first start only)"),
  archiveBytes: z.number().nullable().describe("Size of the encrypted /workspace archive kept while stopped"),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  stoppedAt: z.string().nullable(),
  lastActivityAt: z.string(),
  shared: z.boolean().describe("Whether its owner shares it: others may ask to join while it runs"),
  extended: z.boolean().describe("Whether its owner extended its current run (once per start)"),
  pushAccess: z.boolean().describe("Whether git in it may push to the repository with the project's deploy key (only this repository's git config names the key)"),
});
export type Workspace = z.infer<typeof workspaceSchema>;

export const transitionSchema = z.object({ state: z.enum(workspaceStates), reason: z.string().nullable(), at: z.string() });
export type Transition = z.infer<typeof transitionSchema>;

/** What a transition may record beside the state. */
export interface TransitionFacts {
  reason?: string | null;
  config?: WorkspaceConfig;
  problems?: Problem[];
  commit?: string;
  initialized?: boolean;
  archive?: { name: string; bytes: number } | null;
}

const toWorkspace = (r: WorkspacesTable): Workspace => ({
  id: r.id,
  ownerId: r.owner_id,
  projectId: r.project_id,
  repositoryUrl: r.repository_url,
  ref: r.ref,
  commit: r.commit_sha,
  state: r.state as WorkspaceState,
  reason: r.reason,
  config: r.config === null ? null : workspaceConfigSchema.parse(JSON.parse(r.config)),
  problems: z.array(problemSchema).parse(JSON.parse(r.problems)),
  initialized: r.initialized === 1,
  archiveBytes: r.archive_bytes,
  createdAt: r.created_at,
  startedAt: r.started_at,
  stoppedAt: r.stopped_at,
  lastActivityAt: r.last_activity_at,
  shared: r.shared === 1,
  extended: r.extended === 1,
  pushAccess: r.push_access === 1,
});

/**
 * Workspace records and their state machine: every change of state is checked against the
 * state it comes from (two stops at once: one wins), recorded with its time, and announced.
 */
export class Workspaces {
  private readonly changed = new EventEmitter();

  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly audit: AuditLog,
  ) {
    this.changed.setMaxListeners(0);
  }

  /**
   * A new workspace of a project's repository, pending, with its own data key; `from` gives it
   * the config and the (already sealed with `seal`) archive of a snapshot to start from.
   */
  async create(
    ctx: RequestContext,
    project: { id: string; orgId: string; repositoryUrl: string },
    ref: string | null,
    from?: { config: WorkspaceConfig | null; commit: string | null; snapshot: string; seal: (key: Buffer, workspaceId: string) => Promise<{ name: string; bytes: number }> },
    pushAccess = false,
  ): Promise<Workspace> {
    const at = now();
    const row: WorkspacesTable = {
      id: newId("ws"),
      owner_id: ctx.principal.userId,
      project_id: project.id,
      repository_url: project.repositoryUrl,
      ref,
      commit_sha: from?.commit ?? null,
      state: "pending",
      reason: null,
      config: from?.config ? JSON.stringify(from.config) : null,
      problems: "[]",
      initialized: from ? 1 : 0,
      archive: null,
      archive_bytes: null,
      created_at: at,
      started_at: null,
      stopped_at: null,
      last_activity_at: at,
      shared: 0,
      extended: 0,
      push_access: pushAccess ? 1 : 0,
    };
    await this.store.db.transaction().execute(async (tx) => {
      await tx.insertInto("workspaces").values(row).execute();
      await tx.insertInto("workspace_transitions").values({ workspace_id: row.id, seq: 1, state: "pending", reason: null, at }).execute();
      await this.box.createDataKey(tx, { kind: "workspace", id: row.id });
      await this.audit.record({ action: "workspace.opened", ...actorOf(ctx), orgId: project.orgId, target: row.id, details: { project: project.id, ref, ...(from && { snapshot: from.snapshot }), ...(pushAccess && { pushAccess }) } }, tx);
    });
    if (from) {
      // The snapshot's content, sealed anew with this workspace's own key, is what its first start restores.
      try {
        const archive = await from.seal(await this.key(row.id, "archive"), row.id);
        await this.store.db.updateTable("workspaces").set({ archive: archive.name, archive_bytes: archive.bytes }).where("id", "=", row.id).execute();
        return { ...toWorkspace(row), archiveBytes: archive.bytes };
      } catch (err) {
        await this.store.db.transaction().execute(async (tx) => {
          await tx.deleteFrom("workspaces").where("id", "=", row.id).execute();
          await this.box.destroyDataKey(tx, { kind: "workspace", id: row.id });
        });
        throw err;
      }
    }
    return toWorkspace(row);
  }

  async find(ex: Executor, id: string): Promise<Workspace | undefined> {
    const row = await ex.selectFrom("workspaces").selectAll().where("id", "=", id).executeTakeFirst();
    return row && toWorkspace(row);
  }

  async get(id: string): Promise<Workspace> {
    const ws = await this.find(this.store.db, id);
    if (!ws) throw notFound("workspace");
    return ws;
  }

  /** Whose it is and of which project: what access to it is decided by. */
  async ownership(id: string): Promise<{ ownerId: string; projectId: string } | undefined> {
    const row = await this.store.db.selectFrom("workspaces").select(["owner_id", "project_id"]).where("id", "=", id).executeTakeFirst();
    return row && { ownerId: row.owner_id, projectId: row.project_id };
  }

  async listFor(userId: string): Promise<Workspace[]> {
    const rows = await this.store.db.selectFrom("workspaces").selectAll().where("owner_id", "=", userId).orderBy("created_at", "desc").execute();
    return rows.map(toWorkspace);
  }

  async listIn(states: readonly WorkspaceState[]): Promise<Workspace[]> {
    const rows = await this.store.db.selectFrom("workspaces").selectAll().where("state", "in", [...states]).execute();
    return rows.map(toWorkspace);
  }

  async transitions(id: string): Promise<Transition[]> {
    const rows = await this.store.db.selectFrom("workspace_transitions").select(["state", "reason", "at"]).where("workspace_id", "=", id).orderBy("seq").execute();
    return rows.map((r) => ({ state: r.state as WorkspaceState, reason: r.reason, at: r.at }));
  }

  /**
   * Moves a workspace from one of `from` to `to`; refused (409) when it is elsewhere by now.
   * Returns the workspace as it is after the move.
   */
  async transition(id: string, from: readonly WorkspaceState[], to: WorkspaceState, facts: TransitionFacts = {}): Promise<Workspace> {
    const allowed = from.filter((s) => NEXT[s].includes(to));
    if (allowed.length === 0) throw new Error(`no workspace goes from ${from.join("/")} to ${to}`);
    const at = now();
    const updated = await this.store.db.transaction().execute(async (tx) => {
      const res = await tx
        .updateTable("workspaces")
        .set({
          state: to,
          reason: facts.reason ?? null,
          ...(facts.config && { config: JSON.stringify(facts.config) }),
          ...(facts.problems && { problems: JSON.stringify(facts.problems) }),
          ...(facts.commit && { commit_sha: facts.commit }),
          ...(facts.initialized !== undefined && { initialized: facts.initialized ? 1 : 0 }),
          ...(facts.archive !== undefined && { archive: facts.archive?.name ?? null, archive_bytes: facts.archive?.bytes ?? null }),
          // A new start (not a failed stop going back to running) may be extended once again.
          ...(to === "running" && !allowed.includes("stopping") && { started_at: at, last_activity_at: at, extended: 0 }),
          ...(to === "stopped" && { stopped_at: at }),
        })
        .where("id", "=", id)
        .where("state", "in", [...allowed])
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) return undefined;
      const last = await tx.selectFrom("workspace_transitions").select((eb) => eb.fn.max("seq").as("seq")).where("workspace_id", "=", id).executeTakeFirst();
      await tx.insertInto("workspace_transitions").values({ workspace_id: id, seq: Number(last?.seq ?? 0) + 1, state: to, reason: facts.reason ?? null, at }).execute();
      return this.find(tx, id);
    });
    if (!updated) {
      const current = await this.find(this.store.db, id);
      if (!current) throw notFound("workspace");
      throw conflict(`the workspace is ${current.state}; it cannot become ${to} now`);
    }
    this.changed.emit("change", updated);
    return updated;
  }

  /** The visibilities its owner gave its ports. */
  async portVisibilities(id: string): Promise<Map<number, PortVisibility>> {
    const rows = await this.store.db.selectFrom("workspace_ports").select(["port", "visibility"]).where("workspace_id", "=", id).execute();
    return new Map(rows.map((r) => [r.port, r.visibility as PortVisibility]));
  }

  async setPortVisibility(id: string, port: number, visibility: PortVisibility): Promise<void> {
    await this.store.db
      .insertInto("workspace_ports")
      .values({ workspace_id: id, port, visibility })
      .onConflict((oc) => oc.columns(["workspace_id", "port"]).doUpdateSet({ visibility }))
      .execute();
  }

  /** Extends the current run of a running workspace, once per start. */
  async extend(id: string): Promise<void> {
    const res = await this.store.db.updateTable("workspaces").set({ extended: 1 }).where("id", "=", id).where("state", "=", "running").where("extended", "=", 0).executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) throw conflict("a workspace is extended once per start, while it runs; stop and start it for a new run");
  }

  /** Marks use (terminal input, SSH, the port proxy): what the inactivity timeout counts from. */
  async touch(id: string): Promise<void> {
    await this.store.db.updateTable("workspaces").set({ last_activity_at: now() }).where("id", "=", id).execute();
  }

  /** The name of the stored archive of /workspace, if there is one. */
  async archiveOf(id: string): Promise<string | null> {
    return (await this.store.db.selectFrom("workspaces").select("archive").where("id", "=", id).executeTakeFirst())?.archive ?? null;
  }

  /** The workspace's key for one purpose (its archives): gone, with its data key, when it is deleted. */
  key(id: string, purpose: string): Promise<Buffer> {
    return this.box.ownerKey(this.store.db, { kind: "workspace", id }, purpose);
  }

  onChange(listener: (ws: Workspace) => void): () => void {
    this.changed.on("change", listener);
    return () => this.changed.off("change", listener);
  }

  /**
   * Deletes the record and its data key in one transaction: the archive and snapshots, sealed
   * under that key, can never be opened again, even where a copy of them survives.
   */
  async delete(ctx: RequestContext, id: string, orgId: string | null): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("workspaces").where("id", "=", id).execute();
      await this.box.destroyDataKey(tx, { kind: "workspace", id });
      await this.audit.record({ action: "workspace.deleted", ...actorOf(ctx), orgId, target: id, details: {} }, tx);
    });
  }
}
