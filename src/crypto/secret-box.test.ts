import { chmodSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { describeEachEngine, tempStore, type TempStore } from "../../test/helpers/engines.js";
import { DecryptError } from "./aead.js";
import { generateMasterKey, keyFileName, loadKeyring, MasterKeyError, nextKeyFileName, readKeyFile, writeKeyFile, type Keyring } from "./master-key.js";
import { MissingDataKeyError, SecretBox, type Owner } from "./secret-box.js";

const alice: Owner = { kind: "project", id: "p-alice" };
const bob: Owner = { kind: "project", id: "p-bob" };

/** Flips one bit of the ciphertext body (not of its base64 text, whose last character may carry padding bits). */
function tamper(sealed: string, at: number): string {
  const raw = Buffer.from(sealed.slice("sb1:".length), "base64url");
  raw[at % raw.length]! ^= 0x01;
  return "sb1:" + raw.toString("base64url");
}

describeEachEngine("secret box", (engine) => {
  let t: TempStore;
  let box: SecretBox;
  /** What a restarted server sees: the key file(s) on disk and the rows in the database, with no cache. */
  const reopenBox = async () => SecretBox.open(t.store, loadKeyring(t.dataDir, undefined).keyring);
  const kekIds = async () => (await t.store.db.selectFrom("data_keys").select("kek_id").execute()).map((r) => r.kek_id);
  const keyFileText = (name = keyFileName) => readFileSync(path.join(t.dataDir, name), "utf8");

  beforeEach(async () => {
    t = await tempStore(engine);
    box = await reopenBox();
    for (const owner of [alice, bob]) await box.createDataKey(t.store.db, owner);
  });
  afterEach(() => t.close());

  it("P17: seals and opens strings and binary values, empty and 32 KiB ones", async () => {
    const values: (string | Buffer)[] = ["hunter2", "ünïcødé ✓", "", randomBytes(64), Buffer.alloc(0), randomBytes(32 * 1024)];
    for (const value of values) {
      const sealed = await box.seal(t.store.db, alice, "value", value);
      expect(sealed.startsWith("sb1:")).toBe(true);
      const plain = typeof value === "string" ? value : value.toString("latin1");
      if (plain.length > 0) expect(sealed).not.toContain(plain);
      const opened = await box.open(t.store.db, alice, "value", sealed);
      expect(opened.equals(typeof value === "string" ? Buffer.from(value, "utf8") : value)).toBe(true);
    }
    expect(await box.openString(t.store.db, alice, "value", await box.seal(t.store.db, alice, "value", "héllo"))).toBe("héllo");
  });

  it("P17: sealing the same value twice gives different ciphertexts", async () => {
    const [a, b] = [await box.seal(t.store.db, alice, "value", "same"), await box.seal(t.store.db, alice, "value", "same")];
    expect(a).not.toBe(b);
  });

  it("P17: a sealed value moved to another owner or field does not open", async () => {
    const sealed = await box.seal(t.store.db, alice, "value", "alice's secret");
    expect(await box.openString(t.store.db, alice, "value", sealed)).toBe("alice's secret");
    await expect(box.open(t.store.db, bob, "value", sealed)).rejects.toThrow(DecryptError);
    // Same owner, same data key: only the associated data (the field name) differs.
    await expect(box.open(t.store.db, alice, "token", sealed)).rejects.toThrow(DecryptError);
  });

  it("P17: a changed byte anywhere in a sealed value is detected", async () => {
    const sealed = await box.seal(t.store.db, alice, "value", "do not touch");
    const raw = Buffer.from(sealed.slice(4), "base64url");
    // IV, ciphertext and tag each.
    for (const at of [0, 12, raw.length - 1]) {
      await expect(box.open(t.store.db, alice, "value", tamper(sealed, at))).rejects.toThrow(DecryptError);
    }
    await expect(box.open(t.store.db, alice, "value", sealed.slice(0, 20))).rejects.toThrow(DecryptError);
    expect(await box.openString(t.store.db, alice, "value", sealed)).toBe("do not touch");
  });

  it("P17: destroying an owner's data key makes its values unreadable (crypto-shredding), and a new key opens none of them", async () => {
    const aliceValue = await box.seal(t.store.db, alice, "value", "shred me");
    const bobValue = await box.seal(t.store.db, bob, "value", "keep me");
    await box.destroyDataKey(t.store.db, alice);

    await expect(box.open(t.store.db, alice, "value", aliceValue)).rejects.toThrow(MissingDataKeyError);
    // Not merely this process's cache: a restarted server cannot open it either.
    const restarted = await reopenBox();
    await expect(restarted.open(t.store.db, alice, "value", aliceValue)).rejects.toThrow(MissingDataKeyError);
    expect(await restarted.openString(t.store.db, bob, "value", bobValue)).toBe("keep me");

    await box.ensureDataKey(t.store.db, alice);
    await expect(box.open(t.store.db, alice, "value", aliceValue)).rejects.toThrow(DecryptError);
    const fresh = await box.seal(t.store.db, alice, "value", "new life");
    expect(await box.openString(t.store.db, alice, "value", fresh)).toBe("new life");
  });

  it("P17: rotating the master key rewraps every data key; the new key opens everything and the old one nothing", async () => {
    const sealed = await box.seal(t.store.db, alice, "value", "survives rotation");
    const oldKey = box.masterKeyId;
    const oldKeyring = loadKeyring(t.dataDir, undefined).keyring;
    // Control: before rotation, a box with the old key opens the value.
    const before = await SecretBox.open(t.store, oldKeyring);
    expect(await before.openString(t.store.db, alice, "value", sealed)).toBe("survives rotation");
    const derived = await box.derivedKey("audit-log");

    const next = generateMasterKey();
    const { rewrapped } = await box.rotateMasterKey(next);
    expect(rewrapped).toBe(3); // alice, bob and the server's own key
    expect(new Set(await kekIds())).toEqual(new Set([next.id]));
    expect(box.masterKeyId).toBe(next.id);
    expect(readKeyFile(path.join(t.dataDir, keyFileName)).id).toBe(next.id);
    expect(existsSync(path.join(t.dataDir, nextKeyFileName))).toBe(false);

    expect(await box.openString(t.store.db, alice, "value", sealed)).toBe("survives rotation");
    const restarted = await reopenBox();
    expect(restarted.masterKeyId).toBe(next.id);
    expect(await restarted.openString(t.store.db, alice, "value", sealed)).toBe("survives rotation");
    // Keys derived from the server's data key (the audit HMAC key) do not change with the master key.
    expect((await restarted.derivedKey("audit-log")).equals(derived)).toBe(true);

    const stale: Keyring = { current: oldKeyring.current, all: [oldKeyring.current] };
    await expect(SecretBox.open(t.store, stale).then((b) => b.open(t.store.db, alice, "value", sealed))).rejects.toThrow(MasterKeyError);
    // Even claiming the new key's id, the old key material does not unwrap the data keys.
    const impostor: Keyring = { current: { id: next.id, key: oldKeyring.current.key }, all: [{ id: next.id, key: oldKeyring.current.key }] };
    await expect(SecretBox.open(t.store, impostor).then((b) => b.open(t.store.db, alice, "value", sealed))).rejects.toThrow(DecryptError);
    expect(oldKey).not.toBe(next.id);
  });

  it("P17: a rotation with the key from the environment is all or nothing and needs no key file", async () => {
    const current = generateMasterKey();
    const envBox = await SecretBox.open(t.store, { current, all: [current] });
    await envBox.createDataKey(t.store.db, { kind: "user", id: "u-1" });
    const sealed = await envBox.seal(t.store.db, { kind: "user", id: "u-1" }, "totp", "JBSWY3DP");
    // The data keys made with the file's key do not unwrap with this keyring: the rotation must change nothing rather than half of them.
    const kekBefore = await kekIds();
    await expect(envBox.rotateMasterKey(generateMasterKey())).rejects.toThrow(MasterKeyError);
    expect(await kekIds()).toEqual(kekBefore);
    await t.store.db.deleteFrom("data_keys").where("owner_kind", "!=", "user").execute();

    const next = generateMasterKey();
    await envBox.rotateMasterKey(next);
    expect(existsSync(path.join(t.dataDir, nextKeyFileName))).toBe(false);
    const after = await SecretBox.open(t.store, { current: next, all: [next] });
    expect(await after.openString(t.store.db, { kind: "user", id: "u-1" }, "totp", sealed)).toBe("JBSWY3DP");
  });

  it("P17: a rotation interrupted before its transaction committed is rolled back on the next start", async () => {
    const sealed = await box.seal(t.store.db, alice, "value", "still here");
    const keyBefore = keyFileText();
    const kekBefore = await kekIds();
    // The crash left master.key.next on disk; the database still names the old key.
    writeKeyFile(path.join(t.dataDir, nextKeyFileName), generateMasterKey());

    const restarted = await reopenBox();
    expect(existsSync(path.join(t.dataDir, nextKeyFileName))).toBe(false);
    expect(keyFileText()).toBe(keyBefore);
    expect(restarted.masterKeyId).toBe(box.masterKeyId);
    expect(await kekIds()).toEqual(kekBefore);
    expect(await restarted.openString(t.store.db, alice, "value", sealed)).toBe("still here");
  });

  it("P17: a rotation interrupted after its transaction committed is completed on the next start", async () => {
    const sealed = await box.seal(t.store.db, alice, "value", "still here");
    const oldKey = readKeyFile(path.join(t.dataDir, keyFileName));
    const next = generateMasterKey();
    await box.rotateMasterKey(next);
    // Put the files back as they were between commit and promotion: the new key not yet renamed over the old.
    renameSync(path.join(t.dataDir, keyFileName), path.join(t.dataDir, nextKeyFileName));
    writeKeyFile(path.join(t.dataDir, keyFileName), oldKey);
    expect(loadKeyring(t.dataDir, undefined).keyring.current.id).toBe(oldKey.id);

    const restarted = await reopenBox();
    expect(restarted.masterKeyId).toBe(next.id);
    expect(readKeyFile(path.join(t.dataDir, keyFileName)).id).toBe(next.id);
    expect(existsSync(path.join(t.dataDir, nextKeyFileName))).toBe(false);
    expect(await restarted.openString(t.store.db, alice, "value", sealed)).toBe("still here");
  });
});

describe("master key file", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "slipway-key-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("P17: is created with mode 0600 on first start and read back on the next", () => {
    const first = loadKeyring(dir, undefined);
    expect(first.created).toBe(true);
    expect(statSync(path.join(dir, keyFileName)).mode & 0o777).toBe(0o600);
    const second = loadKeyring(dir, undefined);
    expect(second.created).toBe(false);
    expect(second.keyring.current.id).toBe(first.keyring.current.id);
  });

  it("P17: is refused, with the fix in the message, when other users may read it", () => {
    const { keyring } = loadKeyring(dir, undefined);
    const file = path.join(dir, keyFileName);
    chmodSync(file, 0o644);
    expect(() => loadKeyring(dir, undefined)).toThrow(MasterKeyError);
    expect(() => loadKeyring(dir, undefined)).toThrow(`readable by other users (mode 644); run: chmod 600 ${file}`);
    chmodSync(file, 0o600);
    expect(loadKeyring(dir, undefined).keyring.current.id).toBe(keyring.current.id);
  });
});
