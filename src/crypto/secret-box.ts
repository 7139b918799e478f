import { createHash, hkdfSync, randomBytes } from "node:crypto";
import type { Executor, Store, Tx } from "../store/database.js";
import { DecryptError, open, seal } from "./aead.js";
import {
  setAsideNextKeyFile,
  MasterKeyError,
  promoteNextKeyFile,
  writeKeyFile,
  nextKeyFileName,
  type Keyring,
  type MasterKey,
} from "./master-key.js";
import path from "node:path";

export type OwnerKind = "project" | "user" | "workspace" | "system";
export interface Owner {
  kind: OwnerKind;
  id: string;
}

const SYSTEM: Owner = { kind: "system", id: "server" };
const CACHE_LIMIT = 1024;

function dekAad(owner: Owner, kekId: string): string {
  return `slipway/dek/v1\0${owner.kind}\0${owner.id}\0${kekId}`;
}

function valueAad(owner: Owner, field: string): string {
  return `slipway/value/v1\0${owner.kind}\0${owner.id}\0${field}`;
}

export class MissingDataKeyError extends Error {
  constructor(owner: Owner) {
    super(`no data key for ${owner.kind} ${owner.id}: it was destroyed or never made`);
  }
}

/**
 * Envelope encryption for every secret Slipway keeps: each owner (project, user, workspace)
 * has its own data key, wrapped by the master key; values are sealed under the owner's data
 * key with associated data naming owner and field, so a value copied to another row or field
 * does not open. Destroying a data key makes everything sealed under it unreadable.
 */
export class SecretBox {
  private readonly cache = new Map<string, Buffer>();

  private constructor(
    private readonly store: Store,
    private keyring: Keyring,
  ) {}

  /**
   * `settleRotation` finishes or sets aside a rotation that a crash interrupted; only a process
   * that holds the data dir alone may do that, or it could undo a rotation still in progress.
   */
  static async open(store: Store, keyring: Keyring, opts: { settleRotation: boolean } = { settleRotation: true }): Promise<SecretBox> {
    const box = new SecretBox(store, keyring);
    if (opts.settleRotation) await box.settleInterruptedRotation();
    await box.ensureDataKey(store.db, SYSTEM);
    return box;
  }

  get masterKeyId(): string {
    return this.keyring.current.id;
  }

  async createDataKey(ex: Executor, owner: Owner): Promise<void> {
    const dek = randomBytes(32);
    const kek = this.keyring.current;
    await ex
      .insertInto("data_keys")
      .values({
        owner_kind: owner.kind,
        owner_id: owner.id,
        wrapped: seal(kek.key, dekAad(owner, kek.id), dek),
        kek_id: kek.id,
        created_at: new Date().toISOString(),
      })
      .execute();
  }

  async ensureDataKey(ex: Executor, owner: Owner): Promise<void> {
    const row = await ex
      .selectFrom("data_keys")
      .select("owner_id")
      .where("owner_kind", "=", owner.kind)
      .where("owner_id", "=", owner.id)
      .executeTakeFirst();
    if (!row) await this.createDataKey(ex, owner);
  }

  /** Crypto-shredding: without its data key nothing sealed for the owner can be opened again. */
  async destroyDataKey(ex: Executor, owner: Owner): Promise<void> {
    await ex.deleteFrom("data_keys").where("owner_kind", "=", owner.kind).where("owner_id", "=", owner.id).execute();
    this.cache.delete(cacheKey(owner));
  }

  async seal(ex: Executor, owner: Owner, field: string, plaintext: Buffer | string): Promise<string> {
    const dek = await this.dataKey(ex, owner);
    return seal(dek, valueAad(owner, field), typeof plaintext === "string" ? Buffer.from(plaintext, "utf8") : plaintext);
  }

  async open(ex: Executor, owner: Owner, field: string, sealed: string): Promise<Buffer> {
    const dek = await this.dataKey(ex, owner);
    return open(dek, valueAad(owner, field), sealed);
  }

  async openString(ex: Executor, owner: Owner, field: string, sealed: string): Promise<string> {
    return (await this.open(ex, owner, field, sealed)).toString("utf8");
  }

  /** A key of the owner's for one purpose (a cache it keeps elsewhere): gone, as its data key is, when the owner is deleted. */
  async ownerKey(ex: Executor, owner: Owner, purpose: string): Promise<Buffer> {
    const dek = await this.dataKey(ex, owner);
    return Buffer.from(hkdfSync("sha256", dek, Buffer.alloc(0), `slipway/owner/${purpose}`, 32));
  }

  /** A stable server-wide key for one purpose (HMACs, cookie signing); survives master key rotation. */
  async derivedKey(purpose: string): Promise<Buffer> {
    const system = await this.dataKey(this.store.db, SYSTEM);
    return Buffer.from(hkdfSync("sha256", system, Buffer.alloc(0), `slipway/${purpose}`, 32));
  }

  /**
   * Rewraps every data key under `next` in one transaction. In key-file mode the new key is
   * written to master.key.next first and promoted after commit, so a crash at any point leaves
   * a keyring that opens every data key (see settleInterruptedRotation).
   */
  async rotateMasterKey(next: MasterKey, record?: (tx: Tx, rewrapped: number) => Promise<void>): Promise<{ rewrapped: number }> {
    if (next.id === this.keyring.current.id) throw new MasterKeyError("the new master key is the current one");
    const dataDir = this.keyring.file ? path.dirname(this.keyring.file) : undefined;
    if (dataDir) writeKeyFile(path.join(dataDir, nextKeyFileName), next);
    const rewrapped = await this.store.db.transaction().execute(async (tx) => {
      const rows = await tx.selectFrom("data_keys").selectAll().execute();
      for (const row of rows) {
        const owner = { kind: row.owner_kind as OwnerKind, id: row.owner_id };
        const dek = this.unwrap(owner, row.wrapped, row.kek_id);
        await tx
          .updateTable("data_keys")
          .set({ wrapped: seal(next.key, dekAad(owner, next.id), dek), kek_id: next.id })
          .where("owner_kind", "=", row.owner_kind)
          .where("owner_id", "=", row.owner_id)
          .execute();
      }
      await record?.(tx, rows.length);
      return rows.length;
    });
    if (dataDir) promoteNextKeyFile(dataDir);
    this.keyring = { ...this.keyring, current: next, all: [next] };
    this.cache.clear();
    return { rewrapped };
  }

  private async settleInterruptedRotation(): Promise<void> {
    const next = this.keyring.all.find((k) => k.id !== this.keyring.current.id);
    if (!next || !this.keyring.file) return;
    const dataDir = path.dirname(this.keyring.file);
    const stale = await this.store.db
      .selectFrom("data_keys")
      .select("owner_id")
      .where("kek_id", "=", this.keyring.current.id)
      .executeTakeFirst();
    if (stale) {
      setAsideNextKeyFile(dataDir);
      this.keyring = { ...this.keyring, all: [this.keyring.current] };
    } else {
      promoteNextKeyFile(dataDir);
      this.keyring = { ...this.keyring, current: next, all: [next] };
    }
  }

  private async dataKey(ex: Executor, owner: Owner): Promise<Buffer> {
    const key = cacheKey(owner);
    const cached = this.cache.get(key);
    if (cached) return cached;
    const row = await ex
      .selectFrom("data_keys")
      .select(["wrapped", "kek_id"])
      .where("owner_kind", "=", owner.kind)
      .where("owner_id", "=", owner.id)
      .executeTakeFirst();
    if (!row) throw new MissingDataKeyError(owner);
    const dek = this.unwrap(owner, row.wrapped, row.kek_id);
    // A key read inside a transaction may be one that transaction made and may yet roll back.
    if (ex.isTransaction) return dek;
    if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, dek);
    return dek;
  }

  private unwrap(owner: Owner, wrapped: string, kekId: string): Buffer {
    const kek = this.keyring.all.find((k) => k.id === kekId);
    if (!kek) {
      throw new MasterKeyError(
        `the data key of ${owner.kind} ${owner.id} is wrapped by master key ${kekId}, but the configured master key is ${this.keyring.current.id}; start Slipway with the master key it was made with`,
      );
    }
    return open(kek.key, dekAad(owner, kek.id), wrapped);
  }
}

function cacheKey(owner: Owner): string {
  return `${owner.kind}\0${owner.id}`;
}

/** Hash for high-entropy bearer secrets (session ids, API tokens, recovery codes). */
export function tokenHash(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export { DecryptError };
