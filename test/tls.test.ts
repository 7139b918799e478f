import { execFileSync } from "node:child_process";
import type { X509Certificate } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSettings, type SettingsInput } from "../src/config/settings.js";
import { startServer, type RunningServer } from "../src/http/server.js";
import { PASSWORD } from "./helpers/harness.js";

/*
 * P04 on real sockets. Tests may only use loopback, so the "non-loopback" server binds 127.1:
 * the same address as 127.0.0.1, spelt so that the server does not recognise it as loopback and
 * takes the path of a public bind (TLS with a self-signed certificate made on first start).
 * Every test asserts the socket really is bound to 127.0.0.1.
 */

const ME = "tls-owner@example.com";
// OpenSSL 3 allows TLS 1.0/1.1 only at security level 0.
const LEGACY_CIPHERS = "DEFAULT@SECLEVEL=0";

interface Started {
  srv: RunningServer;
  dataDir: string;
  port: number;
  stop(): Promise<void>;
  /** Stops the server and removes its data dir. */
  dispose(): Promise<void>;
}

/** Starts the real server (fresh data dir with one user, unless given one) and checks it bound loopback. */
async function start(settings: SettingsInput, existingDataDir?: string): Promise<Started> {
  const dataDir = existingDataDir ?? mkdtempSync(path.join(tmpdir(), "slipway-tls-"));
  const srv = await startServer(loadSettings({ dataDir, port: 0, logLevel: "silent", ...settings }, {}), pino({ level: "silent" }));
  const address = srv.app.server.address() as net.AddressInfo;
  expect(address.address).toBe("127.0.0.1");
  if (!existingDataDir) await srv.services.users.create({ email: ME, password: PASSWORD, isAdmin: false, verified: true }, { actor: "test" });
  const stop = () => srv.close();
  const dispose = async () => {
    await stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  return { srv, dataDir, port: address.port, stop, dispose };
}

type Handshake = { ok: true; protocol: string; peer: X509Certificate } | { ok: false; error: string };

/** A TLS handshake with 127.0.0.1 that verifies the server's certificate against `ca`. */
function handshake(port: number, ca: string, opts: tls.ConnectionOptions = {}): Promise<Handshake> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca, ...opts }, () => {
      const result: Handshake = { ok: true, protocol: socket.getProtocol()!, peer: socket.getPeerX509Certificate()! };
      socket.end();
      resolve(result);
    });
    socket.on("error", (err) => resolve({ ok: false, error: err.message }));
  });
}

/** Sends a plain-text HTTP request to a port and returns whatever comes back until it closes. */
function rawHttp(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host: "127.0.0.1", port }, () => socket.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
    socket.on("data", (c) => chunks.push(c));
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
    socket.on("error", (err) => ((err as NodeJS.ErrnoException).code === "ECONNRESET" ? resolve(Buffer.concat(chunks).toString("latin1")) : reject(err)));
  });
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function request(base: string, ca: string | undefined, method: string, url: string, body?: unknown): Promise<Answer> {
  const target = new URL(url, base);
  const lib = target.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = lib.request(
      { host: "127.0.0.1", port: target.port, path: target.pathname, method, ...(ca && { ca }), headers: payload ? { "content-type": "application/json" } : {} },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

const sessionCookie = (a: Answer) => ([] as string[]).concat(a.headers["set-cookie"] ?? []).find((c) => c.startsWith("slipway_session="));

async function signIn(base: string, ca?: string): Promise<Answer> {
  const res = await request(base, ca, "POST", "/api/v1/session", { email: ME, password: PASSWORD });
  expect(res.status, res.body).toBe(200);
  return res;
}

let plain: Started;
let plainUrl: string;
beforeAll(async () => {
  plain = await start({ host: "127.0.0.1" });
  plainUrl = `http://127.0.0.1:${plain.port}`;
  expect(plain.srv.tls).toBeUndefined();
});
const certDir = mkdtempSync(path.join(tmpdir(), "slipway-cert-"));
afterAll(async () => {
  await plain.dispose();
  rmSync(certDir, { recursive: true, force: true });
});

function operatorCertificate(dir: string): { tlsCertFile: string; tlsKeyFile: string } {
  const tlsCertFile = path.join(dir, "cert.pem");
  const tlsKeyFile = path.join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", tlsKeyFile, "-out", tlsCertFile], { stdio: "ignore" });
  return { tlsCertFile, tlsKeyFile };
}

describe.each([
  { setup: "a non-loopback bind with the self-signed certificate made on first start", settings: (): SettingsInput => ({ host: "127.1" }), selfSigned: true },
  { setup: "the operator's certificate (SLIPWAY_TLS_CERT/KEY)", settings: (): SettingsInput => ({ host: "127.0.0.1", ...operatorCertificate(certDir) }), selfSigned: false },
])("P04: TLS with $setup", ({ settings, selfSigned }) => {
  let s: Started;
  let ca: string;
  let base: string;
  beforeAll(async () => {
    s = await start(settings());
    expect(s.srv.tls?.selfSigned).toBe(selfSigned);
    ca = s.srv.tls!.cert;
    base = `https://127.0.0.1:${s.port}`;
    expect(s.srv.url).toMatch(/^https:\/\//);
  });
  afterAll(() => s.dispose());

  it.each(["TLSv1.2", "TLSv1.3"] as const)("P04: a %s handshake succeeds with a certificate valid for 127.0.0.1", async (version) => {
    const res = await handshake(s.port, ca, { minVersion: version, maxVersion: version });
    expect(res).toMatchObject({ ok: true, protocol: version });
  });

  it.each(["TLSv1", "TLSv1.1"] as const)("P04: %s is refused (the same client completes it with a server that allows it)", async (version) => {
    const client = { minVersion: version, maxVersion: version, ciphers: LEGACY_CIPHERS };
    const control = tls.createServer({ cert: s.srv.tls!.cert, key: s.srv.tls!.key, minVersion: "TLSv1", ciphers: LEGACY_CIPHERS }, (sock) => sock.end());
    await new Promise<void>((r) => control.listen(0, "127.0.0.1", r));
    try {
      expect(await handshake((control.address() as net.AddressInfo).port, ca, client)).toMatchObject({ ok: true, protocol: version });
      expect(await handshake(s.port, ca, client)).toMatchObject({ ok: false, error: expect.stringContaining("alert protocol version") });
    } finally {
      await new Promise((r) => control.close(r));
    }
  });

  it("P04: plain HTTP to the TLS port gets no HTTP response (the same request to a loopback HTTP server does)", async () => {
    expect(await rawHttp(plain.port)).toMatch(/^HTTP\/1\.1 200/);
    expect(await rawHttp(s.port)).not.toContain("HTTP/");
  });

  it("P04: HSTS is sent over TLS, not by a plain loopback server", async () => {
    const secure = await request(base, ca, "GET", "/healthz");
    expect(secure.status).toBe(200);
    expect(secure.headers["strict-transport-security"]).toMatch(/max-age=\d{7,}/);
    const insecure = await request(plainUrl, undefined, "GET", "/healthz");
    expect(insecure.status).toBe(200);
    expect(insecure.headers["strict-transport-security"]).toBeUndefined();
  });

  it("P04: the session cookie is Secure over TLS (and only there)", async () => {
    expect(sessionCookie(await signIn(base, ca))).toMatch(/;\s*Secure/i);
    expect(sessionCookie(await signIn(plainUrl))).not.toMatch(/;\s*Secure/i);
  });
});

/** Every file under a directory, recursively. */
function filesIn(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? filesIn(p) : [p];
  });
}

function findIn(dir: string, needles: (string | Buffer)[]): string[] {
  const hits: string[] = [];
  for (const file of filesIn(dir)) {
    const content = readFileSync(file);
    for (const n of needles) if (content.includes(n)) hits.push(`${path.relative(dir, file)}: ${String(n).slice(0, 20)}`);
  }
  return hits;
}

describe("P04: the self-signed certificate", () => {
  let s: Started;
  beforeAll(async () => {
    s = await start({ host: "127.1" });
  });
  afterAll(() => s.dispose());

  it("P04: its fingerprint is the SHA-256 of the certificate the server presents", async () => {
    const res = await handshake(s.port, s.srv.tls!.cert);
    if (!res.ok) throw new Error(res.error);
    expect(res.peer.fingerprint256).toBe(s.srv.tls!.fingerprint);
    expect(s.srv.tls!.fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it("P04, P17: its private key is sealed in the database by the secret box, never on disk in plaintext", async () => {
    const key = s.srv.tls!.key;
    const body = key.split("\n").filter((l) => l && !l.startsWith("-----"));
    const der = Buffer.from(body.join(""), "base64");
    // The search does reach the database's contents: a plaintext column is found.
    await s.srv.services.users.create({ email: "marker-7f3a@example.com", password: PASSWORD, isAdmin: false, verified: true }, { actor: "test" });
    expect(findIn(s.dataDir, ["marker-7f3a@example.com"]).length).toBeGreaterThan(0);

    expect(findIn(s.dataDir, ["PRIVATE KEY", der, ...body])).toEqual([]);

    const row = await s.srv.services.store.db.selectFrom("secrets").select("value").where("owner_kind", "=", "system").where("name", "=", "tls").executeTakeFirstOrThrow();
    expect(row.value).toMatch(/^sb1:/);
    expect(row.value).not.toContain(body[1]);
    const opened = JSON.parse((await s.srv.services.secrets.systemSlot("tls").get())!) as { key: string; cert: string };
    expect(opened.key).toBe(key);
  });

  it("P04: the sealed certificate is reused when the server starts again", async () => {
    const before = s.srv.tls!.fingerprint;
    await s.stop();
    s = await start({ host: "127.1" }, s.dataDir);
    expect(s.srv.tls!.fingerprint).toBe(before);
    const res = await handshake(s.port, s.srv.tls!.cert);
    expect(res.ok && res.peer.fingerprint256).toBe(before);
  });
});
