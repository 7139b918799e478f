import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BODY_LIMIT } from "../src/http/app.js";
import { RUNNER_LOG_BODY_LIMIT } from "../src/http/routes/runner-api.js";
import { KNOWN_HOSTS_MAX } from "../src/projects/known-hosts.js";
import { MAX_POLLED_REFS, POLL_REPORT_BODY_LIMIT } from "../src/scm/poll-report.js";
import { startHarness, type Client, type Harness } from "./helpers/harness.js";
import { apiRoutes, SAMPLE_HOST_KEY, callerOf, dbSnapshot, expectError, fillPath, isRunnerRoute, paramsOf, sampleBodies, send, setUpWorld, type ApiRoute, type Parameter, type Route, type Schema, type World } from "./helpers/web.js";

/*
 * Bad input at every route, derived from the routes the app registers and the schemas it
 * publishes: each answer is a 4xx in the error shape and nothing is written. The caller is a
 * signed-in owner with a CSRF token, or at runner routes a registered runner holding a job, so
 * requests get past authentication to validation.
 */

const BODY_METHODS = ["POST", "PUT", "PATCH", "DELETE"];

let h: Harness;
let world: World;
let routes: ApiRoute[];
let bodies: Record<string, unknown>;

beforeAll(async () => {
  h = await startHarness();
  world = await setUpWorld(h);
  bodies = sampleBodies(world.params);
  routes = await apiRoutes(h.app);
});
afterAll(() => h.close());

const key = (r: Route) => `${r.method} ${r.url}`;
const urlOf = (r: Route, override: Record<string, string> = {}) => fillPath(r.url, paramsOf(world, r), override);
const as = (r: Route): Client => callerOf(world, r);
const bodyOf = (r: ApiRoute) => (r.body ? bodies[key(r)] : undefined);
/** Runner log chunks and poll reports may be larger than any other body; everything else has the app's limit. */
const LARGER_BODIES: Record<string, number> = { "POST /api/v1/runner/jobs/:jobId/log": RUNNER_LOG_BODY_LIMIT, "POST /api/v1/runner/polls/:projectId/result": POLL_REPORT_BODY_LIMIT };
const bodyLimitOf = (r: Route) => LARGER_BODIES[key(r)] ?? BODY_LIMIT;

/** Sends the request, expects a 4xx error (of the given status/code) and no change in the database. */
async function refused(label: string, request: () => Promise<LightMyRequestResponse>, status?: number, code?: string): Promise<LightMyRequestResponse> {
  const before = await dbSnapshot(h.services);
  const res = await request();
  expectError(res, status, code, label);
  expect(await dbSnapshot(h.services), `${label} wrote to the database`).toEqual(before);
  return res;
}

/** JSON values of every type the schema does not allow. */
function wrongValues(schema: Schema): unknown[] {
  const samples: Record<string, unknown> = { string: "text", number: 12345, boolean: true, array: [], object: {}, null: null };
  const allowed = new Set([schema.type === "integer" ? "number" : schema.type, ...(schema.nullable ? ["null"] : [])]);
  const wrong = Object.entries(samples)
    .filter(([type]) => !allowed.has(type))
    .map(([, v]) => v);
  if (schema.type === "integer") wrong.push(1.5);
  if (schema.enum) wrong.push("not-one-of-them");
  return wrong;
}

/** Ways to break a valid body, one field at a time. */
function bodyMutations(schema: Schema, valid: Record<string, unknown>): [string, unknown][] {
  const out: [string, unknown][] = [
    ["an array", [valid]],
    ["a string", "text"],
    ["a number", 1e309],
    ["null", null],
    ["an extra field", { ...valid, unexpected: 1 }],
  ];
  // Unless every field is optional with a default: then {} is a valid body.
  const emptyIsValid = !schema.required?.length && Object.values(schema.properties ?? {}).every((p) => p.default !== undefined);
  if (!emptyIsValid) out.push(["an empty object", {}]);
  for (const [name, prop] of Object.entries(schema.properties ?? {})) {
    const set = (v: unknown) => ({ ...valid, [name]: v });
    if (schema.required?.includes(name)) out.push([`${name} missing`, Object.fromEntries(Object.entries(valid).filter(([k]) => k !== name))]);
    for (const v of wrongValues(prop)) out.push([`${name}: ${JSON.stringify(v)}`, set(v)]);
    if (prop.type === "string") {
      if (prop.maxLength !== undefined) out.push([`${name} one over maxLength`, set("x".repeat(prop.maxLength + 1))]);
      if (prop.minLength) out.push([`${name} empty`, set("")]);
      // Every string has some bound, whether the schema states it or a refinement checks it.
      if (prop.maxLength === undefined || prop.maxLength < 100 * 1024) out.push([`${name} of 100 KiB`, set("x".repeat(100 * 1024))]);
    }
    if (prop.type === "array") {
      const item = (valid[name] as unknown[] | undefined)?.[0] ?? "x";
      if (prop.maxItems !== undefined) out.push([`${name} one item too many`, set(Array.from({ length: prop.maxItems + 1 }, () => item))]);
      if (prop.minItems) out.push([`${name} empty`, set([])]);
      if (prop.items) for (const v of wrongValues(prop.items)) out.push([`${name} item ${JSON.stringify(v)}`, set([v])]);
    }
  }
  return out;
}

/** Ways to break a query string, one parameter at a time. */
function queryMutations(params: Parameter[]): string[] {
  const out = ["unexpected=1"];
  for (const { name, schema } of params) {
    if (schema.type === "integer") {
      out.push(`${name}=abc`, `${name}=1.5`);
      // An empty value reads as 0, so it is wrong only where 0 is.
      if (schema.minimum !== undefined && (schema.minimum > 0 || schema.exclusiveMinimum)) out.push(`${name}=`);
      if (schema.minimum !== undefined) out.push(`${name}=${schema.exclusiveMinimum ? schema.minimum : schema.minimum - 1}`);
      if (schema.maximum !== undefined) out.push(`${name}=${BigInt(schema.maximum) + 1n}`);
    }
    if (schema.type === "string" && schema.maxLength !== undefined) out.push(`${name}=${"x".repeat(schema.maxLength + 1)}`);
    if (schema.enum) out.push(`${name}=not-one-of-them`, `${name}=`);
  }
  return out;
}

describe("every route is covered", () => {
  it("each route with a body has a valid sample here, and each sample belongs to a route with a body", () => {
    const withBody = routes.filter((r) => r.body).map(key).sort();
    expect(withBody.length).toBeGreaterThan(10);
    expect(Object.keys(bodies).sort()).toEqual(withBody);
    for (const r of routes) urlOf(r);
  });
});

describe("malformed bodies", () => {
  // The port proxy passes bodies to the workspace's own server as they come, whatever they are.
  const bodyRoutes = () => routes.filter((r) => BODY_METHODS.includes(r.method) && !r.url.startsWith("/w/"));

  it("invalid JSON is 400 invalid_json, at every route that takes a body", async () => {
    const payloads = ["{bad", '{"a":', "[1,]", "{'single':'quotes'}", "\u0000", '{"a":1}{"b":2}', "NaN"];
    for (const r of bodyRoutes()) for (const payload of payloads) await refused(`${key(r)} ${JSON.stringify(payload)}`, () => send(h.app, as(r), r.method, urlOf(r), { payload }), 400, "invalid_json");
  });

  it("prototype-pollution keys are refused, not merged", async () => {
    for (const r of bodyRoutes()) {
      const valid = JSON.stringify(bodyOf(r) ?? {}).slice(1, -1);
      for (const poison of ['"__proto__":{"isAdmin":true}', '"constructor":{"prototype":{"isAdmin":true}}']) {
        await refused(`${key(r)} ${poison}`, () => send(h.app, as(r), r.method, urlOf(r), { payload: `{${[valid, poison].filter(Boolean).join(",")}}` }), 400);
      }
    }
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
  });

  it("an empty JSON body is 400 invalid_json", async () => {
    for (const r of bodyRoutes().filter((x) => x.body)) await refused(key(r), () => send(h.app, as(r), r.method, urlOf(r), { payload: "" }), 400, "invalid_json");
  });

  it(`a body over ${BODY_LIMIT / 1024} KiB (${RUNNER_LOG_BODY_LIMIT / 1024} KiB for runner log chunks, ${Math.round(POLL_REPORT_BODY_LIMIT / 1024)} KiB for poll reports) is 413 body_too_large`, async () => {
    for (const r of bodyRoutes()) {
      const payload = JSON.stringify({ value: "x".repeat(bodyLimitOf(r)) });
      await refused(key(r), () => send(h.app, as(r), r.method, urlOf(r), { payload }), 413, "body_too_large");
    }
  });

  it("a body that is not JSON is 415 unsupported_media_type", async () => {
    const types = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "application/jsonx"];
    for (const r of bodyRoutes()) for (const contentType of types) await refused(`${key(r)} ${contentType}`, () => send(h.app, as(r), r.method, urlOf(r), { payload: "a=b", contentType }), 415, "unsupported_media_type");
  });

  it("bodies of the wrong shape (types, missing, extra, oversized fields) are 400 invalid_request", async () => {
    let sent = 0;
    for (const r of routes.filter((x) => x.body)) {
      for (const [what, body] of bodyMutations(r.body!, bodyOf(r) as Record<string, unknown>)) {
        await refused(`${key(r)} with ${what}`, () => send(h.app, as(r), r.method, urlOf(r), { json: body }), 400, "invalid_request");
        sent++;
      }
    }
    expect(sent).toBeGreaterThan(100);
  });
});

describe("malformed query strings and path parameters", () => {
  it("bad query parameters are 400 invalid_request", async () => {
    const withQuery = routes.filter((r) => r.query.length > 0);
    expect(withQuery.length).toBeGreaterThan(0);
    for (const r of withQuery) for (const q of queryMutations(r.query)) await refused(`${key(r)}?${q}`, () => send(h.app, as(r), r.method, `${urlOf(r)}?${q}`), 400, "invalid_request");
  });

  it("odd, overlong and hostile path parameters are refused", async () => {
    const hostile = ["%00", "..%2F..%2Fetc%2Fpasswd", "%E2%80%AE", "'%20OR%201=1%20--", "%F0%9F%92%A3", "1BAD", "%25", "%20"];
    for (const r of routes.filter((x) => x.path.length > 0)) {
      for (const { name, schema } of r.path) {
        const overlong = schema.maxLength === undefined ? [] : ["a".repeat(schema.maxLength + 1)];
        for (const value of [...hostile, ...overlong]) {
          await refused(`${key(r)} :${name}=${value}`, () => send(h.app, as(r), r.method, urlOf(r, { [name]: value }), { json: bodyOf(r) }));
        }
        await refused(`${key(r)} :${name} empty`, () => send(h.app, as(r), r.method, urlOf(r, { [name]: "" }), { json: bodyOf(r) }), 404, "not_found");
        // Beyond the router's limit on a parameter's length the URL is refused before routing.
        await refused(`${key(r)} :${name} of 201 characters`, () => send(h.app, as(r), r.method, urlOf(r, { [name]: "a".repeat(201) }), { json: bodyOf(r) }), 414, "uri_too_long");
      }
    }
  });
});

describe("unknown routes and wrong methods", () => {
  it("unknown paths are 404 not_found", async () => {
    const unknown = ["/api/v1/nope", "/api/v2/projects", "/API/V1/ME", "/api/v1/projects/", "/api/v1//me", "/api/v1/me/", "/api/v1/projects/a/b/c/d", "/.well-known/other.txt", "/api/v1/openapi.yaml", "/.env", "/.git/config", "/wp-login.php", "/assets/../package.json"];
    for (const url of unknown) for (const method of ["GET", "POST", "DELETE"]) await refused(`${method} ${url}`, () => send(h.app, world.owner, method, url, { json: method === "POST" ? {} : undefined }), 404, "not_found");
    // Other paths are the browser app's pages, which it answers itself (with its own "not found" page).
    for (const url of ["/", "/admin", "/projects/nope"]) {
      expect((await send(h.app, world.owner, "GET", url)).headers["content-type"], url).toMatch(/^text\/html/);
      for (const method of ["POST", "DELETE"]) await refused(`${method} ${url}`, () => send(h.app, world.owner, method, url, { json: method === "POST" ? {} : undefined }), 404, "not_found");
    }
  });

  it("a malformed URL is 400", async () => {
    for (const url of ["/api/v1/%", "/api/v1/projects/%zz"]) await refused(url, () => send(h.app, world.owner, "GET", url), 400);
  });

  it("methods a path does not have are refused", async () => {
    const byPath = new Map<string, Set<string>>();
    for (const r of routes) byPath.set(r.url, (byPath.get(r.url) ?? new Set()).add(r.method));
    for (const [url, methods] of byPath) {
      for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE"].filter((m) => !methods.has(m))) {
        const res = await refused(`${method} ${url}`, () => send(h.app, callerOf(world, { method, url }), method, fillPath(url, paramsOf(world, { method, url })), { json: method === "GET" ? undefined : {} }));
        expect([404, 405], `${method} ${url}`).toContain(res.statusCode);
      }
    }
  });
});

describe("malformed credentials", () => {
  const route = (r: ApiRoute) => () => (r.body ? { json: bodyOf(r) } : {});

  it("malformed Authorization headers are 401 invalid_token on every protected route (invalid_runner_token on runner routes), and ignored on public ones (a real token works)", async () => {
    expect((await send(h.app, world.bearer, "GET", "/api/v1/projects")).statusCode).toBe(200);
    expect((await send(h.app, world.runner, "POST", `/api/v1/runner/jobs/${world.heldJobId}/heartbeat`, { json: {} })).statusCode).toBe(200);
    const real = world.bearer.auth.bearer!;
    const runnerToken = world.runner.auth.bearer!;
    const mangle = (t: string) => `${t.slice(0, -1)}${t.endsWith("A") ? "B" : "A"}`;
    const headers = ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a b", `Bearer ${"A".repeat(4096)}`, `Bearer ${mangle(real)}`, `Token ${real}`, "", "Bearer\u00ff"];
    // A runner route takes a runner's token only: a user's real API token is as good as none there.
    const runnerHeaders = [`Bearer ${mangle(runnerToken)}`, `Token ${runnerToken}`, `Bearer ${real}`];
    let publicRoutes = 0;
    let runnerRoutes = 0;
    for (const r of routes) {
      const anonymous = await send(h.app, undefined, r.method, urlOf(r), route(r)());
      const runnerOnly = isRunnerRoute(r);
      const isPublic = !runnerOnly && !(anonymous.statusCode === 401 && anonymous.json().error.code === "unauthenticated");
      if (isPublic) publicRoutes++;
      if (runnerOnly) {
        runnerRoutes++;
        expectError(anonymous, 401, "invalid_runner_token", key(r));
      }
      for (const authorization of runnerOnly ? [...headers, ...runnerHeaders] : headers) {
        const label = `${key(r)} Authorization: ${authorization.slice(0, 30)}`;
        const call = () => send(h.app, undefined, r.method, urlOf(r), { ...route(r)(), headers: { authorization } });
        if (runnerOnly) await refused(label, call, 401, "invalid_runner_token");
        else if (!isPublic) await refused(label, call, 401, "invalid_token");
        else {
          // Probes and proxies may add credentials of their own; a public route answers as it would without them.
          const res = await call();
          expect(res.statusCode, label).toBeLessThan(500);
          expect(res.body, label).not.toContain("invalid_token");
        }
      }
    }
    expect(publicRoutes).toBeGreaterThan(5);
    expect(publicRoutes).toBeLessThan(routes.length / 2);
    expect(runnerRoutes).toBeGreaterThanOrEqual(5);
  });

  it("garbage session cookies are treated as anonymous: 401 on protected routes (the real cookie works)", async () => {
    expect((await send(h.app, world.owner, "GET", "/api/v1/me")).statusCode).toBe(200);
    const real = /slipway_session=([^;]+)/.exec(world.owner.auth.cookie!)![1]!;
    const cookies = [
      "slipway_session=garbage",
      "slipway_session=",
      `slipway_session=${"A".repeat(4000)}`,
      "slipway_session=%ZZ%",
      "slipway_session=s:forged.signature",
      `slipway_session=${real.slice(0, -1)}${real.endsWith("A") ? "B" : "A"}`,
      "slipway_session=a; slipway_session=b",
      "slipway_csrf=garbage",
      "=; ;;slipway_session",
    ];
    let unauthenticated = 0;
    for (const r of routes) {
      // Without a valid body a public route answers 400 either way, so nothing is ever written.
      const opts = r.body ? { json: {} } : {};
      const anon = await send(h.app, undefined, r.method, urlOf(r), opts);
      if (anon.statusCode === 401) unauthenticated++;
      for (const cookie of cookies) {
        if (anon.statusCode < 400) {
          const res = await send(h.app, undefined, r.method, urlOf(r), { ...opts, headers: { cookie } });
          expect(res.statusCode, `${key(r)} ${cookie}`).toBe(anon.statusCode);
          continue;
        }
        const res = await refused(`${key(r)} Cookie: ${cookie.slice(0, 40)}`, () => send(h.app, undefined, r.method, urlOf(r), { ...opts, headers: { cookie } }), anon.statusCode);
        expect(res.json(), `${key(r)} ${cookie}`).toEqual(anon.json());
      }
    }
    expect(unauthenticated, "most routes need a caller").toBeGreaterThan(20);
  });
});

describe("positive control", () => {
  // Last, because these succeed and write: they show the samples above were one change away from valid.
  it("every valid sample body passes validation, and the snapshot sees the writes they make", async () => {
    const before = await dbSnapshot(h.services);
    for (const r of routes.filter((x) => x.body)) {
      const res = await send(h.app, as(r), r.method, urlOf(r), { json: bodyOf(r) });
      expect(res.statusCode, `${key(r)} ${res.body}`).toBeLessThan(500);
      const error = res.statusCode >= 400 ? (res.json() as { error: { code: string; message: string } }).error : undefined;
      expect(error?.message ?? "", `${key(r)} ${res.body}`).not.toMatch(/^body/);
    }
    expect(await dbSnapshot(h.services)).not.toEqual(before);
  });

  it("a runner log chunk as large as the schema allows is not refused for its size", async () => {
    const r = routes.find((x) => key(x) === "POST /api/v1/runner/jobs/:jobId/log")!;
    const data = "A".repeat(r.body!.properties!.data!.maxLength!);
    const res = await send(h.app, as(r), r.method, urlOf(r), { json: { offset: 0, data } });
    expect(res.statusCode, res.body).not.toBe(413);
    expect(res.statusCode, res.body).toBeLessThan(500);
    if (res.statusCode >= 400) expect(res.json().error.message).not.toMatch(/^body/);
  });

  it("a poll report of as many refs as allowed, each as long as allowed, with host keys, is not refused for its size", async () => {
    const r = routes.find((x) => key(x) === "POST /api/v1/runner/polls/:projectId/result")!;
    const refs = Object.fromEntries(Array.from({ length: MAX_POLLED_REFS }, (_, i) => [`refs/heads/${String(i).padStart(244, "b")}`, "a".repeat(40)]));
    expect(Object.keys(refs)[0]).toHaveLength(255);
    const knownHosts = `git.example.com ${SAMPLE_HOST_KEY}\n`.repeat(Math.floor(KNOWN_HOSTS_MAX / (SAMPLE_HOST_KEY.length + 17)));
    const res = await send(h.app, as(r), r.method, urlOf(r), { json: { refs, knownHosts } });
    expect(res.statusCode, res.body.slice(0, 300)).not.toBe(413);
    expect(res.statusCode).toBeLessThan(500);
  });
});
