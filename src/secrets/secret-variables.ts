import { z } from "zod";
import { refineMaskableSecret } from "../crypto/masking.js";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import type { Owner, SecretBox } from "../crypto/secret-box.js";
import { notFound } from "../errors.js";
import type { Executor, Store } from "../store/database.js";
import { now } from "../store/ids.js";

export const secretNameSchema = z
  .string()
  .max(128, "a secret name has at most 128 characters")
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "a secret name is an environment variable name: letters, digits and _, not starting with a digit");
export const secretValueSchema = z
  .string()
  .refine((v) => Buffer.byteLength(v, "utf8") <= 32 * 1024, "a secret value is at most 32 KiB")
  // Build logs mask every secret; a very short one could not be masked without hiding ordinary text.
  .superRefine(refineMaskableSecret);

export type VariableOwner = Owner & { kind: "project" | "user" };

/** One sealed value of the server's own (e.g. its TLS key), read and written whole. */
export interface SecretSlot {
  get(): Promise<string | undefined>;
  put(value: string): Promise<void>;
}

export interface SecretVariable {
  name: string;
  updatedAt: string;
}

/**
 * Environment variables whose values are secret (project and user scope). Values are sealed by
 * the secret box and write-only through the API: only names and times ever come back out.
 */
export class SecretVariables {
  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly audit: AuditLog,
  ) {}

  async list(owner: VariableOwner): Promise<SecretVariable[]> {
    const rows = await this.store.db
      .selectFrom("secrets")
      .select(["name", "updated_at"])
      .where("owner_kind", "=", owner.kind)
      .where("owner_id", "=", owner.id)
      .orderBy("name")
      .execute();
    return rows.map((r) => ({ name: r.name, updatedAt: r.updated_at }));
  }

  async set(ctx: RequestContext, owner: VariableOwner, orgId: string | null, name: string, value: string): Promise<{ created: boolean }> {
    return this.store.db.transaction().execute(async (tx) => {
      await this.box.ensureDataKey(tx, owner);
      const sealed = await this.box.seal(tx, owner, fieldOf(name), value);
      const updated = await tx
        .updateTable("secrets")
        .set({ value: sealed, updated_at: now() })
        .where("owner_kind", "=", owner.kind)
        .where("owner_id", "=", owner.id)
        .where("name", "=", name)
        .executeTakeFirst();
      const created = Number(updated.numUpdatedRows) === 0;
      if (created) {
        await tx.insertInto("secrets").values({ owner_kind: owner.kind, owner_id: owner.id, name, value: sealed, updated_at: now() }).execute();
      }
      await this.audit.record({ action: "secret.set", ...actorOf(ctx), orgId, target: `${owner.kind}:${owner.id}/${name}` }, tx);
      return { created };
    });
  }

  async delete(ctx: RequestContext, owner: VariableOwner, orgId: string | null, name: string): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      const res = await tx.deleteFrom("secrets").where("owner_kind", "=", owner.kind).where("owner_id", "=", owner.id).where("name", "=", name).executeTakeFirst();
      if (Number(res.numDeletedRows) === 0) throw notFound(`secret ${name}`);
      await this.audit.record({ action: "secret.deleted", ...actorOf(ctx), orgId, target: `${owner.kind}:${owner.id}/${name}` }, tx);
    });
  }

  /** Plaintext values, for the runner that injects them into a sandbox; never for the API. */
  async reveal(ex: Executor, owner: VariableOwner): Promise<Map<string, string>> {
    const rows = await ex.selectFrom("secrets").select(["name", "value"]).where("owner_kind", "=", owner.kind).where("owner_id", "=", owner.id).execute();
    const out = new Map<string, string>();
    for (const r of rows) out.set(r.name, await this.box.openString(ex, owner, fieldOf(r.name), r.value));
    return out;
  }

  systemSlot(name: string): SecretSlot {
    const owner = { kind: "system", id: "server" } as const;
    const field = `system:${name}`;
    const db = this.store.db;
    return {
      get: async () => {
        const row = await db.selectFrom("secrets").select("value").where("owner_kind", "=", owner.kind).where("owner_id", "=", owner.id).where("name", "=", name).executeTakeFirst();
        return row && this.box.openString(db, owner, field, row.value);
      },
      put: async (value) => {
        const sealed = await this.box.seal(db, owner, field, value);
        await db.transaction().execute(async (tx) => {
          await tx.deleteFrom("secrets").where("owner_kind", "=", owner.kind).where("owner_id", "=", owner.id).where("name", "=", name).execute();
          await tx.insertInto("secrets").values({ owner_kind: owner.kind, owner_id: owner.id, name, value: sealed, updated_at: now() }).execute();
        });
      },
    };
  }

  /** Removes every variable of an owner; used with the owner's data key when the owner goes. */
  async deleteAll(ex: Executor, owner: VariableOwner): Promise<void> {
    await ex.deleteFrom("secrets").where("owner_kind", "=", owner.kind).where("owner_id", "=", owner.id).execute();
  }
}

const fieldOf = (name: string) => `secret:${name}`;
