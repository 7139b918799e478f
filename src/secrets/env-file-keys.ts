import { actorOf, type AuditLog } from "../audit/audit-log.js";
import type { RequestContext } from "../auth/permissions.js";
import type { Owner, SecretBox } from "../crypto/secret-box.js";
import { AppError, notFound } from "../errors.js";
import type { Executor, Store } from "../store/database.js";
import { now } from "../store/ids.js";
import { EnvFileError, formatPublicKey, generateEnvFileKeyPair, openEnvFile, openEnvText, type EnvFileKeyPair } from "./env-file-format.js";

const FIELD = "env_file_key";
const ownerOf = (projectId: string): Owner => ({ kind: "project", id: projectId });

/** An env file that does not open is a 422 whose message names the file and line, never a 500. */
function readable<T>(open: () => T): T {
  try {
    return open();
  } catch (err) {
    if (err instanceof EnvFileError) throw new AppError(422, "env_file_unreadable", err.message);
    throw err;
  }
}

/**
 * Each project's X25519 key pair for encrypted env files, made on first use. The public half is
 * for anyone who may read the project (to encrypt); the private half is sealed under the project's
 * data key (deleting the project shreds it) and is used only here, on the server: for the runner
 * holding a job's lease, and for owners and admins who decrypt a file (audited).
 */
export class EnvFileKeys {
  constructor(
    private readonly store: Store,
    private readonly box: SecretBox,
    private readonly audit: AuditLog,
  ) {}

  /** The public key (base64); the pair is made now when the project has none yet. */
  async publicKey(projectId: string): Promise<string> {
    const found = await this.findPublic(this.store.db, projectId);
    if (found) return found;
    return this.store.db.transaction().execute(async (tx) => {
      const project = await tx.selectFrom("projects").select("id").where("id", "=", projectId).executeTakeFirst();
      if (!project) throw notFound("project");
      await this.box.ensureDataKey(tx, ownerOf(projectId));
      const pair = generateEnvFileKeyPair();
      const row = { project_id: projectId, public_key: formatPublicKey(pair.publicKey), private_key: await this.box.seal(tx, ownerOf(projectId), FIELD, pair.privateKey), created_at: now() };
      // Two first readers at once: the loser's pair is dropped and both see the winner's.
      await tx.insertInto("env_file_keys").values(row).onConflict((oc) => oc.column("project_id").doNothing()).execute();
      return (await this.findPublic(tx, projectId))!;
    });
  }

  /** The variables of an encrypted file, for the runner that holds a job of the project. */
  async open(projectId: string, file: string, text: string): Promise<Record<string, string>> {
    const pair = await this.pair(projectId);
    return Object.fromEntries(readable(() => openEnvFile(projectId, pair, text, file)).map((e) => [e.name, e.value]));
  }

  /** The plain text of an encrypted file (one NAME=value a line), for an owner or admin; audited. */
  async decrypt(ctx: RequestContext, projectId: string, orgId: string | null, text: string, file: string): Promise<string> {
    const pair = await this.pair(projectId);
    const lines = readable(() => openEnvText(projectId, pair, text, file));
    await this.audit.record({ action: "project.env_file_decrypted", ...actorOf(ctx), orgId, target: projectId, details: { lines: lines.length } });
    return lines.map((l) => `${l.plaintext}\n`).join("");
  }

  private async pair(projectId: string): Promise<EnvFileKeyPair | undefined> {
    const row = await this.store.db.selectFrom("env_file_keys").selectAll().where("project_id", "=", projectId).executeTakeFirst();
    if (!row) return undefined;
    return { publicKey: Buffer.from(row.public_key, "base64"), privateKey: await this.box.open(this.store.db, ownerOf(projectId), FIELD, row.private_key) };
  }

  private async findPublic(ex: Executor, projectId: string): Promise<string | undefined> {
    return (await ex.selectFrom("env_file_keys").select("public_key").where("project_id", "=", projectId).executeTakeFirst())?.public_key;
  }
}
