import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import type { Owner, SecretBox } from "../crypto/secret-box.js";
import { generateEd25519KeyPair, type SshKeyPair } from "../crypto/ssh-keys.js";
import { notFound } from "../errors.js";
import type { Executor, Store } from "../store/database.js";
import { now } from "../store/ids.js";

/** The half of a deploy key anyone who may see the project may see. */
export interface DeployKey {
  publicKey: string;
  fingerprint: string;
  createdAt: string;
}

const FIELD = "deploy_key";
const ownerOf = (projectId: string): Owner => ({ kind: "project", id: projectId });

/**
 * P01: each project's own ed25519 deploy key. The private half is sealed by the secret box under
 * the project's data key (so deleting the project shreds it) and leaves the server only through
 * revealDeployKey, for the runner that clones; the public half and fingerprint are kept in clear.
 */
export class DeployKeys {
  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly audit: AuditLog,
  ) {}

  /** Makes the project's key pair; called inside project creation, after its data key exists. */
  async create(ex: Executor, project: { id: string; name: string }): Promise<DeployKey> {
    const row = await this.newRow(ex, project);
    await ex.insertInto("deploy_keys").values(row).execute();
    return { publicKey: row.public_key, fingerprint: row.fingerprint, createdAt: row.created_at };
  }

  /** The public half; a project made before deploy keys existed gets its pair now. */
  async get(projectId: string): Promise<DeployKey> {
    const found = await this.find(this.store.db, projectId);
    if (found) return found;
    return this.store.db.transaction().execute(async (tx) => {
      const project = await this.project(tx, projectId);
      await this.box.ensureDataKey(tx, ownerOf(projectId));
      // Two first readers at once: the loser's pair is dropped and both see the winner's.
      await tx
        .insertInto("deploy_keys")
        .values(await this.newRow(tx, project))
        .onConflict((oc) => oc.column("project_id").doNothing())
        .execute();
      return (await this.find(tx, projectId))!;
    });
  }

  /** A new pair replaces the old one, which no longer works once removed from the git server. */
  async regenerate(ctx: RequestContext, projectId: string): Promise<DeployKey> {
    return this.store.db.transaction().execute(async (tx) => {
      const project = await this.project(tx, projectId);
      await this.box.ensureDataKey(tx, ownerOf(projectId));
      const previous = await this.find(tx, projectId);
      await tx.deleteFrom("deploy_keys").where("project_id", "=", projectId).execute();
      const key = await this.create(tx, project);
      await this.audit.record(
        { action: "project.deploy_key_regenerated", ...actorOf(ctx), orgId: project.orgId, target: projectId, details: { fingerprint: key.fingerprint, previousFingerprint: previous?.fingerprint ?? null } },
        tx,
      );
      return key;
    });
  }

  /** The private key, for the runner that writes it into a build's sandbox just before the clone; never for the API. */
  async revealDeployKey(projectId: string): Promise<SshKeyPair> {
    await this.get(projectId);
    const row = await this.store.db.selectFrom("deploy_keys").selectAll().where("project_id", "=", projectId).executeTakeFirstOrThrow();
    return { publicKey: row.public_key, fingerprint: row.fingerprint, privateKey: await this.box.openString(this.store.db, ownerOf(projectId), FIELD, row.private_key) };
  }

  /** With the project: its data key goes in the same transaction, so even a copy of the row stays shut. */
  async deleteAll(ex: Executor, projectId: string): Promise<void> {
    await ex.deleteFrom("deploy_keys").where("project_id", "=", projectId).execute();
  }

  private async find(ex: Executor, projectId: string): Promise<DeployKey | undefined> {
    const row = await ex.selectFrom("deploy_keys").select(["public_key", "fingerprint", "created_at"]).where("project_id", "=", projectId).executeTakeFirst();
    return row && { publicKey: row.public_key, fingerprint: row.fingerprint, createdAt: row.created_at };
  }

  private async project(ex: Executor, projectId: string): Promise<{ id: string; name: string; orgId: string }> {
    const p = await ex.selectFrom("projects").select(["id", "name", "org_id"]).where("id", "=", projectId).executeTakeFirst();
    if (!p) throw notFound("project");
    return { id: p.id, name: p.name, orgId: p.org_id };
  }

  private async newRow(ex: Executor, project: { id: string; name: string }) {
    const pair = generateEd25519KeyPair(`slipway-deploy-${project.name}`);
    return {
      project_id: project.id,
      public_key: pair.publicKey,
      fingerprint: pair.fingerprint,
      private_key: await this.box.seal(ex, ownerOf(project.id), FIELD, pair.privateKey),
      created_at: now(),
    };
  }
}
