import autocannon from "autocannon";
import Fastify, { type FastifyInstance } from "fastify";
import { buildApp } from "../src/http/app.js";
import { fmt, printTable, ratio, withSlipway } from "./support.js";

// Only ever loopback: the benchmark must not send traffic anywhere else.
const HOST = "127.0.0.1";
const CONNECTIONS = 10;
const WARMUP_S = 1;
const MEASURE_S = 5;

// autocannon reports percentiles in whole milliseconds, so only the mean shows sub-millisecond latency.
const COLUMNS: Array<{ header: string; value: (r: autocannon.Result) => number; decimals: number }> = [
  { header: "req/s", value: (r) => r.requests.average, decimals: 0 },
  { header: "mean ms", value: (r) => r.latency.average, decimals: 2 },
  { header: "p50 ms", value: (r) => r.latency.p50, decimals: 0 },
  { header: "p99 ms", value: (r) => r.latency.p99, decimals: 0 },
];

interface Target {
  name: string;
  url: string;
  headers: Record<string, string>;
}

/** Port 0: the OS picks a free port, so runs never collide with a real server. */
function listen(app: FastifyInstance): Promise<string> {
  return app.listen({ host: HOST, port: 0 });
}

function cannon(target: Target, seconds: number): Promise<autocannon.Result> {
  return autocannon({ url: target.url, headers: target.headers, connections: CONNECTIONS, duration: seconds });
}

/** Warm up, then measure; refuses a run that got errors, since failed requests are cheap and would flatter it. */
async function measure(target: Target): Promise<autocannon.Result> {
  await cannon(target, WARMUP_S);
  const result = await cannon(target, MEASURE_S);
  if (result.errors > 0 || result.non2xx > 0) {
    throw new Error(`${target.name}: ${result.errors} connection errors and ${result.non2xx} non-2xx responses of ${result.requests.total}`);
  }
  return result;
}

/** Fails unless the token is what makes the request succeed, so the benchmark measures authenticated reads. */
async function checkAccess(target: Target): Promise<void> {
  const withToken = await fetch(target.url, { headers: target.headers });
  const without = await fetch(target.url);
  if (withToken.status !== 200 || without.status !== 401) {
    throw new Error(`${target.name}: expected 200 with the token and 401 without, got ${withToken.status} and ${without.status}`);
  }
}

/** An authenticated project read through the whole Slipway app vs a bare Fastify JSON route, same process and settings. */
export async function apiBench(): Promise<void> {
  await withSlipway(async ({ services, ctx, project }) => {
    const { token } = await services.tokens.create(ctx, "bench", ["projects:read"], null);
    const app = await buildApp(services, { logger: false });
    const bare = Fastify({ logger: false });
    bare.get("/", async () => ({ id: "prj_bench", name: "bench", ok: true }));
    try {
      const slipway: Target = {
        name: "GET /api/v1/projects/:id (bearer token)",
        url: `${await listen(app)}/api/v1/projects/${project.id}`,
        headers: { authorization: `Bearer ${token}` },
      };
      const baseline: Target = { name: "bare Fastify JSON route", url: `${await listen(bare)}/`, headers: {} };
      await checkAccess(slipway);

      const measured = await measure(slipway);
      const base = await measure(baseline);
      printTable(
        `${CONNECTIONS} connections, ${MEASURE_S} s each after a ${WARMUP_S} s warm-up, autocannon in the same process, ${HOST} only`,
        ["target", ...COLUMNS.map((c) => c.header)],
        [
          [slipway.name, ...COLUMNS.map((c) => fmt(c.value(measured), c.decimals))],
          [baseline.name, ...COLUMNS.map((c) => fmt(c.value(base), c.decimals))],
          ["ratio (slipway/bare)", ...COLUMNS.map((c) => ratio(c.value(measured), c.value(base)))],
        ],
      );
    } finally {
      await app.close();
      await bare.close();
    }
  });
}
