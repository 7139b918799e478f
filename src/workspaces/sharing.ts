import { EventEmitter } from "node:events";
import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import { AppError, conflict, notFound } from "../errors.js";
import type { Executor, Store } from "../store/database.js";
import { now } from "../store/ids.js";

export const guestStates = ["pending", "approved", "denied"] as const;
export const guestSchema = z.object({ userId: z.string(), name: z.string(), email: z.string(), state: z.enum(guestStates), requestedAt: z.string(), decidedAt: z.string().nullable() });
export type Guest = z.infer<typeof guestSchema>;

/** What a guest's open connection says as it closes when their access ended. */
export const GUEST_ENDED = "your access to this workspace ended: its owner stopped sharing it or sent you away";

/**
 * P18: sharing a running workspace. Off by default; its owner turns it on (unless the
 * organisation forbids it); someone with the link asks to join; the owner approves or denies each
 * one. Approved guests reach its terminals and private ports until sharing goes off or the
 * workspace stops. Every step is audited.
 */
export class Sharing {
  private readonly ended = new EventEmitter<{ ended: [workspaceId: string, userIds: string[]] }>().setMaxListeners(0);

  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
  ) {}

  /**
   * Calls `listener` whenever guests lose their access (denied, or sharing ended), so that what
   * they have open (terminals, SSH sessions, relayed sockets) closes at once, not at their next
   * request. Returns what stops listening.
   */
  onGuestsEnded(listener: (workspaceId: string, userIds: string[]) => void): () => void {
    // One listener that throws must not keep the others from closing what they hold.
    const guarded = (workspaceId: string, userIds: string[]) => {
      try {
        listener(workspaceId, userIds);
      } catch {
        // Nothing to do: the listener's own connection stays as it is.
      }
    };
    this.ended.on("ended", guarded);
    return () => this.ended.off("ended", guarded);
  }

  /** onGuestsEnded for one guest of one workspace. */
  onAccessEnded(workspaceId: string, userId: string, end: () => void): () => void {
    return this.onGuestsEnded((id, userIds) => id === workspaceId && userIds.includes(userId) && end());
  }

  /** Removes every guest of a workspace, naming those who were in. */
  private async dropGuests(tx: Executor, workspaceId: string): Promise<string[]> {
    const approved = await tx.selectFrom("workspace_guests").select("user_id").where("workspace_id", "=", workspaceId).where("state", "=", "approved").execute();
    await tx.deleteFrom("workspace_guests").where("workspace_id", "=", workspaceId).execute();
    return approved.map((r) => r.user_id);
  }

  async setShared(ctx: RequestContext, workspace: { id: string; orgId: string }, shared: boolean): Promise<void> {
    if (shared) {
      const org = await this.store.db.selectFrom("organizations").select("workspace_sharing").where("id", "=", workspace.orgId).executeTakeFirst();
      if (Number(org?.workspace_sharing) !== 1) throw new AppError(403, "sharing_forbidden", "your organisation does not allow sharing workspaces; an owner or admin can allow it (workspaceSharing in PATCH /api/v1/orgs/<id>)");
    }
    const dropped = await this.store.db.transaction().execute(async (tx) => {
      await tx.updateTable("workspaces").set({ shared: shared ? 1 : 0 }).where("id", "=", workspace.id).execute();
      await this.audit.record({ action: "workspace.sharing_changed", ...actorOf(ctx), orgId: workspace.orgId, target: workspace.id, details: { shared } }, tx);
      // Turning it off ends every guest's access at once; turning it on again starts from none.
      return shared ? [] : await this.dropGuests(tx, workspace.id);
    });
    this.ended.emit("ended", workspace.id, dropped);
  }

  /** Ends sharing without a person doing it (the workspace stopped). */
  async end(workspaceId: string): Promise<void> {
    const dropped = await this.store.db.transaction().execute(async (tx) => {
      await tx.updateTable("workspaces").set({ shared: 0 }).where("id", "=", workspaceId).execute();
      return this.dropGuests(tx, workspaceId);
    });
    this.ended.emit("ended", workspaceId, dropped);
  }

  /** Someone with the link asks to join; the owner sees the request. */
  async requestJoin(ctx: RequestContext, workspace: { id: string; orgId: string; ownerId: string; shared: boolean; state: string }): Promise<Guest["state"]> {
    if (!workspace.shared || workspace.state !== "running") throw notFound("shared workspace");
    if (workspace.ownerId === ctx.principal.userId) throw conflict("this is your own workspace");
    const existing = await this.store.db.selectFrom("workspace_guests").select("state").where("workspace_id", "=", workspace.id).where("user_id", "=", ctx.principal.userId).executeTakeFirst();
    if (existing) return existing.state as Guest["state"];
    await this.store.db.transaction().execute(async (tx) => {
      await tx.insertInto("workspace_guests").values({ workspace_id: workspace.id, user_id: ctx.principal.userId, state: "pending", requested_at: now(), decided_at: null }).execute();
      await this.audit.record({ action: "workspace.join_requested", ...actorOf(ctx), orgId: workspace.orgId, target: workspace.id, details: {} }, tx);
    });
    return "pending";
  }

  async guests(workspaceId: string): Promise<Guest[]> {
    const rows = await this.store.db
      .selectFrom("workspace_guests")
      .innerJoin("users", "users.id", "workspace_guests.user_id")
      .select(["workspace_guests.user_id", "users.name", "users.email", "workspace_guests.state", "workspace_guests.requested_at", "workspace_guests.decided_at"])
      .where("workspace_guests.workspace_id", "=", workspaceId)
      .orderBy("workspace_guests.requested_at")
      .execute();
    return rows.map((r) => ({ userId: r.user_id, name: r.name, email: r.email, state: r.state as Guest["state"], requestedAt: r.requested_at, decidedAt: r.decided_at }));
  }

  /** The owner's decision on one request; it can be changed (a guest let in can be sent away). */
  async decide(ctx: RequestContext, workspace: { id: string; orgId: string }, userId: string, approve: boolean): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      const res = await tx.updateTable("workspace_guests").set({ state: approve ? "approved" : "denied", decided_at: now() }).where("workspace_id", "=", workspace.id).where("user_id", "=", userId).executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) throw notFound("join request");
      await this.audit.record({ action: approve ? "workspace.guest_approved" : "workspace.guest_denied", ...actorOf(ctx), orgId: workspace.orgId, target: workspace.id, details: { guest: userId } }, tx);
    });
    if (!approve) this.ended.emit("ended", workspace.id, [userId]);
  }

  /** Whether the user is an approved guest of the workspace while it is shared. */
  async isGuest(workspaceId: string, userId: string): Promise<boolean> {
    const row = await this.store.db
      .selectFrom("workspace_guests")
      .innerJoin("workspaces", "workspaces.id", "workspace_guests.workspace_id")
      .select("workspace_guests.state")
      .where("workspace_guests.workspace_id", "=", workspaceId)
      .where("workspace_guests.user_id", "=", userId)
      .where("workspaces.shared", "=", 1)
      .executeTakeFirst();
    return row?.state === "approved";
  }
}
