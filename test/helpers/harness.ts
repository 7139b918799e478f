import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from "fastify";
import { pino } from "pino";
import * as OTPAuth from "otpauth";
import { loadSettings, type SettingsInput } from "../../src/config/settings.js";
import { buildApp } from "../../src/http/app.js";
import { createServices, type Services } from "../../src/services.js";

export interface Harness {
  app: FastifyInstance;
  services: Services;
  dataDir: string;
  close(): Promise<void>;
}

/**
 * A real Slipway app (real database, secret box, routes and hooks) in a fresh temp data dir,
 * driven with Fastify's inject. `databaseUrl` runs it on PostgreSQL instead of SQLite. Its
 * workspaces have no network unless the test says so (then it runs in a test namespace).
 */
export async function startHarness(settings: SettingsInput = {}): Promise<Harness> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "slipway-test-"));
  const s = loadSettings({ dataDir, logLevel: "silent", workspaceNetwork: "none", ...settings }, {});
  const services = await createServices(s, pino({ level: "silent" }));
  const app = await buildApp(services, { logger: false });
  await app.ready();
  return {
    app,
    services,
    dataDir,
    async close() {
      await app.close();
      await services.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const PASSWORD = "correct horse battery staple";

export async function createUser(h: Harness, email: string, opts: { admin?: boolean; password?: string } = {}) {
  return h.services.users.create({ email, password: opts.password ?? PASSWORD, isAdmin: opts.admin ?? false, verified: true }, { actor: "test" });
}

/** A client of the API: a signed-in browser (cookie + CSRF token), a bearer token, or anonymous. */
export class Client {
  constructor(
    private readonly app: FastifyInstance,
    readonly auth: { cookie?: string; csrf?: string; bearer?: string } = {},
  ) {}

  request(method: InjectOptions["method"], url: string, body?: unknown, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    return this.app.inject({
      method,
      url,
      headers: {
        ...(this.auth.cookie && { cookie: this.auth.cookie }),
        ...(this.auth.csrf && { "x-csrf-token": this.auth.csrf }),
        ...(this.auth.bearer && { authorization: `Bearer ${this.auth.bearer}` }),
        ...(body !== undefined && { "content-type": "application/json" }),
        ...headers,
      },
      ...(body !== undefined && { payload: JSON.stringify(body) }),
    });
  }

  get = (url: string) => this.request("GET", url);
  post = (url: string, body?: unknown) => this.request("POST", url, body ?? {});
  put = (url: string, body?: unknown) => this.request("PUT", url, body ?? {});
  patch = (url: string, body?: unknown) => this.request("PATCH", url, body ?? {});
  delete = (url: string) => this.request("DELETE", url);
}

export function cookieHeader(res: LightMyRequestResponse): string {
  return res.cookies.map((c) => `${c.name}=${c.value}`).join("; ");
}

export async function signIn(h: Harness, email: string, password = PASSWORD, totp?: string): Promise<Client> {
  const res = await h.app.inject({ method: "POST", url: "/api/v1/session", payload: { email, password, ...(totp && { totp }) } });
  if (res.statusCode !== 200) throw new Error(`sign-in failed: ${res.statusCode} ${res.body}`);
  return new Client(h.app, { cookie: cookieHeader(res), csrf: res.json().csrfToken });
}

export async function tokenClient(h: Harness, browser: Client, scopes: string[]): Promise<Client> {
  const res = await browser.post("/api/v1/tokens", { name: `t-${scopes.join(",")}`, scopes });
  if (res.statusCode !== 201) throw new Error(`token creation failed: ${res.statusCode} ${res.body}`);
  return new Client(h.app, { bearer: res.json().token });
}

export const anonymous = (h: Harness) => new Client(h.app);

/** The current code of an otpauth:// URI, or the next one when `nextStep` (codes are single-use). */
export function totpCode(uri: string, stepOffset = 0): string {
  const totp = OTPAuth.URI.parse(uri) as OTPAuth.TOTP;
  return totp.generate({ timestamp: Date.now() + stepOffset * 30_000 });
}

export const cli = path.resolve("dist/src/cli/main.js");

/** The mails in the outbox, oldest first, with their quoted-printable bodies decoded. */
export function outbox(h: Harness): string[] {
  const dir = path.join(h.dataDir, "outbox");
  let files: string[];
  try {
    files = readdirSync(dir).sort();
  } catch {
    return [];
  }
  return files.map((f) =>
    readFileSync(path.join(dir, f), "utf8")
      .replace(/=\r?\n/g, "")
      .replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))),
  );
}

/** The token of the newest link to `page` mailed to `to`; waits a moment, as some mail is sent in the background. */
export async function mailedToken(h: Harness, to: string, page: string): Promise<string> {
  const link = new RegExp(`${page}#token=([A-Za-z0-9_-]+)`);
  for (let i = 0; i < 100; i++) {
    const match = outbox(h)
      .reverse()
      .filter((m) => m.includes(`To: ${to}`))
      .map((m) => link.exec(m))
      .find(Boolean);
    if (match) return match[1]!;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no ${page} link mailed to ${to}`);
}
