import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import type { SecretBox } from "../crypto/secret-box.js";
import { AppError, badRequest, conflict, notFound } from "../errors.js";
import type { Organizations } from "../orgs/organizations.js";
import type { SecretVariables } from "../secrets/secret-variables.js";
import type { DeployKeys } from "./deploy-keys.js";
import { fingerprints, knownHostsName, normalizeKnownHosts, parseKnownHosts } from "./known-hosts.js";
import type { Webhooks } from "./webhooks.js";
import type { Executor, Store, Tx } from "../store/database.js";
import { newId, now } from "../store/ids.js";
import type { ProjectsTable } from "../store/schema.js";

export const projectNameSchema = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "a project name has letters, digits, '.', '_' and '-', and starts with a letter or digit");
export const repositoryUrlSchema = z
  .string()
  .max(2048)
  .regex(/^(https?:\/\/|ssh:\/\/|git@)[^\s]+$/, "a repository URL is an https://, ssh:// or git@host:path URL")
  // A password or token in the URL would be stored and shown in the clear; credentials go in secrets.
  .refine((u) => !/^[a-z]+:\/\/[^/@]*:[^/@]*@/i.test(u), "a repository URL must not carry a password or token; Slipway uses deploy keys and OAuth tokens instead");

export interface Project {
  id: string;
  orgId: string;
  name: string;
  repositoryUrl: string | null;
  createdAt: string;
  /** When set, builds reach only these host:port / CIDR entries (and DNS). */
  egressAllowlist: string[] | null;
  /** The git host's pinned keys (known_hosts text); null until set or captured by the first clone. */
  knownHosts: string | null;
  /** Pull requests from forks: `run` them (without secrets, like every pull request) or have them wait for an owner's or admin's approval. */
  forkBuilds: ForkBuilds;
  /** The pinned keys' fingerprints (`host type SHA256:…`), for comparing with what the git host's operator says. */
  hostKeyFingerprints: string[];
  /** Whether a person set or confirmed the pinned keys; false while they were only trusted on first use. */
  knownHostsConfirmed: boolean;
}

export const forkBuildsSchema = z.enum(["run", "approve"]);
export type ForkBuilds = z.infer<typeof forkBuildsSchema>;

const toProject = (r: ProjectsTable): Project => ({
  id: r.id,
  orgId: r.org_id,
  name: r.name,
  repositoryUrl: r.repository_url,
  createdAt: r.created_at,
  egressAllowlist: r.egress_allowlist === null ? null : (JSON.parse(r.egress_allowlist) as string[]),
  knownHosts: r.known_hosts,
  forkBuilds: forkBuildsSchema.catch("approve").parse(r.fork_builds),
  hostKeyFingerprints: r.known_hosts === null ? [] : fingerprints(r.known_hosts),
  knownHostsConfirmed: r.known_hosts !== null && Number(r.known_hosts_confirmed) === 1,
});

/** Project records, their contractor assignments and the life of their data keys. */
export class Projects {
  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly audit: AuditLog,
    private readonly orgs: Organizations,
    private readonly secrets: SecretVariables,
    private readonly deployKeys: DeployKeys,
    private readonly webhooks: Webhooks,
  ) {}

  async create(ctx: RequestContext, orgId: string, name: string, repositoryUrl: string | null): Promise<Project> {
    const row: ProjectsTable = { id: newId("prj"), org_id: orgId, name, repository_url: repositoryUrl, created_at: now(), egress_allowlist: null, known_hosts: null, fork_builds: "run", known_hosts_confirmed: 0, badge_generation: 0 };
    await this.store.db.transaction().execute(async (tx) => {
      await this.assertNameFree(tx, orgId, name);
      await tx.insertInto("projects").values(row).execute();
      await this.box.createDataKey(tx, { kind: "project", id: row.id });
      // P01: its own deploy key pair and webhook secret, sealed under the data key just made.
      await this.deployKeys.create(tx, row);
      await this.webhooks.create(tx, row.id);
      await this.audit.record({ action: "project.created", ...actorOf(ctx), orgId, target: row.id, details: { name } }, tx);
    });
    return toProject(row);
  }

  async find(ex: Executor, id: string): Promise<Project | undefined> {
    const row = await ex.selectFrom("projects").selectAll().where("id", "=", id).executeTakeFirst();
    return row && toProject(row);
  }

  async get(id: string): Promise<Project> {
    const p = await this.find(this.store.db, id);
    if (!p) throw notFound("project");
    return p;
  }

  /** Projects the user can see: all of their organisations', but only assigned ones where they are a contractor. */
  async listFor(userId: string, orgId?: string): Promise<Project[]> {
    const memberships = (await this.orgs.listFor(userId)).filter((o) => !orgId || o.id === orgId);
    const full = memberships.filter((o) => o.role !== "contractor").map((o) => o.id);
    const contracted = memberships.filter((o) => o.role === "contractor").map((o) => o.id);
    if (full.length + contracted.length === 0) return [];
    const rows = await this.store.db
      .selectFrom("projects")
      .selectAll()
      .where((eb) =>
        eb.or([
          ...(full.length ? [eb("org_id", "in", full)] : []),
          ...(contracted.length
            ? [
                eb.and([
                  eb("org_id", "in", contracted),
                  eb("id", "in", eb.selectFrom("project_assignments").select("project_id").where("user_id", "=", userId)),
                ]),
              ]
            : []),
        ]),
      )
      .orderBy("name")
      .execute();
    return rows.map(toProject);
  }

  async update(ctx: RequestContext, id: string, patch: { name?: string; repositoryUrl?: string | null; egressAllowlist?: string[] | null; knownHosts?: string | null; forkBuilds?: ForkBuilds; confirmHostKeys?: string[] }): Promise<Project> {
    const { knownHosts, confirmHostKeys, ...rest } = patch;
    const pinned = knownHosts === undefined || knownHosts === null ? knownHosts : normalizeKnownHosts(knownHosts);
    await this.store.db.transaction().execute(async (tx) => {
      const p = await this.find(tx, id);
      if (!p) throw notFound("project");
      if (patch.name !== undefined && patch.name !== p.name) await this.assertNameFree(tx, p.orgId, patch.name);
      if (confirmHostKeys !== undefined) await this.confirmHostKeys(ctx, tx, p, confirmHostKeys);
      const res = await tx
        .updateTable("projects")
        .set({
          ...(patch.name !== undefined && { name: patch.name }),
          ...(patch.repositoryUrl !== undefined && { repository_url: patch.repositoryUrl }),
          ...(patch.egressAllowlist !== undefined && { egress_allowlist: patch.egressAllowlist === null ? null : JSON.stringify(patch.egressAllowlist) }),
          // Keys a person gives are vouched for; none pinned means the next clone trusts on first use.
          ...(pinned !== undefined && { known_hosts: pinned, known_hosts_confirmed: pinned === null ? 0 : 1 }),
          ...(patch.forkBuilds !== undefined && { fork_builds: patch.forkBuilds }),
          ...(confirmHostKeys !== undefined && { known_hosts_confirmed: 1 }),
        })
        .where("id", "=", id)
        // Confirms the keys that were checked, not ones pinned since.
        .$if(confirmHostKeys !== undefined, (q) => q.where("known_hosts", "=", p.knownHosts))
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) throw conflict("the project's pinned host keys changed meanwhile: look at their fingerprints again");
      if (Object.keys(rest).length) await this.audit.record({ action: "project.updated", ...actorOf(ctx), orgId: p.orgId, target: id, details: rest }, tx);
      if (pinned !== undefined) await this.audit.record({ action: "project.known_hosts_changed", ...actorOf(ctx), orgId: p.orgId, target: id, details: { previous: p.knownHosts && fingerprints(p.knownHosts), now: pinned && fingerprints(pinned) } }, tx);
    });
    return this.get(id);
  }

  /**
   * Trust on first use: pins the host keys the first clone of an unpinned project saw, reported by
   * the runner holding its job. Says whether they were pinned; a pin already there is kept.
   */
  async pinFirstSeenHostKeys(projectId: string, runnerId: string, knownHosts: string): Promise<boolean> {
    const text = normalizeKnownHosts(knownHosts);
    return this.store.db.transaction().execute(async (tx) => {
      const p = await this.find(tx, projectId);
      if (!p) throw notFound("project");
      // Only entries naming the repository's own host are taken.
      const host = knownHostsName(p.repositoryUrl ?? "");
      const strangers = parseKnownHosts(knownHosts).entries.filter((e) => !host || !e.hosts.includes(host));
      if (strangers.length) throw new AppError(400, "wrong_host", `line ${strangers[0]!.line}: the entry does not name the repository's host ${host ?? "(the project has no SSH repository URL)"}`);
      // Conditional, so that of two clones reporting at once only the first pins.
      const res = await tx.updateTable("projects").set({ known_hosts: text, known_hosts_confirmed: 0 }).where("id", "=", projectId).where("known_hosts", "is", null).executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) return false;
      await this.audit.record({ action: "project.known_hosts_pinned", actor: "runner", orgId: p.orgId, target: projectId, details: { runner: runnerId, now: fingerprints(text) } }, tx);
      return true;
    });
  }

  /**
   * A person vouches for the keys pinned on first use by naming their SHA256 fingerprints, as the
   * git host's operator gives them (`ssh-keygen -lf`); a set that is not exactly the pinned one is
   * refused, so a key that changed meanwhile is never confirmed by mistake. The caller records it.
   */
  private async confirmHostKeys(ctx: RequestContext, tx: Tx, p: Project, given: string[]): Promise<void> {
    if (p.knownHosts === null) throw conflict("no host keys are pinned yet: the first clone or poll pins the key it sees, then confirm its fingerprint");
    const pinned = new Set(p.hostKeyFingerprints.map((f) => f.split(" ").at(-1)!));
    const named = new Set(given);
    if (pinned.size !== named.size || [...named].some((f) => !pinned.has(f)))
      throw conflict(`those fingerprints are not the pinned keys' (${[...pinned].join(", ")}): if the git host's operator gives other fingerprints, do not confirm; pin the right keys with "knownHosts" instead`);
    await this.audit.record({ action: "project.known_hosts_confirmed", ...actorOf(ctx), orgId: p.orgId, target: p.id, details: { fingerprints: p.hostKeyFingerprints } }, tx);
  }

  /** Deletes the record, its secrets and its data key in one transaction: what was sealed for it is gone for good. */
  async delete(ctx: RequestContext, id: string): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      const p = await this.find(tx, id);
      if (!p) throw notFound("project");
      const owner = { kind: "project", id } as const;
      await this.secrets.deleteAll(tx, owner);
      await this.deployKeys.deleteAll(tx, id);
      await this.webhooks.deleteAll(tx, id);
      await this.box.destroyDataKey(tx, owner);
      await tx.deleteFrom("projects").where("id", "=", id).execute();
      await this.audit.record({ action: "project.deleted", ...actorOf(ctx), orgId: p.orgId, target: id, details: { name: p.name } }, tx);
    });
  }

  async isAssigned(ex: Executor, projectId: string, userId: string): Promise<boolean> {
    const row = await ex.selectFrom("project_assignments").select("user_id").where("project_id", "=", projectId).where("user_id", "=", userId).executeTakeFirst();
    return row !== undefined;
  }

  async assignments(projectId: string): Promise<string[]> {
    const rows = await this.store.db.selectFrom("project_assignments").select("user_id").where("project_id", "=", projectId).execute();
    return rows.map((r) => r.user_id);
  }

  async assign(ctx: RequestContext, projectId: string, userId: string): Promise<void> {
    const p = await this.get(projectId);
    const role = await this.orgs.roleOf(this.store.db, p.orgId, userId);
    if (role !== "contractor") throw badRequest("only contractors of the project's organization are assigned to projects; other roles see every project");
    await this.store.db.transaction().execute(async (tx) => {
      if (await this.isAssigned(tx, projectId, userId)) return;
      await tx.insertInto("project_assignments").values({ project_id: projectId, user_id: userId }).execute();
      await this.audit.record({ action: "project.assignment_added", ...actorOf(ctx), orgId: p.orgId, target: `${projectId}/${userId}` }, tx);
    });
  }

  /** Ends every assignment of the user in the org's projects: a contractor who leaves keeps none to come back to. */
  async unassignAll(ex: Executor, orgId: string, userId: string): Promise<void> {
    await ex
      .deleteFrom("project_assignments")
      .where("user_id", "=", userId)
      .where("project_id", "in", ex.selectFrom("projects").select("id").where("org_id", "=", orgId))
      .execute();
  }

  async unassign(ctx: RequestContext, projectId: string, userId: string): Promise<void> {
    const p = await this.get(projectId);
    await this.store.db.transaction().execute(async (tx) => {
      const res = await tx.deleteFrom("project_assignments").where("project_id", "=", projectId).where("user_id", "=", userId).executeTakeFirst();
      if (Number(res.numDeletedRows) === 0) throw notFound("assignment");
      await this.audit.record({ action: "project.assignment_removed", ...actorOf(ctx), orgId: p.orgId, target: `${projectId}/${userId}` }, tx);
    });
  }

  private async assertNameFree(ex: Executor, orgId: string, name: string): Promise<void> {
    const clash = await ex.selectFrom("projects").select("id").where("org_id", "=", orgId).where("name", "=", name).executeTakeFirst();
    if (clash) throw conflict(`a project named ${name} already exists in this organization; pick another name`);
  }
}
