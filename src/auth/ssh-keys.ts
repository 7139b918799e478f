import ssh2 from "ssh2";
import { z } from "zod";
import { actorOf, type AuditLog } from "../audit/audit-log.js";
import { fingerprintOfBlob } from "../crypto/ssh-keys.js";
import { AppError, conflict, notFound } from "../errors.js";
import type { Store } from "../store/database.js";
import { newId, now } from "../store/ids.js";
import type { UserSshKeysTable } from "../store/schema.js";
import type { RequestContext } from "./permissions.js";

export const sshKeySchema = z.object({ id: z.string(), name: z.string(), publicKey: z.string(), fingerprint: z.string(), createdAt: z.string(), lastUsedAt: z.string().nullable() });
export type SshKey = z.infer<typeof sshKeySchema>;

export const newSshKeySchema = z.object({ name: z.string().trim().min(1).max(100), publicKey: z.string().trim().min(1).max(16 * 1024) }).strict();

/** Key types OpenSSH offers today; DSA and short RSA keys are refused. */
const ALLOWED = new Set(["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"]);
const MAX_KEYS = 50;

const toKey = (r: UserSshKeysTable): SshKey => ({ id: r.id, name: r.name, publicKey: r.public_key, fingerprint: r.fingerprint, createdAt: r.created_at, lastUsedAt: r.last_used_at });

/** A public key line as given, checked: `type base64 [comment]` → its type, wire blob and the line without the comment. */
export function parsePublicKey(line: string): { type: string; blob: Buffer; normalized: string } {
  const parsed = ssh2.utils.parseKey(line);
  if (parsed instanceof Error || parsed.isPrivateKey()) throw new AppError(400, "invalid_key", "not an SSH public key: paste one line like `ssh-ed25519 AAAA… you@laptop` (the .pub file)");
  if (!ALLOWED.has(parsed.type)) throw new AppError(400, "invalid_key", `${parsed.type} keys are not accepted; use ssh-ed25519 (ssh-keygen -t ed25519)`);
  const blob = parsed.getPublicSSH();
  if (parsed.type === "ssh-rsa" && blob.length < 270) throw new AppError(400, "invalid_key", "RSA keys shorter than 2048 bits are not accepted; use ssh-ed25519 (ssh-keygen -t ed25519)");
  return { type: parsed.type, blob, normalized: `${parsed.type} ${blob.toString("base64")}` };
}

/** Users' SSH public keys, which let them into their workspaces through the SSH gateway. */
export class SshKeys {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
  ) {}

  async list(userId: string): Promise<SshKey[]> {
    return (await this.store.db.selectFrom("user_ssh_keys").selectAll().where("user_id", "=", userId).orderBy("created_at").execute()).map(toKey);
  }

  async add(ctx: RequestContext, name: string, publicKey: string): Promise<SshKey> {
    const { blob, normalized } = parsePublicKey(publicKey);
    const row: UserSshKeysTable = { id: newId("key"), user_id: ctx.principal.userId, name, public_key: normalized, fingerprint: fingerprintOfBlob(blob), created_at: now(), last_used_at: null };
    await this.store.db.transaction().execute(async (tx) => {
      const existing = await tx.selectFrom("user_ssh_keys").select(["fingerprint"]).where("user_id", "=", row.user_id).execute();
      if (existing.some((k) => k.fingerprint === row.fingerprint)) throw conflict(`this key (${row.fingerprint}) is registered already`);
      if (existing.length >= MAX_KEYS) throw conflict(`you have ${MAX_KEYS} keys; remove one first`);
      await tx.insertInto("user_ssh_keys").values(row).execute();
      await this.audit.record({ action: "auth.ssh_key_added", ...actorOf(ctx), target: row.id, details: { fingerprint: row.fingerprint, name } }, tx);
    });
    return toKey(row);
  }

  async remove(ctx: RequestContext, id: string): Promise<void> {
    await this.store.db.transaction().execute(async (tx) => {
      const res = await tx.deleteFrom("user_ssh_keys").where("id", "=", id).where("user_id", "=", ctx.principal.userId).executeTakeFirst();
      if (Number(res.numDeletedRows) !== 1) throw notFound("SSH key");
      await this.audit.record({ action: "auth.ssh_key_removed", ...actorOf(ctx), target: id, details: {} }, tx);
    });
  }

  /** The user's key with this wire blob, if registered; its use is noted. */
  async match(userId: string, blob: Buffer): Promise<SshKey | undefined> {
    const fingerprint = fingerprintOfBlob(blob);
    const row = await this.store.db.selectFrom("user_ssh_keys").selectAll().where("user_id", "=", userId).where("fingerprint", "=", fingerprint).executeTakeFirst();
    if (!row) return undefined;
    await this.store.db.updateTable("user_ssh_keys").set({ last_used_at: now() }).where("id", "=", row.id).execute();
    return toKey(row);
  }
}
