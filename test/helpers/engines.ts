import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe } from "vitest";
import { openStore, type Engine, type Store } from "../../src/store/database.js";
import { startPostgres, type PostgresServer } from "./postgres.js";

export interface EngineUnderTest {
  name: Engine;
  /**
   * The databaseUrl to hand to startHarness, openStore or loadSettings: undefined for SQLite
   * (a file in the data dir), a fresh empty database for PostgreSQL.
   */
  databaseUrl(): Promise<string | undefined>;
}

/** One PostgreSQL server per test file (starting one costs seconds); each caller gets its own database. */
let server: Promise<PostgresServer> | undefined;
let users = 0;

function postgres(): EngineUnderTest {
  users++;
  afterAll(async () => {
    if (--users === 0 && server) {
      const s = server;
      server = undefined;
      await (await s).stop();
    }
  });
  return {
    name: "postgres",
    async databaseUrl() {
      server ??= startPostgres();
      return (await server).createDatabase();
    },
  };
}

const sqlite = (): EngineUnderTest => ({ name: "sqlite", databaseUrl: async () => undefined });

/** Runs the same suite once on SQLite and once on PostgreSQL. */
export function describeEachEngine(title: string, suite: (engine: EngineUnderTest) => void): void {
  describe.each([{ name: "sqlite" as const }, { name: "postgres" as const }])(`${title} ($name)`, ({ name }) => {
    suite(name === "sqlite" ? sqlite() : postgres());
  });
}

export interface TempStore {
  store: Store;
  dataDir: string;
  databaseUrl: string | undefined;
  /** The same database opened again, as a restarted server would. */
  reopen(): Promise<Store>;
  close(): Promise<void>;
}

/** A migrated store on a fresh database of the engine, with its own temp data dir. */
export async function tempStore(engine: EngineUnderTest): Promise<TempStore> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "slipway-store-"));
  const databaseUrl = await engine.databaseUrl();
  const opened: Store[] = [];
  const reopen = async () => {
    const s = await openStore({ dataDir, databaseUrl });
    opened.push(s);
    return s;
  };
  const store = await reopen();
  return {
    store,
    dataDir,
    databaseUrl,
    reopen,
    async close() {
      for (const s of opened) await s.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
