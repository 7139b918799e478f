import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadSettings } from "../src/config/settings.js";
import { startServer, type RunningServer } from "../src/http/server.js";

let dir: string;
let server: RunningServer;
let certFile: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "slipway-runner-tls-"));
  certFile = path.join(dir, "cert.pem");
  const keyFile = path.join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", keyFile, "-out", certFile], { stdio: "ignore" });
  server = await startServer(loadSettings({ dataDir: path.join(dir, "data"), port: 0, tlsCertFile: certFile, tlsKeyFile: keyFile, logLevel: "silent" }, {}), pino({ level: "silent" }));
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A runner in its own process, as on another machine, asking the server for a job. */
// Asynchronous: the server under test runs in this very process and must keep answering.
function runnerLease(env: Record<string, string>): Promise<string> {
  const script = `
    const { Runner } = await import(${JSON.stringify(path.resolve("dist/src/runner/runner.js"))});
    const runner = new Runner({ server: process.argv[1], token: "slr_not-registered", backend: null, checkout: async () => {} });
    try { await runner.call("/runner/lease", { waitMs: 0 }); console.log("leased"); }
    catch (err) { console.log(err.status ? "answered " + err.status + " " + err.code : "refused: " + (err.cause?.code ?? err.message)); }
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script, server.url], { env: { PATH: process.env.PATH!, ...env } });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d));
  child.stderr.on("data", (d: Buffer) => (out += d));
  return new Promise((resolve) => child.on("close", () => resolve(out.trim())));
}

it("P04: a runner refuses a server whose certificate it cannot verify, and talks to it once the certificate is trusted", async () => {
  expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  expect(await runnerLease({})).toMatch(/refused: (DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)/);
  // Control: the same runner trusting the server's certificate gets through TLS to the API (which then wants a real token).
  expect(await runnerLease({ NODE_EXTRA_CA_CERTS: certFile })).toBe("answered 401 invalid_runner_token");
});
