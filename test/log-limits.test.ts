import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LeasedJob } from "../src/builds/builds.js";
import { truncationNotice } from "../src/builds/job-logs.js";
import { Runner } from "../src/runner/runner.js";
import type { Sandbox } from "../src/sandbox/backend.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { buildWhen, hasEnded } from "./helpers/build-wait.js";
import { Client, createUser, signIn, startHarness, type Harness } from "./helpers/harness.js";

// A job's log: capped at maxJobLogBytes (the log ends with a notice, the job goes on), read back
// as text or as Server-Sent Events with the same bytes, resumable from any byte offset.

const CAP = 100_000;
const NOTICE = truncationNotice(CAP);
let h: Harness;
let url: string;
let owner: Client;
let runnerApi: Client;
let projectId: string;

beforeAll(async () => {
  h = await startHarness({ maxJobLogBytes: CAP });
  await h.app.listen({ host: "127.0.0.1", port: 0 });
  url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  await createUser(h, "logs@example.com");
  owner = await signIn(h, "logs@example.com");
  projectId = (await owner.post("/api/v1/projects", { name: "logs" })).json().id;
  runnerApi = new Client(h.app, { bearer: (await h.services.runners.register("by hand")).token });
});

afterAll(() => h?.close());

const logUrl = (job: { buildId: string; jobId: string }, query = "") => `/api/v1/builds/${job.buildId}/jobs/${job.jobId}/log${query}`;

/** A build whose job this test holds, as a runner would, to write its log byte by byte. */
async function heldJob(): Promise<{ buildId: string; jobId: string }> {
  const buildId = (await owner.post(`/api/v1/projects/${projectId}/builds`, { branch: "main" })).json().id as string;
  const { job } = (await runnerApi.post("/api/v1/runner/lease", { waitMs: 0 })).json() as { job: LeasedJob };
  expect(job.buildId).toBe(buildId);
  return { buildId, jobId: job.jobId };
}

const append = (jobId: string, offset: number, data: Buffer) => runnerApi.post(`/api/v1/runner/jobs/${jobId}/log`, { offset, data: data.toString("base64") });
const finish = (jobId: string) => runnerApi.post(`/api/v1/runner/jobs/${jobId}/finish`, { status: "success" });

async function text(job: { buildId: string; jobId: string }, query = ""): Promise<Buffer> {
  const res = await owner.get(logUrl(job, `?format=text${query && `&${query}`}`));
  expect(res.statusCode, res.body).toBe(200);
  expect(res.headers["content-type"]).toBe("text/plain; charset=utf-8");
  return res.rawPayload;
}

interface SseEvent {
  event: string;
  id?: number;
  data: string;
}

const parseEvents = (raw: string): SseEvent[] =>
  raw
    .split("\n\n")
    .filter((e) => e.startsWith("event: "))
    .map((e) => {
      const field = (name: string) => e.split("\n").find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
      return { event: field("event")!, ...(field("id") !== undefined && { id: Number(field("id")) }), data: field("data")! };
    });

const logBytes = (events: SseEvent[]) => Buffer.concat(events.filter((e) => e.event === "log").map((e) => Buffer.from((JSON.parse(e.data) as { data: string }).data, "base64")));

/** An SSE stream over real HTTP, read event by event. */
async function openSse(job: { buildId: string; jobId: string }, opts: { query?: string; lastEventId?: number } = {}) {
  const res = await fetch(`${url}${logUrl(job, opts.query)}`, { headers: { cookie: owner.auth.cookie!, ...(opts.lastEventId !== undefined && { "last-event-id": String(opts.lastEventId) }) } });
  expect(res.headers.get("content-type")).toBe("text/event-stream");
  const reader = res.body!.getReader();
  let raw = "";
  let done = false;
  return {
    events: () => parseEvents(raw),
    /** Reads until `until(events so far)` holds or the stream ends. */
    async readUntil(until: (events: SseEvent[]) => boolean): Promise<SseEvent[]> {
      while (!done && !until(parseEvents(raw))) {
        const next = await reader.read();
        done = next.done;
        if (next.value) raw += Buffer.from(next.value).toString();
      }
      return parseEvents(raw);
    },
  };
}

/** A job's whole SSE stream, for a job that has ended (the stream closes after the backlog). */
const sse = async (job: { buildId: string; jobId: string }, opts: { query?: string; lastEventId?: number } = {}) => (await openSse(job, opts)).readUntil(() => false);

describe("reading a log back", () => {
  let job: { buildId: string; jobId: string };
  let written: Buffer;

  beforeAll(async () => {
    job = await heldJob();
    // More chunks than one page of the store, with colours and multi-byte characters in them.
    const chunks = Array.from({ length: 11 }, (_, i) => Buffer.from(`\x1b[3${i % 8}m▶ chunk ${i}\x1b[0m ${"·".repeat(500 + i)}\n`));
    let offset = 0;
    for (const c of chunks) {
      expect((await append(job.jobId, offset, c)).json()).toEqual({ size: offset + c.length, truncated: false });
      offset += c.length;
    }
    written = Buffer.concat(chunks);
    expect((await finish(job.jobId)).statusCode).toBe(204);
  });

  it("?format=text streams the stored bytes, ANSI colours kept, and the SSE form carries exactly the same bytes", async () => {
    const plain = await text(job);
    expect(plain.equals(written)).toBe(true);
    expect(plain.toString()).toContain("\x1b[31m▶ chunk 1\x1b[0m");
    const events = await sse(job);
    expect(logBytes(events).equals(plain)).toBe(true);
    // Every event names the byte it ends at, to resume from; the stream closes with the job's status.
    const ids = events.filter((e) => e.event === "log").map((e) => e.id!);
    expect(ids.length).toBe(11);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(ids.at(-1)).toBe(written.length);
    expect(events.at(-1)).toEqual({ event: "end", data: JSON.stringify({ status: "success", reason: null }) });
  });

  it("resumes from a byte offset (?offset= or Last-Event-ID), even one inside a chunk or a character", async () => {
    for (const from of [0, 1, 1234, 1235, written.length - 1]) {
      const rest = written.subarray(from);
      expect((await text(job, `offset=${from}`)).equals(rest), `text from ${from}`).toBe(true);
      expect(logBytes(await sse(job, { query: `?offset=${from}` })).equals(rest), `SSE ?offset=${from}`).toBe(true);
      expect(logBytes(await sse(job, { lastEventId: from })).equals(rest), `SSE Last-Event-ID ${from}`).toBe(true);
    }
    // ?offset wins over Last-Event-ID; past the end there is nothing more to send.
    expect(logBytes(await sse(job, { query: "?offset=100", lastEventId: 5 })).equals(written.subarray(100))).toBe(true);
    expect((await text(job, `offset=${written.length + 10}`)).length).toBe(0);
  });

  it("a bad offset or format is 400 invalid_request", async () => {
    for (const query of ["offset=-1", "offset=abc", "offset=1.5", "offset=1e400", "format=html", "format=", "format=text&format=sse", "from=3"]) {
      const res = await owner.get(logUrl(job, `?${query}`));
      expect(res.statusCode, query).toBe(400);
      expect(res.json().error.code, query).toBe("invalid_request");
    }
    // Control: the same route answers a good query.
    expect((await owner.get(logUrl(job, "?format=text&offset=3"))).statusCode).toBe(200);
  });

  it("a running job's stream sends the backlog, then follows live from where it left off, then ends with the status", async () => {
    const running = await heldJob();
    const first = Buffer.from("\x1b[32mbefore\x1b[0m\n");
    await append(running.jobId, 0, first);
    const stream = await openSse(running);
    const backlog = await stream.readUntil((events) => logBytes(events).length >= first.length);
    expect(logBytes(backlog).equals(first)).toBe(true);
    const live = Buffer.from("live line\n");
    await append(running.jobId, first.length, live);
    expect(logBytes(await stream.readUntil((events) => logBytes(events).length >= first.length + live.length)).equals(Buffer.concat([first, live]))).toBe(true);
    await finish(running.jobId);
    const all = await stream.readUntil((events) => events.some((e) => e.event === "end"));
    expect(all.at(-1)!.event).toBe("end");
    expect(logBytes(all).equals(await text(running))).toBe(true);
  });
});

describe("the log cap (maxJobLogBytes)", () => {
  it("the runner API stores up to the cap, then the notice, and answers later chunks with `truncated` instead of an error", async () => {
    const job = await heldJob();
    const part = Buffer.alloc(40_000, "a");
    expect((await append(job.jobId, 0, part)).json()).toEqual({ size: 40_000, truncated: false });
    // Control: below the cap, a chunk that leaves a gap is refused, so the answers below are the cap's doing.
    expect((await append(job.jobId, 90_000, part)).statusCode).toBe(409);
    expect((await append(job.jobId, 40_000, part)).json()).toEqual({ size: 80_000, truncated: false });
    const crossing = await append(job.jobId, 80_000, Buffer.alloc(40_000, "b"));
    expect(crossing.json()).toEqual({ size: CAP + NOTICE.length, truncated: true });
    // What follows, a retry, or a chunk from far ahead: all answered alike, none stored.
    for (const offset of [120_000, 80_000, 5_000_000]) {
      const later = await append(job.jobId, offset, Buffer.from("dropped\n"));
      expect(later.statusCode).toBe(200);
      expect(later.json()).toEqual({ size: CAP + NOTICE.length, truncated: true });
    }
    const log = await text(job);
    expect(log.length).toBe(CAP + NOTICE.length);
    expect(log.subarray(0, 80_000).equals(Buffer.alloc(80_000, "a"))).toBe(true);
    expect(log.subarray(80_000, CAP).equals(Buffer.alloc(CAP - 80_000, "b"))).toBe(true);
    expect(log.subarray(CAP).equals(NOTICE)).toBe(true);
    expect(NOTICE.toString()).toMatch(/^\n\x1b\[0mslipway: log truncated at 100000 bytes: .*SLIPWAY_MAX_JOB_LOG_BYTES\)\n$/);
    // The job is unaffected: it finishes as its runner says.
    expect((await finish(job.jobId)).statusCode).toBe(204);
    expect((await owner.get(`/api/v1/builds/${job.buildId}`)).json().status).toBe("success");
  });

  describe("with a real runner and sandbox", () => {
    let runner: Runner;
    const configs = new Map<string, string>();

    beforeAll(async () => {
      const { token } = await h.services.runners.register("sandboxes");
      // The pipeline config is all these builds need of a repository.
      const checkout = async (job: LeasedJob, sandbox: Sandbox) => sandbox.writeFile("/workspace/.slipway.yml", configs.get(job.projectId)!);
      runner = new Runner({ server: url, token, backend: new BwrapBackend(), checkout });
      runner.start(1);
    });
    afterAll(() => runner?.stop());

    async function build(name: string, config: string) {
      const id = (await owner.post("/api/v1/projects", { name })).json().id as string;
      configs.set(id, config);
      const created = (await owner.post(`/api/v1/projects/${id}/builds`, { branch: "main" })).json();
      const done = await buildWhen(owner, created.id, hasEnded);
      return { ...done, log: await text({ buildId: created.id, jobId: done.jobs[0]!.id }) };
    }

    const LOUD = "  - name: loud\n    command: yes 0123456789abcdef | head -c 300000\n";

    it("a step printing past the cap: the log stops at the cap with the notice, the steps after it still run, and the build passes", async () => {
      const b = await build("loud", `image: host\nsteps:\n${LOUD}  - name: after\n    command: echo after-the-cap > /tmp/ran && cat /tmp/ran\n`);
      expect({ status: b.status, reason: b.reason }).toEqual({ status: "success", reason: null });
      expect(b.log.length).toBe(CAP + NOTICE.length);
      expect(b.jobs[0]!.logBytes).toBe(CAP + NOTICE.length);
      expect(b.log.subarray(CAP).equals(NOTICE)).toBe(true);
      expect(b.log.toString()).toContain("0123456789abcdef\n0123456789abcdef\n");
      expect(b.log.toString()).not.toContain("after-the-cap");
    });

    it("past the cap the build's status is still its steps' own: a later failing step fails it with its reason", async () => {
      const b = await build("loud-then-fail", `image: host\nsteps:\n${LOUD}  - name: broken\n    command: exit 3\n`);
      expect({ status: b.status, reason: b.reason }).toEqual({ status: "failed", reason: "step broken: exited with code 3" });
      expect(b.log.subarray(CAP).equals(NOTICE)).toBe(true);
    });

    it("control: a log under the cap is whole and has no notice", async () => {
      const b = await build("quiet", "image: host\nsteps:\n  - name: quiet\n    command: echo quiet-output\n");
      expect(b.status).toBe("success");
      expect(b.log.toString()).toContain("quiet-output");
      expect(b.log.toString()).toMatch(/✓ quiet: success/);
      expect(b.log.includes(NOTICE)).toBe(false);
      expect(b.log.length).toBeLessThan(CAP);
    });
  });
});
