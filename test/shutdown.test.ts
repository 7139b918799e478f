import { connect, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { expect, it } from "vitest";
import { createUser, signIn, startHarness } from "./helpers/harness.js";

const within = <T>(promise: Promise<T>, ms: number): Promise<T | "still waiting"> => Promise.race([promise, new Promise<"still waiting">((r) => setTimeout(() => r("still waiting"), ms))]);

it("shutdown closes connections that never sent a request, lets a request in flight finish, and ends live log streams", async () => {
  const h = await startHarness();
  await h.app.listen({ host: "127.0.0.1", port: 0 });
  const base = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  const { token } = await h.services.runners.register("shutdown");
  const lease = (waitMs: number) => fetch(`${base}/api/v1/runner/lease`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ waitMs }) });

  // A running job, and a live stream of its log: it would follow the job for as long as it runs.
  await createUser(h, "watcher@example.com");
  const watcher = await signIn(h, "watcher@example.com");
  const projectId = (await watcher.post("/api/v1/projects", { name: "watched" })).json().id as string;
  const build = (await watcher.post(`/api/v1/projects/${projectId}/builds`, { branch: "main" })).json();
  expect((await lease(0)).status).toBe(200);
  const stream = await fetch(`${base}/api/v1/builds/${build.id}/jobs/${build.jobs[0].id}/log`, { headers: { cookie: watcher.auth.cookie! } });
  expect(stream.headers.get("content-type")).toBe("text/event-stream");
  const streamEnded = stream.body!.pipeTo(new WritableStream()).then(
    () => "ended",
    () => "cut",
  );
  // A runner's long poll, in flight when the server closes: no job is queued, so it waits.
  const polling = lease(1500);
  await new Promise((r) => setTimeout(r, 200));
  // A client that connected and said nothing.
  const silent: Socket = connect(Number(new URL(base).port), "127.0.0.1");
  await new Promise((r) => silent.once("connect", r));
  const silentClosed = new Promise((r) => silent.once("close", r));

  // Node would keep the silent connection until its headers timeout and the poll's until its
  // keep-alive timeout (a minute each), the stream as long as the job runs: still waiting after 10 s is that hang.
  expect(await within(h.app.close(), 10_000)).not.toBe("still waiting");
  await silentClosed;
  expect((await polling).status).toBe(204);
  expect(["ended", "cut"]).toContain(await streamEnded);
  await h.close();
});
