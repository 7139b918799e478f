import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext, Role } from "../auth/permissions.js";
import { tokenHash } from "../crypto/secret-box.js";
import { AppError, conflict, forbidden, notFound } from "../errors.js";
import type { Executor, Store } from "../store/database.js";
import { inFuture, newId, now, randomToken } from "../store/ids.js";

export const orgSchema = z.object({
  id: z.string(),
  name: z.string(),
  require2fa: z.boolean(),
  createdAt: z.string(),
  workspaceSharing: z.boolean().describe("Whether members may share their running workspaces with others (each guest approved by the owner)"),
  workspaceIdleMinutes: z.number().nullable().describe("Its workspaces stop after this long unused (null: the server's setting)"),
  workspaceMaxHours: z.number().nullable().describe("Its workspaces stop after running this long (null: the server's setting)"),
});
export type Organization = z.infer<typeof orgSchema>;

export interface Member {
  userId: string;
  role: Role;
  since: string;
}

const INVITATION_TTL_MS = 7 * 24 * 3600 * 1000;

type OrgRow = { id: string; name: string; require_2fa: number; created_at: string; workspace_sharing: number; workspace_idle_minutes: number | null; workspace_max_hours: number | null };

const toOrg = (r: OrgRow): Organization => ({
  id: r.id,
  name: r.name,
  require2fa: Number(r.require_2fa) === 1,
  createdAt: r.created_at,
  workspaceSharing: Number(r.workspace_sharing) === 1,
  workspaceIdleMinutes: r.workspace_idle_minutes === null ? null : Number(r.workspace_idle_minutes),
  workspaceMaxHours: r.workspace_max_hours === null ? null : Number(r.workspace_max_hours),
});

/** Organisations, their members and roles, and invitations to join. */
export class Organizations {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    /** Called in the transaction that ends a user's contractor role in an org, so no project assignment outlives it. */
    private readonly contractorLeft: (tx: Executor, orgId: string, userId: string) => Promise<void>,
  ) {}

  async create(ctx: RequestContext, name: string): Promise<Organization> {
    const org: OrgRow = { id: newId("org"), name, require_2fa: 0, created_at: now(), workspace_sharing: 1, workspace_idle_minutes: null, workspace_max_hours: null };
    await this.store.db.transaction().execute(async (tx) => {
      await tx.insertInto("organizations").values(org).execute();
      await tx.insertInto("memberships").values({ org_id: org.id, user_id: ctx.principal.userId, role: "owner", created_at: org.created_at }).execute();
      await this.audit.record({ action: "org.created", ...actorOf(ctx), orgId: org.id, target: org.id, details: { name } }, tx);
    });
    return toOrg(org);
  }

  async get(id: string): Promise<Organization> {
    const row = await this.store.db.selectFrom("organizations").selectAll().where("id", "=", id).executeTakeFirst();
    if (!row) throw notFound("organization");
    return toOrg(row);
  }

  async listFor(userId: string): Promise<Array<Organization & { role: Role }>> {
    const rows = await this.store.db
      .selectFrom("organizations")
      .innerJoin("memberships", "memberships.org_id", "organizations.id")
      .select(["organizations.id", "organizations.name", "organizations.require_2fa", "organizations.created_at", "organizations.workspace_sharing", "organizations.workspace_idle_minutes", "organizations.workspace_max_hours", "memberships.role"])
      .where("memberships.user_id", "=", userId)
      .orderBy("organizations.created_at")
      .execute();
    return rows.map((r) => ({ ...toOrg(r), role: r.role as Role }));
  }

  async update(ctx: RequestContext, id: string, patch: { name?: string; require2fa?: boolean; workspaceSharing?: boolean; workspaceIdleMinutes?: number | null; workspaceMaxHours?: number | null }): Promise<Organization> {
    if (patch.require2fa && !ctx.principal.twoFactor) {
      throw new AppError(409, "2fa_required", "turn on two-factor authentication for your own account first, or requiring it would lock you out");
    }
    await this.store.db.transaction().execute(async (tx) => {
      await tx
        .updateTable("organizations")
        .set({
          ...(patch.name !== undefined && { name: patch.name }),
          ...(patch.require2fa !== undefined && { require_2fa: patch.require2fa ? 1 : 0 }),
          ...(patch.workspaceSharing !== undefined && { workspace_sharing: patch.workspaceSharing ? 1 : 0 }),
          ...(patch.workspaceIdleMinutes !== undefined && { workspace_idle_minutes: patch.workspaceIdleMinutes }),
          ...(patch.workspaceMaxHours !== undefined && { workspace_max_hours: patch.workspaceMaxHours }),
        })
        .where("id", "=", id)
        .execute();
      await this.audit.record({ action: "org.updated", ...actorOf(ctx), orgId: id, target: id, details: patch }, tx);
    });
    return this.get(id);
  }

  async roleOf(ex: Executor, orgId: string, userId: string): Promise<Role | undefined> {
    const row = await ex.selectFrom("memberships").select("role").where("org_id", "=", orgId).where("user_id", "=", userId).executeTakeFirst();
    return row?.role as Role | undefined;
  }

  async members(orgId: string): Promise<Member[]> {
    const rows = await this.store.db.selectFrom("memberships").selectAll().where("org_id", "=", orgId).orderBy("created_at").execute();
    return rows.map((r) => ({ userId: r.user_id, role: r.role as Role, since: r.created_at }));
  }

  /**
   * Invitations go by email and are accepted by the invitee signed in with that address, so
   * inviting never tells the inviter whether an account exists.
   */
  async invite(ctx: RequestContext, orgId: string, email: string, role: Role): Promise<{ token: string; expiresAt: string }> {
    await this.assertMayGrant(this.store.db, ctx, orgId, role);
    const token = randomToken();
    const expiresAt = inFuture(INVITATION_TTL_MS);
    await this.store.db.transaction().execute(async (tx) => {
      await tx
        .insertInto("invitations")
        .values({ token_hash: tokenHash(token), org_id: orgId, email: email.toLowerCase(), role, invited_by: ctx.principal.userId, expires_at: expiresAt, accepted_at: null })
        .execute();
      await this.audit.record({ action: "org.member_invited", ...actorOf(ctx), orgId, target: `invitation:${email.toLowerCase()}`, details: { role } }, tx);
    });
    return { token, expiresAt };
  }

  async acceptInvitation(ctx: RequestContext, token: string): Promise<Organization & { role: Role }> {
    const orgId = await this.store.db.transaction().execute(async (tx) => {
      const inv = await tx.selectFrom("invitations").selectAll().where("token_hash", "=", tokenHash(token)).executeTakeFirst();
      if (!inv || inv.accepted_at || inv.expires_at < now() || inv.email !== ctx.principal.email.toLowerCase()) {
        throw new AppError(404, "invitation_invalid", "this invitation is unknown, used, expired or for another email address; ask for a new one");
      }
      const spent = await tx.updateTable("invitations").set({ accepted_at: now() }).where("token_hash", "=", inv.token_hash).where("accepted_at", "is", null).executeTakeFirst();
      if (Number(spent.numUpdatedRows) !== 1) throw new AppError(404, "invitation_invalid", "this invitation was just used; ask for a new one");
      const existing = await this.roleOf(tx, inv.org_id, ctx.principal.userId);
      if (existing) throw conflict("you are already a member of this organization");
      await tx.insertInto("memberships").values({ org_id: inv.org_id, user_id: ctx.principal.userId, role: inv.role, created_at: now() }).execute();
      await this.audit.record({ action: "org.member_added", ...actorOf(ctx), orgId: inv.org_id, target: ctx.principal.userId, details: { role: inv.role } }, tx);
      return inv.org_id;
    });
    const org = await this.get(orgId);
    return { ...org, role: (await this.roleOf(this.store.db, orgId, ctx.principal.userId))! };
  }

  async changeRole(ctx: RequestContext, orgId: string, userId: string, role: Role): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      await this.store.lock(tx, `org-members:${orgId}`);
      const current = await this.roleOf(tx, orgId, userId);
      if (!current) throw notFound("member");
      await this.assertMayGrant(tx, ctx, orgId, current);
      await this.assertMayGrant(tx, ctx, orgId, role);
      if (current === "owner" && role !== "owner") await this.assertNotLastOwner(tx, orgId);
      if (current === "contractor" && role !== "contractor") await this.contractorLeft(tx, orgId, userId);
      await tx.updateTable("memberships").set({ role }).where("org_id", "=", orgId).where("user_id", "=", userId).execute();
      await this.audit.record({ action: "org.role_changed", ...actorOf(ctx), orgId, target: userId, details: { from: current, to: role } }, tx);
    });
  }

  async removeMember(ctx: RequestContext, orgId: string, userId: string): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      await this.store.lock(tx, `org-members:${orgId}`);
      const current = await this.roleOf(tx, orgId, userId);
      if (!current) throw notFound("member");
      await this.assertMayGrant(tx, ctx, orgId, current);
      if (current === "owner") await this.assertNotLastOwner(tx, orgId);
      if (current === "contractor") await this.contractorLeft(tx, orgId, userId);
      await tx.deleteFrom("memberships").where("org_id", "=", orgId).where("user_id", "=", userId).execute();
      await this.audit.record({ action: "org.member_removed", ...actorOf(ctx), orgId, target: userId, details: { role: current } }, tx);
    });
  }

  /** Only owners hand out, take away or change the owner role. */
  private async assertMayGrant(ex: Executor, ctx: RequestContext, orgId: string, role: Role): Promise<void> {
    if (role !== "owner") return;
    const mine = await this.roleOf(ex, orgId, ctx.principal.userId);
    if (mine !== "owner") throw forbidden("only an owner can grant, change or remove the owner role");
  }

  private async assertNotLastOwner(ex: Executor, orgId: string): Promise<void> {
    const owners = await ex.selectFrom("memberships").select("user_id").where("org_id", "=", orgId).where("role", "=", "owner").execute();
    if (owners.length <= 1) throw conflict("an organization keeps at least one owner; make someone else owner first");
  }
}
