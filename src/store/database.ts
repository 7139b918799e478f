import { mkdirSync } from "node:fs";
import path from "node:path";
import SqliteDatabase from "better-sqlite3";
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type Migration, type Transaction } from "kysely";
import pg from "pg";
import type { Database } from "./schema.js";
import * as m001 from "./migrations/001_users.js";
import * as m002 from "./migrations/002_organizations_projects.js";
import * as m003 from "./migrations/003_secret_box.js";
import * as m004 from "./migrations/004_audit_log.js";
import * as m005 from "./migrations/005_deploy_keys_and_webhooks.js";
import * as m006 from "./migrations/006_builds.js";
import * as m007 from "./migrations/007_project_egress.js";
import * as m008 from "./migrations/008_env_file_keys.js";
import * as m009 from "./migrations/009_build_approvals.js";
import * as m010 from "./migrations/010_project_known_hosts.js";
import * as m011 from "./migrations/011_job_steps.js";
import * as m012 from "./migrations/012_project_fork_builds.js";
import * as m013 from "./migrations/013_scm_connections.js";
import * as m014 from "./migrations/014_repository_polls.js";
import * as m015 from "./migrations/015_project_host_key_confirmation.js";
import * as m016 from "./migrations/016_project_badges.js";
import * as m017 from "./migrations/017_workspaces.js";
import * as m018 from "./migrations/018_workspace_ports.js";
import * as m019 from "./migrations/019_user_ssh_keys.js";
import * as m020 from "./migrations/020_workspace_snapshots_and_guests.js";
import * as m021 from "./migrations/021_workspace_variables.js";
import * as m022 from "./migrations/022_workspace_time_limits.js";
import * as m023 from "./migrations/023_workspace_push_access.js";

export type Db = Kysely<Database>;
export type Tx = Transaction<Database>;
/** Either the database or a transaction in progress: concerns accept both. */
export type Executor = Db | Tx;
export type Engine = "sqlite" | "postgres";

const migrations: Record<string, Migration> = {
  "001_users": m001,
  "002_organizations_projects": m002,
  "003_secret_box": m003,
  "004_audit_log": m004,
  "005_deploy_keys_and_webhooks": m005,
  "006_builds": m006,
  "007_project_egress": m007,
  "008_env_file_keys": m008,
  "009_build_approvals": m009,
  "010_project_known_hosts": m010,
  "011_job_steps": m011,
  "012_project_fork_builds": m012,
  "013_scm_connections": m013,
  "014_repository_polls": m014,
  "015_project_host_key_confirmation": m015,
  "016_project_badges": m016,
  "017_workspaces": m017,
  "018_workspace_ports": m018,
  "019_user_ssh_keys": m019,
  "020_workspace_snapshots_and_guests": m020,
  "021_workspace_variables": m021,
  "022_workspace_time_limits": m022,
  "023_workspace_push_access": m023,
};

export interface Store {
  db: Db;
  engine: Engine;
  /** Serialises writers that must see each other's rows, e.g. the audit chain. */
  lock(tx: Tx, name: string): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function isPostgresUrl(url: string | undefined): url is string {
  return url !== undefined && /^postgres(ql)?:\/\//.test(url);
}

/** Opens the database (SQLite file in the data dir unless a PostgreSQL URL is given) and migrates it. */
export async function openStore(opts: { dataDir: string; databaseUrl?: string }): Promise<Store> {
  const engine: Engine = isPostgresUrl(opts.databaseUrl) ? "postgres" : "sqlite";
  const db = new Kysely<Database>({ dialect: engine === "postgres" ? postgresDialect(opts.databaseUrl!) : sqliteDialect(opts) });
  const store: Store = {
    db,
    engine,
    async lock(tx, name) {
      // SQLite allows one writer at a time already; PostgreSQL needs an explicit lock.
      if (engine === "postgres") await sql`select pg_advisory_xact_lock(hashtext(${name}))`.execute(tx);
    },
    async ping() {
      await sql`select 1`.execute(db);
    },
    close: () => db.destroy(),
  };
  try {
    await migrate(db);
  } catch (err) {
    await db.destroy();
    throw err;
  }
  return store;
}

function sqliteDialect(opts: { dataDir: string; databaseUrl?: string }): SqliteDialect {
  const file = opts.databaseUrl?.replace(/^sqlite:(\/\/)?/, "") || path.join(opts.dataDir, "slipway.db");
  if (file !== ":memory:") mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
  return new SqliteDialect({
    database: async () => {
      const database = new SqliteDatabase(file);
      database.pragma("journal_mode = WAL");
      database.pragma("synchronous = FULL");
      database.pragma("foreign_keys = ON");
      database.pragma("busy_timeout = 5000");
      return database;
    },
  });
}

function postgresDialect(url: string): PostgresDialect {
  return new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 10 }) });
}

async function migrate(db: Db): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations } });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === "Error");
  if (error) throw new Error(`database migration ${failed?.migrationName ?? ""} failed: ${String(error)}`);
}
