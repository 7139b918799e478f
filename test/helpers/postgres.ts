import { spawn, spawnSync, type SpawnOptions } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";

/** A throwaway PostgreSQL server on 127.0.0.1, for tests only. */
export interface PostgresServer {
  /** The URL of the database made at start. */
  url: string;
  /** A new empty database on this server, so suites sharing the server never see each other's rows. */
  createDatabase(): Promise<string>;
  stop(): Promise<void>;
}

const PG_ROOT = "/usr/lib/postgresql";
const SUPERUSER = "postgres";

/** The bin directory of the newest PostgreSQL installed the Debian way. */
export function postgresBinDir(): string {
  const versions = existsSync(PG_ROOT)
    ? readdirSync(PG_ROOT)
        .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(path.join(PG_ROOT, v, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) {
    throw new Error(`no PostgreSQL server binaries under ${PG_ROOT}/<version>/bin; install them with: apt-get install postgresql`);
  }
  return path.join(PG_ROOT, versions[0]!, "bin");
}

/**
 * initdb and postgres refuse to run as root (as CI does), so there they run as the `postgres`
 * system user that the Debian package creates.
 */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => spawnSync("id", [flag, SUPERUSER], { encoding: "utf8" });
  const uid = id("-u");
  const gid = id("-g");
  if (uid.status !== 0 || gid.status !== 0) {
    throw new Error(`running as root, PostgreSQL must run as the "${SUPERUSER}" user, which does not exist; install it with: apt-get install postgresql`);
  }
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function run(bin: string, args: string[], opts: SpawnOptions): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { ...opts, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, output }));
  });
}

let databases = 0;

export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const user = runAs();
  const dir = mkdtempSync(path.join(tmpdir(), "slipway-pg-"));
  if (user) chownSync(dir, user.uid, user.gid);
  const dataDir = path.join(dir, "data");
  const logFile = path.join(dir, "server.log");
  // HOME and cwd must be somewhere the postgres user may enter.
  const spawnOpts: SpawnOptions = { cwd: dir, env: { ...process.env, HOME: dir, LC_ALL: "C" }, ...user };
  const pgCtl = path.join(bin, "pg_ctl");

  const fail = (what: string, output: string): never => {
    const log = existsSync(logFile) ? readFileSync(logFile, "utf8") : "";
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${what} failed:\n${output}\n${log}`);
  };

  const init = await run(path.join(bin, "initdb"), ["-D", dataDir, "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-sync"], spawnOpts);
  if (init.code !== 0) fail("initdb", init.output);

  let port = 0;
  // The free port can be taken between finding and binding it: try a few.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    const options = [
      "-c listen_addresses=127.0.0.1",
      `-p ${port}`,
      `-c unix_socket_directories=${dir}`,
      "-c fsync=off",
      "-c synchronous_commit=off",
      "-c full_page_writes=off",
      "-c max_connections=200",
    ].join(" ");
    const start = await run(pgCtl, ["-D", dataDir, "-l", logFile, "-w", "-t", "60", "-o", options, "start"], spawnOpts);
    if (start.code === 0) break;
    if (attempt === 3) fail("pg_ctl start", start.output);
  }

  let stopped = false;
  const stopNow = () => {
    if (stopped) return;
    stopped = true;
    process.off("exit", stopNow);
    spawnSync(pgCtl, ["-D", dataDir, "-m", "immediate", "-w", "stop"], { ...spawnOpts, stdio: "ignore" });
    rmSync(dir, { recursive: true, force: true });
  };
  // A test process that dies before stop() must not leave a server behind.
  process.on("exit", stopNow);

  const urlOf = (db: string) => `postgres://${SUPERUSER}@127.0.0.1:${port}/${db}`;
  const createDatabase = async () => {
    const name = `slipway_test_${process.pid}_${++databases}`;
    const client = new pg.Client({ connectionString: urlOf("postgres") });
    await client.connect();
    try {
      await client.query(`create database ${name}`);
    } finally {
      await client.end();
    }
    return urlOf(name);
  };

  try {
    return { url: await createDatabase(), createDatabase, stop: async () => stopNow() };
  } catch (err) {
    stopNow();
    throw err;
  }
}
