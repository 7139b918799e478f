import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import { AppError, conflict, notFound } from "../errors.js";
import type { Store } from "../store/database.js";
import { newId, now } from "../store/ids.js";
import { archiveName, resealArchive, saveWorkspace } from "./archive.js";
import type { ArchiveStorage } from "./archive-storage.js";
import type { WorkspaceHost } from "./workspace-host.js";
import type { Workspace, Workspaces } from "./workspaces.js";

export const snapshotSchema = z.object({
  id: z.string().describe("Also the snapshot's link: /#snapshot/<id>"),
  workspaceId: z.string(),
  projectId: z.string(),
  name: z.string(),
  bytes: z.number(),
  createdAt: z.string(),
});
export type Snapshot = z.infer<typeof snapshotSchema>;

/**
 * Snapshots: immutable copies of a workspace's /workspace, sealed with the workspace's key (so
 * they go when it is deleted), up to a limit per workspace. Opening one makes a new workspace for
 * the opener, who must be able to open workspaces of its project (P18); deleting one revokes its link.
 */
export class Snapshots {
  constructor(
    private readonly store: Store,
    private readonly workspaces: Workspaces,
    private readonly host: WorkspaceHost,
    private readonly storage: ArchiveStorage,
    private readonly audit: AuditLog,
    private readonly limit: number,
  ) {}

  async list(workspaceId: string): Promise<Snapshot[]> {
    const ws = await this.workspaces.get(workspaceId);
    const rows = await this.store.db.selectFrom("workspace_snapshots").selectAll().where("workspace_id", "=", workspaceId).orderBy("created_at").execute();
    return rows.map((r) => ({ id: r.id, workspaceId: r.workspace_id, projectId: ws.projectId, name: r.name, bytes: r.bytes, createdAt: r.created_at }));
  }

  /** The snapshot, with its workspace; not found once deleted (its link is revoked). */
  async get(id: string): Promise<{ snapshot: Snapshot; workspace: Workspace; object: string }> {
    const row = await this.store.db.selectFrom("workspace_snapshots").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row) throw notFound("snapshot");
    const workspace = await this.workspaces.get(row.workspace_id);
    return { snapshot: { id: row.id, workspaceId: row.workspace_id, projectId: workspace.projectId, name: row.name, bytes: row.bytes, createdAt: row.created_at }, workspace, object: row.object };
  }

  /** A snapshot of a running workspace as it is now, or of a stopped one as it was left. */
  async create(ctx: RequestContext, orgId: string | null, workspaceId: string, name: string | undefined): Promise<Snapshot> {
    const ws = await this.workspaces.get(workspaceId);
    const taken = (await this.list(workspaceId)).length;
    if (taken >= this.limit) throw conflict(`this workspace has ${taken} snapshots, the most it may keep; delete one first`);
    const key = await this.workspaces.key(workspaceId, "archive");
    const object = archiveName(workspaceId);
    const sandbox = ws.state === "running" ? this.host.sandboxOf(workspaceId) : undefined;
    const archive = await this.workspaces.archiveOf(workspaceId);
    let bytes: number;
    if (sandbox) bytes = await saveWorkspace(sandbox, key, this.storage, object);
    else if (ws.state === "stopped" && archive) bytes = await resealArchive(this.storage, { key, name: archive }, { key, name: object });
    else throw conflict(`the workspace is ${ws.state}${ws.state === "running" ? " elsewhere" : ""}; a snapshot is taken of a workspace running here, or stopped`);
    const row = { id: newId("snap"), workspace_id: workspaceId, name: !name || name === "snapshot" ? `snapshot ${taken + 1}` : name, object, bytes, created_at: now() };
    await this.store.db.transaction().execute(async (tx) => {
      await tx.insertInto("workspace_snapshots").values(row).execute();
      await this.audit.record({ action: "workspace.snapshot_created", ...actorOf(ctx), orgId, target: workspaceId, details: { snapshot: row.id, bytes } }, tx);
    });
    return { id: row.id, workspaceId, projectId: ws.projectId, name: row.name, bytes, createdAt: row.created_at };
  }

  /** Deletes a snapshot and its stored copy: its link stops working at once. */
  async delete(ctx: RequestContext, orgId: string | null, workspaceId: string, id: string): Promise<void> {
    const row = await this.store.db.selectFrom("workspace_snapshots").select("object").where("id", "=", id).where("workspace_id", "=", workspaceId).executeTakeFirst();
    if (!row) throw notFound("snapshot");
    await this.store.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("workspace_snapshots").where("id", "=", id).execute();
      await this.audit.record({ action: "workspace.snapshot_deleted", ...actorOf(ctx), orgId, target: workspaceId, details: { snapshot: id } }, tx);
    });
    await this.storage.delete(row.object);
  }

  /** The stored copies of a workspace's snapshots, to remove with it. */
  async objectsOf(workspaceId: string): Promise<string[]> {
    return (await this.store.db.selectFrom("workspace_snapshots").select("object").where("workspace_id", "=", workspaceId).execute()).map((r) => r.object);
  }

  /**
   * A new workspace for the opener from the snapshot: the caller has checked that they may open
   * workspaces of its project (P18). Its content is sealed again with the new workspace's key.
   */
  async open(ctx: RequestContext, id: string, project: { id: string; orgId: string; repositoryUrl: string }): Promise<Workspace> {
    const { workspace, object } = await this.get(id);
    const sourceKey = await this.workspaces.key(workspace.id, "archive");
    return this.workspaces.create(ctx, project, workspace.ref, {
      config: workspace.config,
      commit: workspace.commit,
      snapshot: id,
      seal: async (key, newId) => {
        const name = archiveName(newId);
        const bytes = await resealArchive(this.storage, { key: sourceKey, name: object }, { key, name }).catch((err: Error) => {
          throw /ENOENT/.test(err.message) ? new AppError(410, "snapshot_missing", "the snapshot's stored copy is gone (its storage was cleared); take a new snapshot") : err;
        });
        return { name, bytes };
      },
    });
  }
}
