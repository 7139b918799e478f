import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { describeEachEngine, tempStore, type TempStore } from "../../test/helpers/engines.js";
import { AuditLog, type AuditEntry } from "./audit-log.js";

const entry = (n: number): AuditEntry => ({ action: "project.created", actor: `user${n}@example.com`, actorId: `u${n}`, orgId: "o1", target: `p${n}`, ip: "127.0.0.1", details: { n } });

describeEachEngine("audit log", (engine) => {
  let t: TempStore;
  let audit: AuditLog;
  const rows = () => t.store.db.selectFrom("audit_log").selectAll().orderBy("seq", "asc").execute();

  async function recordMany(count: number): Promise<void> {
    for (let n = 1; n <= count; n++) await audit.record(entry(n));
    // Control for every tampering test: the untouched chain verifies.
    expect(await audit.verify()).toEqual({ rows: count, problems: [] });
  }

  beforeEach(async () => {
    t = await tempStore(engine);
    audit = new AuditLog(t.store, randomBytes(32));
  });
  afterEach(() => t.close());

  it("P25: chains each row to the one before it, and an intact chain verifies", async () => {
    await recordMany(4);
    const chain = await rows();
    expect(chain.map((r) => Number(r.seq))).toEqual([1, 2, 3, 4]);
    expect(chain[0]!.prev_hash).toBe("0".repeat(64));
    for (let i = 1; i < chain.length; i++) expect(chain[i]!.prev_hash).toBe(chain[i - 1]!.hash);
    const [newest] = await audit.list(t.store.db, { orgId: "o1", limit: 1 });
    expect(newest).toMatchObject({ seq: 4, action: "project.created", actor: "user4@example.com", target: "p4", details: { n: 4 } });
  });

  it("P25: an edited field is detected and the row named", async () => {
    await recordMany(5);
    for (const [column, value] of [["actor", "someone-else@example.com"], ["details", '{"n":99}'], ["at", "2000-01-01T00:00:00.000Z"]] as const) {
      const original = (await rows())[2]!;
      await t.store.db.updateTable("audit_log").set({ [column]: value }).where("seq", "=", 3).execute();
      const { problems } = await audit.verify();
      expect(problems).toEqual([{ seq: 3, orgId: "o1", problem: "edited", message: expect.stringContaining("row 3 ") }]);
      await t.store.db.updateTable("audit_log").set({ [column]: original[column] }).where("seq", "=", 3).execute();
      expect((await audit.verify()).problems).toEqual([]);
    }
  });

  it("P25: a deleted row in the middle is detected and named", async () => {
    await recordMany(5);
    await t.store.db.deleteFrom("audit_log").where("seq", "=", 3).execute();
    const { rows: count, problems } = await audit.verify();
    expect(count).toBe(4);
    expect(problems).toEqual([{ seq: 4, orgId: null, problem: "missing", message: "row 3 before row 4 were deleted" }]);
  });

  it("P25: two rows whose contents were swapped (a reordering) are both detected and named", async () => {
    await recordMany(5);
    const [two, three] = (await rows()).slice(1, 3);
    const contents = ({ seq: _seq, ...rest }: typeof two & object) => rest;
    await t.store.db.transaction().execute(async (tx) => {
      await tx.updateTable("audit_log").set(contents(three!)).where("seq", "=", 2).execute();
      await tx.updateTable("audit_log").set(contents(two!)).where("seq", "=", 3).execute();
    });
    const { problems } = await audit.verify();
    // Each moved row no longer matches its place, and the row after them no longer follows.
    expect(problems.map((p) => [p.seq, p.problem])).toEqual([
      [2, "edited"],
      [3, "edited"],
      [4, "out_of_order"],
    ]);
    expect(problems[0]!.message).toContain("row 2 ");
    expect(problems[1]!.message).toContain("row 3 ");
  });

  it("P25: a row whose hash was replaced breaks the link to the next row, which is named", async () => {
    await recordMany(3);
    await t.store.db.updateTable("audit_log").set({ hash: "f".repeat(64) }).where("seq", "=", 2).execute();
    const { problems } = await audit.verify();
    expect(problems.map((p) => [p.seq, p.problem])).toEqual([
      [2, "edited"],
      [3, "out_of_order"],
    ]);
    expect(problems[1]!.message).toContain("row 3 ");
  });

  it("P25: rows written with another key do not verify", async () => {
    await recordMany(2);
    await new AuditLog(t.store, randomBytes(32)).record(entry(3));
    expect((await audit.verify()).problems).toEqual([{ seq: 3, orgId: "o1", problem: "edited", message: expect.stringContaining("row 3 ") }]);
  });

  it("P25: a chain longer than one read of the walk verifies, and a break beyond the first read is found", async () => {
    await recordMany(1003);
    await t.store.db.deleteFrom("audit_log").where("seq", "=", 1002).execute();
    expect(await audit.verify()).toEqual({ rows: 1002, problems: [{ seq: 1003, orgId: null, problem: "missing", message: "row 1002 before row 1003 were deleted" }] });
  });

  it("P25: an organisation is told of every break, but rows of other organisations are only counted", async () => {
    await recordMany(3);
    await audit.record({ action: "secret.set", actor: "other@example.com", orgId: "o2", target: "SECRET_NAME", details: {} });
    expect(await audit.verifyFor("o1")).toEqual({ verified: true, problem: null, checkedAt: expect.any(String) });
    await t.store.db.updateTable("audit_log").set({ actor: "someone-else@example.com" }).where("seq", "in", [2, 4]).execute();
    const seen = await audit.verifyFor("o1");
    expect(seen.verified).toBe(false);
    expect(seen.problem).toContain("row 2 (project.created) was changed after it was written");
    expect(seen.problem).toContain("1 problem(s) in other organizations' rows");
    expect(seen.problem).not.toContain("secret.set");
    expect((await audit.verifyFor("o2")).problem).toContain("row 4 (secret.set) was changed");
  });

  it("an organisation's check reuses a walk younger than the age it allows, and says when that walk began", async () => {
    for (let n = 1; n <= 3; n++) await audit.record(entry(n));
    const walks = vi.spyOn(t.store.db, "selectFrom");
    const first = await audit.verifyFor("o1", 60_000);
    expect(first).toEqual({ verified: true, problem: null, checkedAt: expect.any(String) });
    expect(Date.now() - Date.parse(first.checkedAt)).toBeLessThan(60_000);
    const walked = walks.mock.calls.length;
    expect(walked).toBeGreaterThan(0);
    await t.store.db.updateTable("audit_log").set({ actor: "someone-else@example.com" }).where("seq", "=", 2).execute();
    // Within the minute: the same walk answers, without reading the log, for any organisation.
    expect(await audit.verifyFor("o1", 60_000)).toEqual(first);
    expect((await audit.verifyFor("o2", 60_000)).checkedAt).toBe(first.checkedAt);
    expect(walks.mock.calls.length).toBe(walked);
    // A check that allows no age (and the CLI's verify) walks again, and sees the edit.
    const fresh = await audit.verifyFor("o1");
    expect(fresh.verified).toBe(false);
    expect(Date.parse(fresh.checkedAt)).toBeGreaterThanOrEqual(Date.parse(first.checkedAt));
    expect((await audit.verify()).problems).toHaveLength(1);
    walks.mockRestore();
  });

  it("P25: many concurrent appends keep one valid chain", async () => {
    const count = 50;
    await Promise.all(Array.from({ length: count }, (_, i) => audit.record(entry(i + 1))));
    expect(await audit.verify()).toEqual({ rows: count, problems: [] });
    const targets = (await rows()).map((r) => r.target).sort();
    expect(targets).toEqual(Array.from({ length: count }, (_, i) => `p${i + 1}`).sort());
  });
});
