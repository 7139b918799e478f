#!/usr/bin/env node
import { existsSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { emailSchema } from "../auth/users.js";
import { passwordSchema } from "../auth/passwords.js";
import { loadSettings, SettingsError, type Settings, type SettingsInput } from "../config/settings.js";
import { generateMasterKey, MasterKeyError, parseMasterKey } from "../crypto/master-key.js";
import { AppError } from "../errors.js";
import { createLogger } from "../http/logger.js";
import { startServer } from "../http/server.js";
import { startEmbeddedRunner } from "../runner/embedded.js";
import { Runner } from "../runner/runner.js";
import { ImageBuilder } from "../images/image-builder.js";
import { imageStoreFromEnv } from "../images/image-store.js";
import { BwrapBackend } from "../sandbox/bwrap-backend.js";
import { createServices, type Services } from "../services.js";
import { isPostgresUrl } from "../store/database.js";
import { version } from "../version.js";
import { claimDataDir, DataDirBusyError, describe, lockHolder, type LockPurpose } from "./server-lock.js";
import { readSecretLine } from "./stdin.js";
import { runCommand, RunUsageError } from "./run.js";
import { secretsCommand, secretsHelp } from "./secrets.js";
import { wsCommand, wsHelp, wsSsh } from "./ws.js";
import { CliUsageError } from "./api-client.js";
import { validateCommand } from "./validate.js";

const help = `slipway ${version} — self-hosted CI/CD and development workspaces

Usage:
  slipway serve [--host 127.0.0.1] [--port 8080] [--data-dir ./slipway-data]
  slipway admin create-user --email you@example.com [--name NAME] [--admin] [--org NAME]
  slipway admin rotate-master-key
  slipway admin audit verify
  slipway admin create-runner --name NAME                  # prints the runner's token once
  slipway runner --server https://ci.example.com [--concurrency 2]   # token in SLIPWAY_RUNNER_TOKEN
  slipway validate [DIR]                                  # check the pipeline and workspace configs (default: .)
  slipway run [STEP…] [--secret NAME=VALUE]… [--env-file FILE] [--branch B]
  slipway secrets encrypt|decrypt …                       # encrypted env files (see slipway secrets --help)
  slipway ws open|list|stop|start|ssh|snapshot|share …    # workspaces on a server (see slipway ws --help)
  slipway --version

Examples:
  slipway serve --port 0                                  # any free port; the first log line says which
  echo "$PASSWORD" | slipway admin create-user --email ada@example.com --admin --org acme
  slipway admin audit verify                              # exit 1 and names each altered row
  slipway validate ~/src/app                              # file:line:col for each problem; exit 2 on errors
  slipway run test --secret NPM_TOKEN=…                   # this repo's pipeline in local sandboxes; exit 1 if a step fails

Passwords are read from stdin (a prompt on a terminal), never from arguments. rotate-master-key
makes the new key itself, or reads it from stdin when SLIPWAY_MASTER_KEY is set. Stop the
server (every server, on PostgreSQL) before rotating.
Settings also come from the environment: SLIPWAY_HOST, SLIPWAY_PORT, SLIPWAY_DATA_DIR,
SLIPWAY_DATABASE_URL (postgres://…), SLIPWAY_MASTER_KEY, SLIPWAY_PUBLIC_URL, SLIPWAY_TLS_CERT,
SLIPWAY_TLS_KEY, SLIPWAY_SIGNUP, SLIPWAY_SMTP_URL, SLIPWAY_SECURITY_CONTACT, … (see README).
Step images: \`slipway run\` and \`slipway runner\` unpack them into SLIPWAY_IMAGE_CACHE (default
~/.cache/slipway/images; \`serve\` uses <data dir>/images), take local OCI layouts from
SLIPWAY_IMAGE_LAYOUTS and trust registry CAs in SLIPWAY_REGISTRY_CERTS.

Exit codes: 0 ok, 1 the work failed, 2 bad usage or bad settings.`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  // ssh's own options follow the workspace id: they are ssh's to read, not ours.
  if (argv[0] === "ws" && argv[1] === "ssh") {
    const args = argv.slice(2);
    return args[0] === "--server" ? wsSsh(args.slice(2), args[1]) : wsSsh(args, undefined);
  }
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      "data-dir": { type: "string" },
      email: { type: "string" },
      name: { type: "string" },
      org: { type: "string" },
      admin: { type: "boolean" },
      secret: { type: "string", multiple: true },
      "env-file": { type: "string" },
      branch: { type: "string" },
      server: { type: "string" },
      concurrency: { type: "string" },
      project: { type: "string" },
      "public-key": { type: "string" },
      token: { type: "string" },
      ref: { type: "string" },
      off: { type: "boolean" },
      push: { type: "boolean" },
      approve: { type: "string" },
      deny: { type: "string" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean" },
    },
  });
  if (values.version) return out(version);
  if (positionals[0] === "secrets" && (values.help || positionals.length === 1)) return out(secretsHelp);
  if (positionals[0] === "ws" && (values.help || positionals.length === 1)) return out(wsHelp);
  if (values.help || positionals.length === 0) return out(help);
  const flags: SettingsInput = { host: values.host, port: values.port as unknown as number, dataDir: values["data-dir"] };
  const settings = loadSettings(flags);
  const command = positionals.join(" ");
  switch (["validate", "run", "secrets", "ws"].includes(positionals[0]!) ? positionals[0] : command) {
    case "ws":
      return wsCommand(positionals.slice(1), { server: values.server, ref: values.ref, push: values.push, name: values.name, off: values.off, approve: values.approve, deny: values.deny });
    case "validate":
      return validate(positionals.slice(1));
    case "run":
      return runCommand(".", { steps: positionals.slice(1), secrets: values.secret ?? [], envFile: values["env-file"], branch: values.branch });
    case "secrets":
      return secretsCommand(positionals.slice(1), { server: values.server, project: values.project, publicKey: values["public-key"], token: values.token });
    case "serve":
      return serve(settings);
    case "admin create-user":
      return createUser(settings, values);
    case "admin rotate-master-key":
      return rotateMasterKey(settings);
    case "admin audit verify":
      return auditVerify(settings);
    case "runner":
      return runnerCommand(values.server, values.concurrency);
    case "admin create-runner":
      return createRunner(settings, values.name);
    default:
      throw new UsageError(`unknown command: ${command}\n\n${help}`);
  }
}

function validate(args: string[]): number {
  if (args.length > 1) throw new UsageError("usage: slipway validate [DIR]");
  return validateCommand(args[0] ?? ".");
}

function out(text: string): number {
  process.stdout.write(text + "\n");
  return 0;
}

async function serve(settings: Settings): Promise<number> {
  const release = claimExclusively(settings.dataDir, "serve");
  try {
    const log = createLogger(settings.logLevel);
    const server = await startServer(settings, log);
    log.info({ url: server.url, dataDir: settings.dataDir, database: server.services.store.engine }, `Slipway ${version} is running at ${server.url}`);
    if (server.tls?.selfSigned) log.info({ fingerprint: server.tls.fingerprint }, "serving a self-signed certificate; check this SHA-256 fingerprint when your browser asks");
    if (server.services.masterKeyCreated) log.warn({ file: path.join(settings.dataDir, "master.key") }, "created a new master key: back it up; without it the secrets in the database cannot be read");
    log.info(`mail goes to the ${server.services.mailer.describe()}`);
    const stopRunner = settings.embeddedRunner ? await startEmbeddedRunner(server.app, server.services.runners, server.services.images, log) : undefined;
    if (!(await server.services.users.any())) log.info(`no users yet: create the first admin with: ${invokedAs()} admin create-user --email you@example.com --admin --org my-team`);
    await new Promise<void>((resolve) => {
      for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => resolve());
    });
    log.info("shutting down");
    await stopRunner?.();
    await server.close();
    return 0;
  } finally {
    release();
  }
}

/** How the user ran this program, for hints they can paste: `slipway` on the PATH, else `node <path>`. */
function invokedAs(): string {
  const script = process.argv[1] ?? "slipway";
  return path.basename(script) === "slipway" ? "slipway" : `node ${path.relative(process.cwd(), script) || script}`;
}

function claimExclusively(dataDir: string, purpose: LockPurpose): () => void {
  try {
    return claimDataDir(dataDir, purpose);
  } catch (err) {
    if (err instanceof DataDirBusyError) throw new UsageError(`${err.message}; stop it first, or pass --data-dir`);
    throw err;
  }
}

/**
 * Admin commands share the data dir with a running server, but never run beside a key rotation.
 * With nobody else there they hold it themselves, so no rotation starts under them, and only then
 * may they finish a rotation that a crash interrupted.
 */
async function withServices<T>(settings: Settings, fn: (s: Services) => Promise<T>, exclusive?: LockPurpose): Promise<T> {
  const holder = lockHolder(settings.dataDir);
  if (holder && (exclusive || holder.purpose !== "serve")) throw new UsageError(`${describe(holder)} is using ${settings.dataDir}; ${exclusive ? "stop it first" : "wait for it to finish"}`);
  const release = holder ? () => undefined : claimExclusively(settings.dataDir, exclusive ?? "admin");
  try {
    const services = await createServices(settings, pino({ level: "warn" }, pino.destination(2)), { settleRotation: !holder });
    try {
      return await fn(services);
    } finally {
      await services.close();
    }
  } finally {
    release();
  }
}

/** Commands that only make sense on an existing install refuse a data dir with no database in it (a typo). */
function requireInstall(settings: Settings): void {
  if (!isPostgresUrl(settings.databaseUrl) && !existsSync(path.join(settings.dataDir, "slipway.db"))) {
    throw new UsageError(`no Slipway database in ${settings.dataDir}; pass the right --data-dir (or SLIPWAY_DATA_DIR)`);
  }
}

async function createUser(settings: Settings, values: { email?: string; name?: string; admin?: boolean; org?: string }): Promise<number> {
  const email = emailSchema.safeParse(values.email ?? "");
  if (!email.success) throw new UsageError("give the new user's address: --email you@example.com");
  const password = passwordSchema.safeParse(await readSecretLine(`Password for ${email.data}: `));
  if (!password.success) throw new UsageError(`password: ${password.error.issues[0]!.message} (it is read from stdin)`);
  const fresh = !isPostgresUrl(settings.databaseUrl) && !existsSync(path.join(settings.dataDir, "slipway.db"));
  return withServices(settings, async (s) => {
    if (fresh) process.stdout.write(`set up a new Slipway data dir in ${settings.dataDir}\n`);
    const user = await s.users.create({ email: email.data, name: values.name, password: password.data, isAdmin: values.admin === true, verified: true }, { actor: "cli" });
    process.stdout.write(`created ${user.isAdmin ? "admin " : ""}user ${user.email} (${user.id})\n`);
    if (values.org) {
      const ctx = { principal: { userId: user.id, email: user.email, isAdmin: user.isAdmin, twoFactor: false, via: "session" as const, scopes: "all" as const }, ip: null };
      const org = await s.orgs.create(ctx, values.org);
      process.stdout.write(`created organization ${org.name} (${org.id}) owned by ${user.email}\n`);
    }
    return 0;
  });
}

async function rotateMasterKey(settings: Settings): Promise<number> {
  requireInstall(settings);
  let next = generateMasterKey();
  if (settings.masterKey) {
    const line = await readSecretLine("New master key (base64 or hex, 32 bytes): ");
    if (!line.trim()) throw new UsageError("SLIPWAY_MASTER_KEY is set, so give the new key on stdin (make one with: openssl rand -base64 32)");
    next = parseMasterKey(line);
  }
  return withServices(
    settings,
    async (s) => {
      const old = s.box.masterKeyId;
      const { rewrapped } = await s.box.rotateMasterKey(next, (tx, count) =>
        s.audit.record({ action: "crypto.master_key_rotated", actor: "cli", details: { from: old, to: next.id, rewrapped: count } }, tx),
      );
      process.stdout.write(`rewrapped ${rewrapped} data keys: master key ${old} → ${next.id}\n`);
      if (settings.masterKey) process.stdout.write("now set SLIPWAY_MASTER_KEY to the new key before starting the server; the old key opens nothing any more\n");
      return 0;
    },
    "rotate-master-key",
  );
}

/** A runner on this machine for a server elsewhere; its token comes from the environment or stdin, never argv. */
async function runnerCommand(server: string | undefined, concurrency: string | undefined): Promise<number> {
  if (!server || !/^https?:\/\//.test(server)) throw new UsageError("give the server: slipway runner --server https://ci.example.com");
  const token = process.env.SLIPWAY_RUNNER_TOKEN || (await readSecretLine("Runner token: ")).trim();
  if (!token) throw new UsageError("give the runner token in SLIPWAY_RUNNER_TOKEN or on stdin (slipway admin create-runner prints one)");
  const parallel = Number(concurrency ?? 2);
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) throw new UsageError("--concurrency is a whole number from 1 to 64");
  const log = createLogger("info");
  const backend = new BwrapBackend({ onWarning: (m) => log.warn(m) });
  const images = imageStoreFromEnv();
  const runner = new Runner({ server: server.replace(/\/$/, ""), token, backend, images, builder: new ImageBuilder(backend, images), imageCache: images.projectCaches, push: (...args) => images.push(...args), network: { mode: "outbound" }, onError: (err) => log.error({ err }, "runner") });
  // Fails here, before any job, when the server's certificate does not verify or the token is wrong.
  await runner.call("/runner/lease", { waitMs: 0 });
  runner.start(parallel);
  log.info({ server, concurrency: parallel }, "runner started; waiting for jobs");
  await new Promise<void>((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => resolve());
  });
  await runner.stop();
  return 0;
}

async function createRunner(settings: Settings, name: string | undefined): Promise<number> {
  requireInstall(settings);
  if (!name) throw new UsageError("name the runner: --name build-01");
  return withServices(settings, async (s) => {
    const { id, token } = await s.runners.register(name, { actor: "cli" });
    process.stderr.write(`registered runner ${name} (${id}); its token, shown only now:\n`);
    process.stdout.write(`${token}\n`);
    process.stderr.write("start it with: SLIPWAY_RUNNER_TOKEN=<token> slipway runner --server https://<this server>\n");
    return 0;
  });
}

async function auditVerify(settings: Settings): Promise<number> {
  requireInstall(settings);
  return withServices(settings, async (s) => {
    const { rows, problems } = await s.audit.verify();
    if (problems.length === 0) {
      process.stdout.write(`audit log intact: ${rows} rows verified\n`);
      return 0;
    }
    for (const p of problems) process.stdout.write(`TAMPERED ${p.message}\n`);
    process.stdout.write(`audit log broken: ${problems.length} problem(s) in ${rows} rows\n`);
    return 1;
  });
}

// Everything Slipway writes (database, keys, mail) is for this user only.
process.umask(0o077);
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const usage = err instanceof UsageError || err instanceof RunUsageError || err instanceof CliUsageError || err instanceof SettingsError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    const message = err instanceof AppError || err instanceof Error ? err.message : String(err);
    process.stderr.write(`slipway: ${message}\n`);
    process.exit(usage || err instanceof MasterKeyError ? 2 : 1);
  },
);
