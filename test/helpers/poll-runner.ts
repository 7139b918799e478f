import { appendFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { MAX_POLLED_REFS } from "../../src/scm/poll-report.js";
import { buildWhen, hasEnded } from "./build-wait.js";
import { buildLog, withCloneServer } from "./clone-runner.js";
import { AUTHORIZED_KEY_OPTIONS, pushCommit, tagMany } from "./git-server.js";

// The entry point of a process run inside the test's "runner" network namespace: a real Slipway
// server and Runner (polling every 200 ms for due polls), and a plain git repository over SSH in
// the "services" namespace that cannot call Slipway: it is polled (P08).

export interface PollRunInput {
  repositoryUrl: string;
  authorizedKeys: string;
  /** The served bare repository and its owner, to push a new commit into between two polls. */
  bare: string;
  ownerUid: number;
}

export interface PollRunOutput {
  tooShort: number;
  firstPoll: { polling: unknown; builds: number; knownHosts: string | null };
  pushed: string;
  build: { status: string; reason: string | null; commit: string | null; branch: string | null; trigger: string; log: string };
  quietPoll: { builds: number; polledAgain: boolean };
  /** What the project says after the repository grew more tags than a poll takes. */
  tooManyRefs: { problem: string | null; builds: number };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(100)) {
    const value = await probe();
    if (value !== undefined) return value;
  }
  throw new Error(`timed out waiting for ${what}`);
}

export const main = (input: PollRunInput): Promise<PollRunOutput> =>
  withCloneServer(
    async ({ h, owner }) => {
      const project = (await owner.post("/api/v1/projects", { name: "polled", repositoryUrl: input.repositoryUrl })).json().id as string;
      appendFileSync(input.authorizedKeys, `${AUTHORIZED_KEY_OPTIONS} ${(await owner.get(`/api/v1/projects/${project}/deploy-key`)).json().publicKey}\n`);
      const tooShort = (await owner.patch(`/api/v1/projects/${project}`, { pollIntervalSeconds: 5 })).statusCode;
      await owner.patch(`/api/v1/projects/${project}`, { pollIntervalSeconds: 60 });
      const seen = () => owner.get(`/api/v1/projects/${project}`).then((r) => r.json());
      const builds = async () => (await owner.get(`/api/v1/projects/${project}/builds`)).json().builds as Array<{ id: string; commit: string | null }>;
      const first = await until("the first poll", async () => ((await seen()).polling?.polledAt ? await seen() : undefined));
      const firstPoll = { polling: first.polling, builds: (await builds()).length, knownHosts: first.knownHosts as string | null };

      const pushed = pushCommit(input.bare, input.ownerUid, "version", "3\n", "third");
      // As if the interval had passed: the next poll is due now.
      const due = () => h.services.store.db.updateTable("repository_polls").set({ next_at: new Date(0).toISOString() }).where("project_id", "=", project).execute();
      await due();
      const created = await until("a build of the pushed commit", async () => (await builds()).find((b) => b.commit === pushed));
      const build = await buildWhen(owner, created.id, hasEnded);
      const full = (await owner.get(`/api/v1/builds/${build.id}`)).json();

      const pollAgain = async () => {
        const before = (await seen()).polling.polledAt as string;
        await due();
        return until("another poll", async () => ((await seen()).polling.polledAt !== before ? true : undefined));
      };
      // Nothing moved: another poll starts nothing.
      const polledAgain = await pollAgain();
      const quietPoll = { builds: (await builds()).length, polledAgain };

      tagMany(input.bare, input.ownerUid, pushed, MAX_POLLED_REFS + 1);
      await pollAgain();
      const tooManyRefs = { problem: (await seen()).polling.problem as string | null, builds: (await builds()).length };
      return {
        tooShort,
        firstPoll,
        pushed,
        build: { status: build.status, reason: build.reason, commit: full.commit, branch: full.branch, trigger: full.trigger, log: await buildLog(owner, build) },
        quietPoll,
        tooManyRefs,
      };
    },
    { runner: { pollEveryMs: 200 } },
  );
