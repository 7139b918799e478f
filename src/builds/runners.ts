import { tokenHash } from "../crypto/secret-box.js";
import type { Store } from "../store/database.js";
import { newId, now, randomToken } from "../store/ids.js";

const PREFIX = "slr_";

/** Runners and their tokens: a token is shown once at registration and kept only as a hash. */
export class Runners {
  constructor(private readonly store: Store) {}

  async register(name: string): Promise<{ id: string; token: string }> {
    const id = newId("run");
    const token = PREFIX + randomToken();
    await this.store.db.insertInto("runners").values({ id, name, token_hash: tokenHash(token), created_at: now(), last_seen_at: null }).execute();
    return { id, token };
  }

  async resolve(token: string): Promise<string | undefined> {
    if (!token.startsWith(PREFIX) || token.length > 200) return undefined;
    const row = await this.store.db.selectFrom("runners").select(["id", "last_seen_at"]).where("token_hash", "=", tokenHash(token)).executeTakeFirst();
    if (!row) return undefined;
    if (!row.last_seen_at || Date.now() - Date.parse(row.last_seen_at) > 10_000) {
      await this.store.db.updateTable("runners").set({ last_seen_at: now() }).where("id", "=", row.id).execute();
    }
    return row.id;
  }

  async remove(id: string): Promise<void> {
    await this.store.db.deleteFrom("runners").where("id", "=", id).execute();
  }
}
