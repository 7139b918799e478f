import { Writable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { sql } from "kysely";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { buildApp } from "../src/http/app.js";
import { Client, signIn, startHarness, type Harness } from "./helpers/harness.js";
import { apiRoutes, endedBuild, expectError, fillPath, heldJob, isRunnerRoute, paramsOf, sampleBodies, send, setUpWorld, WORLD_TOKEN_SCOPES, type ApiRoute, type World } from "./helpers/web.js";
import { mulberry32 } from "./helpers/prng.js";

/*
 * A small, seeded fuzzer: generated JSON (deep nesting, huge and odd strings, numbers that do
 * not fit a double, prototype-pollution keys) at every route, with real and random path
 * parameters, as anonymous, a signed-in owner, a bearer token and (at runner routes) a registered
 * runner holding a job. Never a 5xx; every 4xx in the
 * error shape; afterwards the server still answers and the audit chain verifies.
 * Bounded: MAX_REQUESTS, or DEADLINE_MS of sending, whichever comes first.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 20_241_123);
const MAX_REQUESTS = 1500;
const DEADLINE_MS = 20_000;

/** mulberry32: a tiny seeded PRNG, so that a failure can be replayed with FUZZ_SEED. */
function prng(seed: number) {
  const next = mulberry32(seed);
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof prng>;

const ODD_STRINGS = ["", " ", "\u0000", "\u202e", "💣", "é", "\ud800", "null", "true", "0", "-1", "../../etc/passwd", "<script>alert(1)</script>", "' OR 1=1 --", "${7*7}", "%00", "a\nb", "\t"];
const NUMBER_LITERALS = ["0", "-0", "1", "-1", "1.5", "1e309", "-1e309", "1e-400", "9007199254740993", "123456789012345678901234567890", "4294967296", "1E2"];
const POISON_KEYS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "isAdmin", "role", "id", "userId"];

function randomString(rng: Rng): string {
  switch (rng.int(4)) {
    case 0:
      return rng.pick(ODD_STRINGS);
    case 1:
      return "x".repeat(rng.pick([1, 64, 65, 101, 129, 201, 257, 2049, 33_000, 70_000]));
    case 2:
      return String.fromCodePoint(...Array.from({ length: 1 + rng.int(20) }, () => rng.int(0x10ffff + 1 - 0x800)).map((c) => (c >= 0xd800 ? c + 0x800 : c)));
    default:
      return rng.pick(["owner@example.com", "member@example.com", "projects:read", "owner", "admin", "API_KEY", "https://git.example.com/r.git", "123456", "correct horse battery staple"]);
  }
}

/** JSON text (not JSON.stringify: it cannot write 1e309 or duplicate keys). */
function randomJson(rng: Rng, keys: string[], depth = 0): string {
  const kind = depth > 4 ? rng.int(4) : rng.int(7);
  switch (kind) {
    case 0:
      return rng.pick(["null", "true", "false"]);
    case 1:
      return rng.pick(NUMBER_LITERALS);
    case 2:
    case 3:
      return JSON.stringify(randomString(rng));
    case 4:
      return `[${Array.from({ length: rng.int(rng.chance(0.1) ? 50 : 4) }, () => randomJson(rng, keys, depth + 1)).join(",")}]`;
    default: {
      const n = rng.int(5);
      const members = Array.from({ length: n }, () => `${JSON.stringify(rng.chance(0.6) ? rng.pick(keys) : rng.chance(0.5) ? rng.pick(POISON_KEYS) : randomString(rng))}:${randomJson(rng, keys, depth + 1)}`);
      return `{${members.join(",")}}`;
    }
  }
}

/** A body: random JSON, a valid sample with one field replaced, or a few broken forms. */
function randomBody(rng: Rng, route: ApiRoute, samples: Record<string, unknown>): { payload?: string; contentType?: string } {
  const keys = Object.keys(route.body?.properties ?? {}).concat("name", "value");
  const sample = samples[`${route.method} ${route.url}`] as Record<string, unknown> | undefined;
  const r = rng.int(10);
  if (r === 0) return {};
  if (r === 1) return { payload: rng.pick(["{", "[1,", '{"a":1', "", "\u0000", "nul"]) };
  if (r === 2) return { payload: "x=1", contentType: rng.pick(["text/plain", "application/x-www-form-urlencoded", "application/xml", "application/json; charset=latin1"]) };
  if (sample && r < 7) {
    const fields = Object.entries(sample).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    const victim = rng.pick(keys);
    const kept = fields.filter((f) => !f.startsWith(`${JSON.stringify(victim)}:`));
    return { payload: `{${[...kept, `${JSON.stringify(victim)}:${randomJson(rng, keys, 3)}`].join(",")}}` };
  }
  return { payload: randomJson(rng, keys) };
}

/** Percent-encodes any string; lone surrogates (which a URL cannot carry) become U+FFFD first. */
const encode = (s: string) => encodeURIComponent(Buffer.from(s, "utf8").toString("utf8"));

function randomParam(rng: Rng, real: string): string {
  if (rng.chance(0.6)) return real;
  return encode(randomString(rng).slice(0, rng.chance(0.9) ? 100 : 300)) || "x";
}

function randomQuery(rng: Rng, route: ApiRoute): string {
  if (!rng.chance(0.3)) return "";
  const names = [...route.query.map((q) => q.name), "unexpected", "__proto__", "limit"];
  const pairs = Array.from({ length: 1 + rng.int(3) }, () => `${encode(rng.pick(names))}=${encode(rng.chance(0.5) ? rng.pick(NUMBER_LITERALS) : randomString(rng).slice(0, 200))}`);
  return `?${pairs.join("&")}`;
}

let h: Harness;
let world: World;
/** The app under fuzz: the harness's services, with errors logged where a failure can show them. */
let app: FastifyInstance;
/** A project the fuzzer has no id of (so cannot delete), where queued jobs for leases are made. */
let queueProjectId: string;
const errorLog: { reqId?: string; err?: { stack?: string } }[] = [];
beforeAll(async () => {
  h = await startHarness();
  world = await setUpWorld(h);
  const queue = await world.owner.post("/api/v1/projects", { name: "queue" });
  expect(queue.statusCode, queue.body).toBe(201);
  queueProjectId = (queue.json() as { id: string }).id;
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n")) if (line) errorLog.push(JSON.parse(line) as (typeof errorLog)[number]);
      done();
    },
  });
  app = await buildApp(h.services, { logger: pino({ level: "error" }, sink) });
});
afterAll(async () => {
  await app.close();
  await h.close();
});

/**
 * Undoes what the fuzzer may have done to its own footing (changed the password and so ended the
 * session, revoked the token, deleted the project, required two-factor, finished the runner's
 * job), so that later requests still reach deep into the routes.
 */
async function heal(ownerPasswordHash: string): Promise<void> {
  const db = h.services.store.db;
  if ((await send(app, world.owner, "GET", "/api/v1/me")).statusCode !== 200) {
    await db.updateTable("users").set({ password_hash: ownerPasswordHash }).where("email", "=", "owner@example.com").execute();
    world.owner = await signIn(h, "owner@example.com");
  }
  await db.updateTable("organizations").set({ require_2fa: 0 }).execute();
  if ((await send(app, world.bearer, "GET", "/api/v1/projects")).statusCode !== 200) {
    const res = await send(app, world.owner, "POST", "/api/v1/tokens", { json: { name: "fuzz", scopes: WORLD_TOKEN_SCOPES } });
    world.bearer = new Client(h.app, { bearer: (res.json() as { token: string }).token });
  }
  if ((await send(app, world.owner, "GET", `/api/v1/projects/${world.params.projectId}`)).statusCode !== 200) {
    const res = await send(app, world.owner, "POST", "/api/v1/projects", { json: { name: `p${Date.now()}`, organization: world.params.orgId } });
    expect(res.statusCode, res.body).toBe(201);
    const projectId = (res.json() as { id: string }).id;
    Object.assign(world.params, { projectId, ...(await endedBuild(world.owner, projectId)) });
  }
  const held = await h.services.store.db.selectFrom("jobs").select("status").where("id", "=", world.heldJobId).executeTakeFirst();
  if (held?.status !== "running") world.heldJobId = await heldJob(h, world.runnerId, queueProjectId);
}

/**
 * A lease without `waitMs` long-polls for 25 s when nothing is queued; with a job queued it
 * answers at once, which keeps the fuzzer within its deadline.
 */
async function keepAJobQueued(): Promise<void> {
  const queued = await h.services.store.db.selectFrom("jobs").select("id").where("status", "=", "queued").executeTakeFirst();
  if (!queued) await h.services.builds.create(queueProjectId, { branch: "main", trigger: "api" });
}

it("fuzzed requests never cause a 5xx, every error has the error shape, and the server stays sound", async () => {
  const rng = prng(SEED);
  const routes = await apiRoutes(h.app);
  const samples = sampleBodies(world.params);
  const statuses = new Map<number, number>();
  const reached = new Set<string>();
  /** Requests at runner routes that the runner's token got past the gate (to validation or beyond). */
  let pastRunnerGate = 0;
  const { password_hash: ownerPasswordHash } = await h.services.store.db.selectFrom("users").select("password_hash").where("email", "=", "owner@example.com").executeTakeFirstOrThrow();
  const started = Date.now();
  let sent = 0;
  for (; sent < MAX_REQUESTS && Date.now() - started < DEADLINE_MS; sent++) {
    if (sent % 100 === 99) await heal(ownerPasswordHash);
    const route = rng.pick(routes);
    reached.add(`${route.method} ${route.url}`);
    const method = rng.chance(0.9) ? route.method : rng.pick(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
    const url = fillPath(route.url, Object.fromEntries(Object.entries(paramsOf(world, route)).map(([k, v]) => [k, randomParam(rng, v)]))) + randomQuery(rng, route);
    // Runner routes let in a runner only: it is one of their callers, so that fuzz gets past the token.
    const as = rng.pick(isRunnerRoute(route) ? ([undefined, world.owner, world.bearer, world.runner, world.runner] as const) : ([undefined, world.owner, world.bearer] as const));
    if (as === world.runner) await keepAJobQueued();
    const body = ["GET", "OPTIONS"].includes(method) && rng.chance(0.8) ? {} : randomBody(rng, route, samples);
    const res = await send(app, as, method, url, body);
    const label = `#${sent} seed ${SEED}: ${method} ${url.slice(0, 200)} as ${as === undefined ? "anonymous" : as === world.runner ? "runner" : as.auth.bearer ? "bearer" : "owner"} body ${String(body.payload).slice(0, 200)}`;
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
    if (as === world.runner && method === route.method && res.statusCode !== 401) pastRunnerGate++;
    if (res.statusCode >= 500) {
      const logged = errorLog.filter((l) => res.body.includes(l.reqId ?? "-")).map((l) => l.err?.stack);
      expect.fail(`${label} → ${res.body.slice(0, 300)}\n${logged.join("\n")}`);
    }
    if (res.statusCode >= 400) expectError(res, undefined, undefined, label);
  }

  // The fuzzer reached past the gates: successes and a spread of refusals, not only one kind.
  expect(sent).toBeGreaterThan(200);
  expect(reached.size).toBe(routes.length);
  const count = (from: number, to: number) => [...statuses].filter(([s]) => s >= from && s < to).reduce((n, [, c]) => n + c, 0);
  expect(count(200, 300), JSON.stringify([...statuses])).toBeGreaterThan(10);
  expect(new Set([...statuses.keys()].filter((s) => s >= 400)).size).toBeGreaterThanOrEqual(5);
  expect(pastRunnerGate).toBeGreaterThan(10);

  expect((await app.inject("/healthz")).statusCode).toBe(200);
  expect((await app.inject("/readyz")).statusCode).toBe(200);
  const audit = await h.services.audit.verify();
  expect(audit.problems).toEqual([]);
  expect(audit.rows).toBeGreaterThan(5);
  const { n } = await h.services.store.db.selectFrom("audit_log").select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow();
  expect(audit.rows).toBe(Number(n));
});
