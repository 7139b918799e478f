import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { cli, PASSWORD } from "./helpers/harness.js";

let dir: string;
let server: ChildProcess;
let output = "";
let url: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "slipway-logs-"));
  const env = { PATH: process.env.PATH, SLIPWAY_DATA_DIR: dir };
  expect(spawnSync(process.execPath, [cli, "admin", "create-user", "--email", "ops@example.com", "--org", "acme"], { input: `${PASSWORD}\n`, env }).status).toBe(0);
  server = spawn(process.execPath, [cli, "serve", "--port", "0"], { env, stdio: ["ignore", "pipe", "pipe"] });
  url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const m = /"url":"([^"]+)"/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    server.stdout!.on("data", onData);
    server.stderr!.on("data", onData);
  });
});

afterAll(async () => {
  server.kill("SIGTERM");
  await new Promise((resolve) => server.once("exit", resolve));
  rmSync(dir, { recursive: true, force: true });
});

it("logs JSON lines with request ids, and no password, token, cookie or secret value", async () => {
  const first = output.split("\n").find((l) => l.trim())!;
  expect(JSON.parse(first).msg).toMatch(/listening|running/);

  const signIn = await fetch(`${url}/api/v1/session`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: "ops@example.com", password: PASSWORD }) });
  expect(signIn.status).toBe(200);
  const cookie = signIn.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
  const { csrfToken } = (await signIn.json()) as { csrfToken: string };
  const browser = { cookie, "x-csrf-token": csrfToken, "content-type": "application/json" };
  const tokenRes = await fetch(`${url}/api/v1/tokens`, { method: "POST", headers: browser, body: JSON.stringify({ name: "ci", scopes: ["projects:write", "secrets:write"] }) });
  const { token } = (await tokenRes.json()) as { token: string };
  const bearer = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const project = (await (await fetch(`${url}/api/v1/projects`, { method: "POST", headers: bearer, body: JSON.stringify({ name: "web" }) })).json()) as { id: string };
  const secretValue = "s3cr3t-value-that-must-not-be-logged";
  expect((await fetch(`${url}/api/v1/projects/${project.id}/secrets/API_KEY`, { method: "PUT", headers: bearer, body: JSON.stringify({ value: secretValue }) })).status).toBe(201);
  await fetch(`${url}/api/v1/projects`, { headers: { authorization: "Bearer slw_not-a-real-token" } });
  // An old-style link with its token in the query string: the path is logged, the query is not.
  await fetch(`${url}/reset-password?token=query-string-token-value`);
  await new Promise((r) => setTimeout(r, 300));

  const lines = output.split("\n").filter((l) => l.trim());
  const parsed = lines.map((l) => JSON.parse(l) as { reqId?: string; req?: { url?: string } });
  const requestLines = parsed.filter((l) => l.req?.url);
  expect(requestLines.length).toBeGreaterThanOrEqual(5);
  expect(requestLines.every((l) => typeof l.reqId === "string" && l.reqId.length > 10)).toBe(true);
  // The log did record the requests that carried these values, so their absence is meaningful.
  expect(output).toContain(`/api/v1/projects/${project.id}/secrets/API_KEY`);
  expect(output).toContain('"url":"/reset-password"');
  for (const secret of [PASSWORD, token, token.slice(4), secretValue, cookie.split("=")[1]!.slice(0, 20), csrfToken, "slw_not-a-real-token", "query-string-token-value"]) {
    expect(output).not.toContain(secret);
  }
});
