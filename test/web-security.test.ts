import { readFileSync } from "node:fs";
import { Writable } from "node:stream";
import type { LightMyRequestResponse } from "fastify";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSettings } from "../src/config/settings.js";
import { buildApp } from "../src/http/app.js";
import { anonymous, createUser, signIn, startHarness, type Harness } from "./helpers/harness.js";
import { expectError, HIDDEN_ROUTES, listRoutes } from "./helpers/web.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

function csp(res: LightMyRequestResponse): Map<string, string[]> {
  const header = String(res.headers["content-security-policy"] ?? "");
  return new Map(
    header
      .split(";")
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name, ...values]) => [name!, values]),
  );
}

describe("security headers", () => {
  const samples: [string, string, unknown?][] = [
    ["GET", "/api/v1/meta"],
    ["GET", "/api/v1/me"],
    ["GET", "/no/such/route"],
    ["POST", "/api/v1/session", "{not json"],
    ["GET", "/healthz"],
    ["GET", "/.well-known/security.txt"],
    ["GET", "/api/v1/openapi.json"],
  ];

  it.each(samples)("%s %s carries a strict CSP, nosniff and a referrer policy", async (method, url, payload) => {
    const res = await h.app.inject({ method: method as "GET", url, ...(payload !== undefined && { payload: payload as string, headers: { "content-type": "application/json" } }) });
    const policy = csp(res);
    expect(policy.get("default-src")).toEqual(["'self'"]);
    expect(policy.get("frame-ancestors")).toEqual(["'none'"]);
    expect(policy.get("object-src")).toEqual(["'none'"]);
    expect(policy.get("script-src")).toEqual(["'self'"]);
    expect(String(res.headers["content-security-policy"])).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.headers["referrer-policy"]).toBe("no-referrer");
    expect(res.headers["x-powered-by"]).toBeUndefined();
  });
});

/** RFC 9116 fields, parsed strictly: every line is a comment or `Field: value`. */
function parseSecurityTxt(text: string): Map<string, string[]> {
  const known = new Set(["acknowledgments", "canonical", "contact", "encryption", "expires", "hiring", "policy", "preferred-languages", "csaf"]);
  const fields = new Map<string, string[]>();
  for (const line of text.split(/\r?\n/)) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z-]+): (\S.*)$/.exec(line);
    expect(m, `not a field line: ${JSON.stringify(line)}`).not.toBeNull();
    const name = m![1]!.toLowerCase();
    expect(known, `unknown field ${name}`).toContain(name);
    fields.set(name, [...(fields.get(name) ?? []), m![2]!]);
  }
  expect(fields.get("contact")?.length ?? 0).toBeGreaterThan(0);
  for (const uri of [...fields.get("contact")!, ...(fields.get("encryption") ?? []), ...(fields.get("canonical") ?? []), ...(fields.get("policy") ?? [])]) {
    expect(() => new URL(uri), uri).not.toThrow();
  }
  expect(fields.get("expires")).toHaveLength(1);
  expect(fields.get("expires")![0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/);
  expect(fields.get("preferred-languages")?.length ?? 0).toBeLessThanOrEqual(1);
  return fields;
}

async function securityTxt(app: Harness["app"]): Promise<Map<string, string[]>> {
  const res = await app.inject({ method: "GET", url: "/.well-known/security.txt" });
  expect(res.statusCode).toBe(200);
  expect(res.headers["content-type"]).toBe("text/plain; charset=utf-8");
  return parseSecurityTxt(res.body);
}

describe("P14: /.well-known/security.txt", () => {
  it("P14: is valid RFC 9116 by default, with a contact and an expiry less than a year ahead", async () => {
    const fields = await securityTxt(h.app);
    expect(fields.get("contact")![0]).toMatch(/^mailto:security@/);
    const expires = Date.parse(fields.get("expires")![0]!);
    expect(expires).toBeGreaterThan(Date.now());
    expect(expires).toBeLessThan(Date.now() + 365 * 86_400_000);
    expect(fields.get("canonical")).toEqual([`${h.services.publicUrl()}/.well-known/security.txt`]);
    // Not configured, so not claimed; the configured case below shows it when set.
    expect(fields.has("encryption")).toBe(false);
  });

  it("P14: names the operator's contact, PGP key (SLIPWAY_SECURITY_PGP_KEY_URL), policy and expiry", async () => {
    const fromEnv = loadSettings({}, { SLIPWAY_SECURITY_PGP_KEY_URL: "https://example.org/pgp.asc" });
    expect(fromEnv.securityPgpKeyUrl).toBe("https://example.org/pgp.asc");
    const configured = await startHarness({
      publicUrl: "https://ci.example.org",
      securityContact: "mailto:psirt@example.org",
      securityPgpKeyUrl: fromEnv.securityPgpKeyUrl,
      securityPolicyUrl: "https://example.org/disclosure",
      securityTxtExpires: "2030-01-01T00:00:00.000Z",
    });
    try {
      const fields = await securityTxt(configured.app);
      expect(fields.get("contact")).toEqual(["mailto:psirt@example.org"]);
      expect(fields.get("encryption")).toEqual(["https://example.org/pgp.asc"]);
      expect(fields.get("policy")).toEqual(["https://example.org/disclosure"]);
      expect(fields.get("expires")).toEqual(["2030-01-01T00:00:00.000Z"]);
      expect(fields.get("canonical")).toEqual(["https://ci.example.org/.well-known/security.txt"]);
    } finally {
      await configured.close();
    }
  });
});

describe("P22: a vulnerability report channel is published", () => {
  it("P22: the README has a Security section with 'Reporting a vulnerability', and security.txt names a contact", async () => {
    const readme = readFileSync("README.md", "utf8");
    const security = /^## Security\s*$([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(readme)?.[1];
    expect(security, "README has no '## Security' section").toBeDefined();
    const reporting = /^### Reporting a vulnerability\s*$([\s\S]*?)(?=^##|(?![\s\S]))/m.exec(security!)?.[1];
    expect(reporting, "the Security section has no 'Reporting a vulnerability' subsection").toBeDefined();
    expect(reporting).toMatch(/privately|private/i);
    expect(reporting).toMatch(/SLIPWAY_SECURITY_CONTACT/);
    expect((await securityTxt(h.app)).get("contact")![0]).toMatch(/^(mailto:|https:\/\/)/);
  });
});

describe("health, readiness and metrics", () => {
  it("/healthz and /readyz answer 200", async () => {
    expect((await h.app.inject("/healthz")).json()).toEqual({ status: "ok" });
    const ready = await h.app.inject("/readyz");
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: "ready" });
  });

  it("/readyz answers 503 with the error shape when the database is gone (and /healthz stays up)", async () => {
    const lost = await startHarness();
    try {
      expect((await lost.app.inject("/readyz")).statusCode).toBe(200);
      await lost.services.store.close();
      expectError(await lost.app.inject("/readyz"), 503, "database_unreachable");
      expect((await lost.app.inject("/healthz")).statusCode).toBe(200);
    } finally {
      await lost.close();
    }
  });

  it("/metrics counts requests by route template, never by raw URL", async () => {
    const route = `route="/api/v1/projects/:projectId"`;
    const count = async () => {
      const res = await h.app.inject("/metrics");
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(res.body).toContain("# TYPE slipway_http_request_duration_seconds histogram");
      const line = res.body.split("\n").find((l) => l.startsWith("slipway_http_request_duration_seconds_count{") && l.includes(route) && l.includes('method="GET"'));
      return { body: res.body, n: line ? Number(line.split(" ").pop()) : 0 };
    };
    const before = await count();
    await anonymous(h).get("/api/v1/projects/prj_xyz_secretish");
    await anonymous(h).get("/no/such/prj_unrouted");
    const after = await count();
    expect(after.n).toBe(before.n + 1);
    expect(after.body).not.toContain("prj_xyz_secretish");
    expect(after.body).not.toContain("prj_unrouted");
  });
});

describe("request ids", () => {
  it("every request is logged with a server-made id; a client's X-Request-Id is not adopted", async () => {
    const lines: { reqId?: string; msg?: string }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l) as { reqId?: string; msg?: string });
        done();
      },
    });
    const app = await buildApp(h.services, { logger: pino({ level: "info" }, sink) });
    try {
      for (const url of ["/healthz", "/api/v1/me", "/nope"]) await app.inject({ url, headers: { "x-request-id": "client-chosen-id", "request-id": "client-chosen-id" } });
      const completed = lines.filter((l) => l.msg === "request completed");
      expect(completed).toHaveLength(3);
      for (const l of completed) expect(l.reqId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(new Set(completed.map((l) => l.reqId)).size).toBe(3);
      expect(JSON.stringify(lines)).not.toContain("client-chosen-id");
    } finally {
      await app.close();
    }
  });
});

describe("OpenAPI", () => {
  it("/api/v1/openapi.json is OpenAPI 3 and documents every route that is not deliberately hidden", async () => {
    const res = await h.app.inject("/api/v1/openapi.json");
    expect(res.statusCode).toBe(200);
    const doc = JSON.parse(res.body) as { openapi: string; paths: Record<string, Record<string, { summary?: string }>> };
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);

    const routes = listRoutes(h.app);
    expect(routes.length).toBeGreaterThan(20);
    for (const hidden of HIDDEN_ROUTES) {
      expect(routes.some((r) => r.url === hidden), `${hidden} is registered`).toBe(true);
      expect(doc.paths[hidden], `${hidden} is hidden`).toBeUndefined();
    }
    const missing = routes
      .filter((r) => !HIDDEN_ROUTES.includes(r.url))
      .filter((r) => !doc.paths[r.url.replace(/:(\w+)/g, "{$1}")]?.[r.method.toLowerCase()]?.summary)
      .map((r) => `${r.method} ${r.url}`);
    expect(missing).toEqual([]);
  });

  it("the signed-in API works as documented for a sample route (the document is not stale)", async () => {
    await createUser(h, "openapi@example.com");
    const me = await (await signIn(h, "openapi@example.com")).get("/api/v1/me");
    expect(me.statusCode).toBe(200);
    const doc = (await h.app.inject("/api/v1/openapi.json")).json() as { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: { properties: Record<string, unknown> } }> }> }>> };
    const documented = Object.keys(doc.paths["/api/v1/me"]!.get!.responses["200"]!.content!["application/json"]!.schema.properties).sort();
    expect(Object.keys(me.json()).sort()).toEqual(documented);
  });
});
