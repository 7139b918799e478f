import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { memoryFiles, selectSteps, type Pipeline, type Step } from "../src/pipeline/index.js";
import { PipelineRunner, type RunEvent, type RunOptions, type RunResult } from "../src/runner/pipeline-runner.js";
import { resolveServiceEnv } from "../src/runner/service-env.js";
import { JobServices, servicesBeside } from "../src/runner/services.js";
import type { Sandbox, SandboxSpec } from "../src/sandbox/backend.js";
import { BwrapBackend, UID_RANGE } from "../src/sandbox/bwrap-backend.js";
import { SLIRP } from "../src/sandbox/network.js";
import { validPipeline } from "./helpers/pipeline.js";
import { probe, sh, type ProbeResults, type Target } from "./helpers/sandbox-network.js";

// Services beside the steps, on the real bubblewrap backend: each in a sandbox of its own that
// shares the job sandbox's network namespace. They use the `host` image and python3 from /usr.

const SECRET = "service-secret-value-77";
const isRoot = process.getuid?.() === 0;
let backend: BwrapBackend;
let runtimeDir: string;
const open: Sandbox[] = [];

beforeAll(() => {
  runtimeDir = mkdtempSync(path.join(tmpdir(), "slipway-services-"));
  backend = new BwrapBackend({ runtimeDir });
});
afterAll(async () => {
  await Promise.all(open.map((s) => s.destroy()));
  rmSync(runtimeDir, { recursive: true, force: true });
});

/** A python HTTP server answering every GET with `text` and saying which path it served; `prelude` runs first. */
function httpServerScript(port: number, text: string, prelude: string[] = []): string {
  return [
    "import http.server as h, os, time, urllib.request",
    ...prelude,
    "class H(h.BaseHTTPRequestHandler):",
    "  def do_GET(s):",
    `    s.send_response(200); s.end_headers(); s.wfile.write(${JSON.stringify(text + "\n")}.encode())`,
    "  def log_message(s, *a): print('served', s.path, flush=True)",
    `h.HTTPServer(('', ${port}), H).serve_forever()`,
  ].join("\n");
}

/** The same as a YAML flow sequence (JSON is YAML). */
const httpServer = (port: number, text: string, prelude: string[] = []) => JSON.stringify(["python3", "-c", httpServerScript(port, text, prelude)]);

/** A shell command that fetches `url` once, with no retry, and prints the body. */
const fetchOnce = (url: string) => `python3 -c 'import urllib.request; print(urllib.request.urlopen("${url}", timeout=10).read().decode().strip())'`;
const yaml = (text: string) => JSON.stringify(text);

interface Run {
  result: RunResult;
  events: RunEvent[];
  /** Everything the job log would hold, in order, as text. */
  log: string;
}

async function run(pipeline: Pipeline, onEvent: (e: RunEvent) => void = () => undefined, more: Partial<Pick<RunOptions, "serviceEnv" | "secrets">> = {}): Promise<Run> {
  const events: RunEvent[] = [];
  const result = await new PipelineRunner({
    backend,
    pipeline,
    nodes: selectSteps(pipeline, { branch: "main" }),
    checkout: async () => undefined,
    env: { CI: "true", API_TOKEN: SECRET },
    serviceEnv: more.serviceEnv,
    secrets: [SECRET, ...(more.secrets ?? [])],
    onEvent: (e) => {
      events.push(e);
      onEvent(e);
    },
  }).run();
  const log = events
    .map((e) => (e.type === "output" || e.type === "service-output" ? e.data.toString() : e.type === "service-status" ? `● ${e.service}: ${e.message}\n` : e.type === "step-start" ? `▶ ${e.step.name}\n` : `${e.result.name}: ${e.result.status}\n`))
    .join("");
  return { result, events, log };
}

/** The connection numbers a BANNER server answered with, in probe order; NaN for a failed probe. */
const connections = (results: ProbeResults) => Object.values(results).map((r) => Number(/^banner hello \S+ #(\d+)$/.exec(r)?.[1]));
const statuses = (r: Run) => r.events.flatMap((e) => (e.type === "service-status" ? [`${e.service} ${e.message}`] : []));

/** Host pids whose command line contains `marker`, with their real uid. */
function hostProcessesWith(marker: string): Array<{ pid: number; uid: number }> {
  return hostProcesses().filter((p) => p.cmdline.includes(marker));
}

/** The kernel's flag of a task that is exiting (killed, releasing what it held, or a zombie). */
const PF_EXITING = 0x4;

/**
 * Host processes that are not on their way out. A killed sandbox's last tasks stay visible,
 * exiting, until this machine's pid 1 reaps the zombies among them, which some inits do late.
 */
function hostProcesses(): Array<{ pid: number; uid: number; cmdline: string }> {
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .flatMap((p) => {
      try {
        // Field 9 of stat, counted after the command name (which may hold spaces and parentheses).
        const flags = Number(readFileSync(`/proc/${p}/stat`, "utf8").replace(/^.*\) /s, "").split(" ")[6]);
        if (flags & PF_EXITING) return [];
        const status = readFileSync(`/proc/${p}/status`, "utf8");
        const uid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
        return [{ pid: Number(p), uid, cmdline: readFileSync(`/proc/${p}/cmdline`, "utf8") }];
      } catch {
        return [];
      }
    });
}

describe("services beside the steps", () => {
  it("a step reaches a service by its name on its port (80: below 1024), and the service's output is in the log, prefixed and masked", async () => {
    const pipeline = validPipeline({
      ".slipway.yml": `image: host
services:
  web:
    image: host
    command: ${httpServer(80, "hello from web", ['print("web up, token=" + os.environ["API_TOKEN"], flush=True)'])}
    healthcheck: { command: ${yaml(fetchOnce("http://127.0.0.1/health"))}, interval: 50ms, retries: 200 }
steps:
  - name: fetch
    command: ${yaml(`grep -w web /etc/hosts; ${fetchOnce("http://web/")}; ${fetchOnce("http://web:80/again")}`)}
`,
    });
    const r = await run(pipeline);
    expect(r.result.status).toBe("success");
    expect(r.log).toContain("127.0.0.1 web\n");
    expect(r.events.filter((e) => e.type === "output").map((e) => e.data.toString())).toEqual(["127.0.0.1 web\n", "hello from web\n", "hello from web\n"]);
    expect(statuses(r)).toEqual(["web started", "web healthy"]);
    // The service's lines carry its name; the secret in its environment is masked there too.
    expect(r.log).toContain("[web] web up, token=***\n");
    expect(r.log).toContain("[web] served /again\n");
    expect(r.log).not.toContain(SECRET);
    // Stopping it at the end of the job is not an early exit.
    expect(r.log).not.toContain("exited");
  });

  it("the steps wait until the service's health check passes (and without a health check, do not wait)", async () => {
    // The service listens only once its health check has run three times: deterministic, no clock.
    const gated = (healthcheck: boolean) =>
      validPipeline({
        ".slipway.yml": `image: host
services:
  web:
    image: host
    command: ${httpServer(8000, "ready", ['while not os.path.exists("/tmp/go"): time.sleep(0.05)', 'print("listening after", open("/tmp/checks").read().strip(), "checks", flush=True)'])}
${healthcheck ? `    healthcheck:\n      command: ${yaml(`n=$(($(cat /tmp/checks 2>/dev/null || echo 0) + 1)); echo $n > /tmp/checks; [ $n -lt 3 ] || touch /tmp/go; ${fetchOnce("http://127.0.0.1:8000/")}`)}\n      interval: 50ms\n      retries: 200` : ""}
steps:
  - name: fetch
    command: ${yaml(fetchOnce("http://web:8000/"))}
`,
      });
    const waited = await run(gated(true));
    expect(waited.result.steps[0]).toMatchObject({ name: "fetch", status: "success" });
    expect(waited.log).toMatch(/\[web\] listening after [3-9]\d* checks\n/);
    const healthy = waited.events.findIndex((e) => e.type === "service-status" && e.message === "healthy");
    const stepOutput = waited.events.findIndex((e) => e.type === "output");
    expect(healthy).toBeGreaterThan(-1);
    expect(stepOutput).toBeGreaterThan(healthy);
    expect(waited.log).toContain("ready\n");

    // Control: the same service without a health check is only started, and the step's single try fails.
    const unwaited = await run(gated(false));
    expect(statuses(unwaited)).toEqual(["web started"]);
    expect(unwaited.result.steps[0]).toMatchObject({ name: "fetch", status: "failed", reason: "exited with code 1" });
    expect(unwaited.log).toContain("Connection refused");
  });

  it("an unhealthy service fails the job with a reason naming it and quoting its health check's last output (masked); no step runs", async () => {
    const config = (check: string) =>
      validPipeline({
        ".slipway.yml": `image: host
services:
  db:
    image: host
    command: exec sleep 600
    healthcheck: { command: ${yaml(check)}, interval: 50ms, retries: 3 }
steps:
  - name: test
    command: echo the step ran
  - name: after
    command: echo after ran
`,
      });
    const r = await run(config('echo "db not ready (token $API_TOKEN)"; exit 3'));
    expect(r.result.status).toBe("failed");
    expect(r.result.steps.map((s) => [s.name, s.status])).toEqual([["test", "failed"], ["after", "skipped"]]);
    expect(r.result.steps[0]!.reason).toBe("service db is unhealthy: its health check failed 3 times in a row, the last one exited with code 3, saying: db not ready (token ***)");
    expect(r.log).not.toContain("the step ran");
    expect(r.log).not.toContain(SECRET);
    // Control: with a passing check the same steps run.
    const ok = await run(config("true"));
    expect(ok.result.status).toBe("success");
    expect(ok.log).toContain("the step ran\n");
  });

  it("a service that exits before it is healthy fails the job, and its exit is reported", async () => {
    const pipeline = validPipeline({
      ".slipway.yml": `image: host
services:
  flaky:
    image: host
    command: echo giving up; exit 4
    healthcheck: { command: "false", interval: 50ms, retries: 1000 }
steps:
  - name: test
    command: echo the step ran
`,
    });
    const r = await run(pipeline);
    expect(r.result.steps[0]).toMatchObject({ status: "failed", reason: "service flaky exited with code 4 before it was healthy" });
    expect(r.log).toContain("[flaky] giving up\n");
    expect(statuses(r)).toContain("flaky exited with code 4");
    expect(r.log).not.toContain("the step ran");
  });

  it("Codeship: a step runs in its service, with the services that one depends_on (transitively) started first, in order", async () => {
    // api refuses to start unless db already answers; the step's own service (app) is not started beside it.
    const api = httpServerScript(6000, "api over db", ['print("api sees", urllib.request.urlopen("http://db:5000/", timeout=5).read().decode().strip(), flush=True)']);
    const pipeline = validPipeline({
      "codeship-services.yml": `app:
  image: host
  depends_on: [api]
api:
  image: host
  command: ${JSON.stringify(["python3", "-c", api])}
  depends_on:
    - db
  healthcheck:
    test: ["CMD-SHELL", ${yaml(fetchOnce("http://127.0.0.1:6000/"))}]
    interval: 50ms
    retries: 200
db:
  image: host
  command: ${httpServer(5000, "db rows")}
  healthcheck:
    test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/')"]
    interval: 50ms
    retries: 200
unused:
  image: host
  command: echo never started
`,
      "codeship-steps.yml": `- name: test
  service: app
  command: ${yaml(fetchOnce("http://api:6000/"))}
`,
    });
    const r = await run(pipeline);
    expect(r.result.status).toBe("success");
    expect(statuses(r)).toEqual(["db started", "db healthy", "api started", "api healthy"]);
    expect(r.log).toContain("[api] api sees db rows\n");
    expect(r.log).toContain("api over db\n");
    expect(r.log).not.toContain("never started");
  });

  it("a service's environment: the job's variables, its env files (encrypted ones masked) and its environment", async () => {
    const files = {
      "codeship-services.yml": `app:
  image: host
  depends_on: [db]
db:
  image: host
  command: ${JSON.stringify(["/bin/sh", "-c", 'echo "db: CI=$CI plain=$PLAIN sealed=$SEALED own=$OWN"; touch /tmp/said; exec sleep 600'])}
  # The step waits until the line is written, not merely until the service started.
  healthcheck: { test: "test -e /tmp/said", interval: 50ms, retries: 200 }
  env_file: db.env
  encrypted_env_file: db.env.encrypted
  environment:
    OWN: yes
`,
      "codeship-steps.yml": `- name: test
  service: app
  command: echo step ran
`,
      "db.env": "PLAIN=from-file\n",
      // Only its format is checked here; the opener below stands in for the server that decrypts it.
      "db.env.encrypted": "slipway:v1:AAAA\n",
    };
    const pipeline = validPipeline(files);
    const opened: string[] = [];
    const serviceEnv = await resolveServiceEnv(pipeline, selectSteps(pipeline, { branch: "main" }), memoryFiles(files), async (file) => {
      opened.push(file);
      return { SEALED: "sealed-value-1234" };
    });
    expect(opened).toEqual(["db.env.encrypted"]);
    const r = await run(pipeline, undefined, { serviceEnv: serviceEnv.env, secrets: serviceEnv.secrets });
    expect(r.result.status).toBe("success");
    expect(r.log).toContain("[db] db: CI=true plain=from-file sealed=*** own=yes\n");
  });

  it(".slipway.yml: a step without a service of its own has beside it every service no step runs in", async () => {
    const pipeline = validPipeline({
      ".slipway.yml": `image: host
services:
  cache:
    image: host
    command: ${httpServer(7000, "cached")}
    healthcheck: { command: ${yaml(fetchOnce("http://127.0.0.1:7000/"))}, interval: 50ms, retries: 200 }
  tools:
    image: host
    command: echo tools is where steps run, not a service
steps:
  - name: plain
    command: ${yaml(fetchOnce("http://cache:7000/"))}
  - name: in-tools
    service: tools
    command: echo running in tools
`,
    });
    const r = await run(pipeline);
    expect(r.result.status).toBe("success");
    expect(statuses(r)).toEqual(["cache started", "cache healthy"]);
    expect(r.log).toContain("cached\n");
    expect(r.log).toContain("running in tools\n");
    expect(r.log).not.toContain("[tools]");
  });

  it.runIf(isRoot)("P26: a service runs as an unprivileged uid of its own, and after the job no process of that uid is left", async () => {
    const marker = `svc-${randomBytes(4).toString("hex")}`;
    const pipeline = validPipeline({
      ".slipway.yml": `image: host
services:
  web:
    image: host
    command: exec python3 -c 'import time; print("up", flush=True); time.sleep(600)' ${marker}
    healthcheck: { command: "true", interval: 50ms, retries: 3 }
steps:
  - name: look
    command: echo looking; sleep 2
`,
    });
    let seen: Array<{ pid: number; uid: number }> = [];
    let step: Array<{ pid: number; uid: number }> = [];
    const r = await run(pipeline, (e) => {
      if (e.type !== "output" || !e.data.toString().includes("looking")) return;
      seen = hostProcessesWith(marker);
      step = hostProcessesWith("echo looking; sleep 2");
    });
    expect(r.result.status).toBe("success");
    // Control: while the step ran, the service was there, as one uid of the sandbox range.
    expect(seen.length).toBeGreaterThan(0);
    const uids = new Set(seen.map((p) => p.uid));
    expect(uids.size).toBe(1);
    const [uid] = uids;
    expect(uid).toBeGreaterThanOrEqual(UID_RANGE.first);
    expect(uid).toBeLessThan(UID_RANGE.first + UID_RANGE.count);
    // The step, beside it, is another uid.
    expect(step.length).toBeGreaterThan(0);
    expect(step.map((p) => p.uid)).not.toContain(uid);
    expect(hostProcesses().filter((p) => p.uid === uid)).toEqual([]);
  });
});

describe("which services a step needs", () => {
  const pipeline = () =>
    validPipeline({
      "codeship-services.yml": "app: { image: host, depends_on: [api] }\napi: { image: host, depends_on: [db, cache] }\ndb: { image: host }\ncache: { image: host, depends_on: [db] }\n",
      "codeship-steps.yml": "- service: app\n  command: make\n",
    });

  it("dependencies first, each once, the step's own service not among them", () => {
    const p = pipeline();
    expect(servicesBeside(selectSteps(p, { branch: "main" })[0] as Step, p)).toEqual(["db", "cache", "api"]);
  });

  it("a depends_on cycle or unknown service (which the loaders refuse with their location) is refused here too, not looped on", () => {
    const p = pipeline();
    const step = selectSteps(p, { branch: "main" })[0] as Step;
    p.services.db!.dependsOn = ["api"];
    expect(servicesBeside(step, p)).toBe("the services' depends_on has a cycle through api");
    p.services.db!.dependsOn = ["ghost"];
    expect(servicesBeside(step, p)).toBe("unknown service ghost");
  });
});

describe("the sandboxes of services", () => {
  /** A TCP server greeting each connection with `hello <name> #<how many connections so far>`. */
  const BANNER = (name: string, port: number) =>
    [
      "import socket",
      "n = 0",
      "s = socket.socket()",
      "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
      `s.bind(("0.0.0.0", ${port}))`,
      "s.listen()",
      "while True:",
      "    c, peer = s.accept()",
      "    n += 1",
      '    print("hit", peer[0], flush=True)',
      `    c.sendall(b"hello ${name} #%d\\n" % n)`,
      "    c.close()",
    ].join("\n");

  async function sandbox(spec: Partial<SandboxSpec> = {}): Promise<Sandbox> {
    const s = await backend.create({ image: { kind: "host" }, ...spec });
    open.push(s);
    return s;
  }

  it("P09: a service of one job is unreachable from another job's sandbox (a parallel branch), by address or by name", async () => {
    const pipeline = validPipeline({
      ".slipway.yml": `image: host
services:
  web:
    image: host
    command: ${JSON.stringify(["python3", "-c", BANNER("web", 80)])}
    healthcheck: { command: ${yaml(`python3 -c 'import socket; socket.create_connection(("127.0.0.1", 80), timeout=2)'`)}, interval: 50ms, retries: 200 }
steps:
  - name: s
    command: "true"
`,
    });
    // Two jobs with a way out, as parallel branches of a build on a server get.
    const [a, b] = await Promise.all([sandbox({ network: { mode: "outbound" } }), sandbox({ network: { mode: "outbound" } })]);
    const services = new JobServices({
      backend,
      pipeline,
      job: a,
      root: async () => ({ image: { kind: "host" } }),
      envOf: () => ({}),
      secrets: [],
      events: { output: () => undefined, status: () => undefined },
    });
    try {
      expect(await services.ensure(["web"])).toBeUndefined();
      // The service counts its connections (health checks made some): the count so far.
      const base = connections(await probe(a, [["127.0.0.1", 80]]))[0]!;
      // Control: the job reaches its service by loopback, by its own slirp address, and by name.
      expect(connections(await probe(a, [["127.0.0.1", 80], [SLIRP.guest, 80], ["web", 80]]))).toEqual([base + 1, base + 2, base + 3]);
      // The other job: the same addresses lead to its own namespace, and the name is not in its hosts.
      const targets: Target[] = ["127.0.0.1", SLIRP.guest, SLIRP.gateway].map((h) => [h, 80]);
      const fromB = await probe(b, targets);
      for (const target of targets) expect(fromB[target.join(":")]).toMatch(/^failed /);
      expect((await sh(b, "grep -c -w web /etc/hosts")).out.trim()).toBe("0");
      expect((await sh(a, "grep -c -w web /etc/hosts")).out.trim()).toBe("1");
      // Nothing of B's arrived at the service either: its next connection is the next number.
      expect(connections(await probe(a, [["127.0.0.1", 80]]))).toEqual([base + 4]);
    } finally {
      await services.stop();
    }
  });

  it("a service shares the job's network (a port below 1024 too), and destroying the job destroys the service", async () => {
    const job = await sandbox();
    const service = await backend.create({ image: { kind: "host" }, shareNetworkWith: job, hostname: "svc" });
    open.push(service);
    await Promise.all([job.addHosts({ svc: "127.0.0.1" }), service.addHosts({ svc: "127.0.0.1" })]);
    let served = "";
    const listening = new Promise<void>((resolve) => {
      void service.exec({ argv: ["python3", "-c", BANNER("svc", 443)] }, { stdout: (d) => ((served += d.toString()), resolve()) });
      // The listener prints only on a hit: poll from the job until it answers.
    });
    let reply = "";
    for (let i = 0; i < 200 && !reply.includes("hello svc"); i++) reply = (await sh(job, "python3 -c 'import socket; print(socket.create_connection((\"svc\", 443), timeout=2).recv(100).decode())' 2>&1")).out;
    await listening;
    expect(reply).toContain("hello svc");
    expect(served).toContain("hit 127.0.0.1");
    // Options that contradict each other are refused.
    await expect(backend.create({ image: { kind: "host" }, shareNetworkWith: job, network: { mode: "outbound" } })).rejects.toThrow(/no network policy of its own/);
    await expect(job.addHosts({ "bad name\n1.2.3.4 x": "127.0.0.1" })).rejects.toThrow(/not a hosts entry/);
    const uid = service.hostUid;
    await job.destroy();
    await expect(sh(service, "true")).rejects.toThrow(/gone/);
    if (isRoot) expect(hostProcesses().filter((p) => p.uid === uid)).toEqual([]);
  });
});
