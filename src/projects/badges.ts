import { createHmac, timingSafeEqual } from "node:crypto";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import { notFound } from "../errors.js";
import type { Store } from "../store/database.js";

/**
 * Status badges of private projects are read with a token in the URL (READMEs cannot send a
 * header). The token is an HMAC of the project and its badge generation under a server key, so
 * nothing is stored that could leak; regenerating bumps the generation and kills every old link.
 */
export class Badges {
  constructor(
    private readonly store: Store,
    private readonly key: Buffer,
    private readonly audit: AuditLog,
  ) {}

  async token(projectId: string): Promise<string> {
    const generation = await this.generation(projectId);
    if (generation === undefined) throw notFound("project");
    return this.tokenFor(projectId, generation);
  }

  /** Whether the token opens the project's badge; an unknown project is simply false (no enumeration). */
  async check(projectId: string, token: string): Promise<boolean> {
    const generation = await this.generation(projectId);
    if (generation === undefined) return false;
    const expected = Buffer.from(this.tokenFor(projectId, generation));
    const given = Buffer.from(token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  async regenerate(ctx: RequestContext, projectId: string): Promise<string> {
    await this.store.db.transaction().execute(async (tx) => {
      const row = await tx.selectFrom("projects").select("org_id").where("id", "=", projectId).executeTakeFirst();
      if (!row) throw notFound("project");
      await tx.updateTable("projects").set((eb) => ({ badge_generation: eb("badge_generation", "+", 1) })).where("id", "=", projectId).execute();
      await this.audit.record({ action: "project.badge_regenerated", ...actorOf(ctx), orgId: row.org_id, target: projectId }, tx);
    });
    return this.token(projectId);
  }

  private async generation(projectId: string): Promise<number | undefined> {
    const row = await this.store.db.selectFrom("projects").select("badge_generation").where("id", "=", projectId).executeTakeFirst();
    return row && Number(row.badge_generation);
  }

  private tokenFor(projectId: string, generation: number): string {
    return createHmac("sha256", this.key).update(`${projectId}\n${generation}`).digest("base64url").slice(0, 32);
  }
}
