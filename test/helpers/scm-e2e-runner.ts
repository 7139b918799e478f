import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { SettingsInput } from "../../src/config/settings.js";
import { buildWhen, hasEnded } from "./build-wait.js";
import { buildLog, withCloneServer } from "./clone-runner.js";
import { AUTHORIZED_KEY_OPTIONS } from "./git-server.js";
import { connectAccount } from "./scm-connect.js";
import { BitbucketSim } from "./scm-sim/bitbucket.js";
import { GitHubSim } from "./scm-sim/github.js";
import { GitLabSim } from "./scm-sim/gitlab.js";
import { GiteaSim } from "./scm-sim/gitea.js";

// The entry point of a process run inside the test's "runner" network namespace: one provider's
// simulator, a real Slipway server and a Runner with bwrap sandboxes, and the whole life of a
// linked repository: connect the account, link, push, build (cloning over real SSH from the
// sshd in the "services" namespace with the key the provider holds), statuses, unlink.

export type ProviderName = "github" | "gitlab" | "bitbucket" | "gitea";

export interface ScmRunInput {
  providers: ProviderName[];
  /** What every simulated repository's SSH URL points at: the sshd's served repository. */
  repositoryUrl: string;
  /** The sshd's authorized_keys: the deploy key the provider holds is registered there, as the host would. */
  authorizedKeys: string;
  /** The served repository's main branch head, which the simulated push announces. */
  commit: string;
}

export interface ScmRunOutput {
  redirect: string;
  link: { status: number; body: unknown };
  deployKey: string;
  keysAfterLink: Array<{ key: string; readOnly: boolean }>;
  hooksAfterLink: Array<{ url: string; secret: string | null }>;
  webhookSecret: string | undefined;
  deliveries: number[];
  build: { status: string; reason: string | null; log: string; id: string };
  statuses: Array<{ state: string; url: string | null }>;
  unlink: { status: number; body: unknown };
  keysAfterUnlink: number;
  hooksAfterUnlink: number;
}

/** What this test reads of one provider's simulator, in the terms of its API. */
interface View {
  repo: string;
  keys(): Array<{ key: string; readOnly: boolean }>;
  hooks(): Array<{ url: string; secret: string | null }>;
  statuses(sha: string): Array<{ state: string; url: string | null }>;
  push(branch: string, sha: string): Promise<number[]>;
  /** Settings beyond the app's credentials, URL and CA file. */
  settings?: SettingsInput;
}

/** One provider's simulator, seen through what this test needs of it. */
interface Adapter extends View {
  ca: string;
  settings: SettingsInput;
  close(): Promise<void>;
}

type StartOptions = { callbackUrl: string; sshUrl: () => string };

const all = <T>(map: Map<string, T[]>): T[] => [...map.values()].flat();

/** GitHub and Gitea name keys, hooks, statuses and push events alike. */
const githubLike = (sim: GitHubSim | GiteaSim): View => {
  const repo = "acme/private-app";
  return {
    repo,
    keys: () => all(sim.keys).map((k) => ({ key: k.key, readOnly: k.read_only })),
    hooks: () => all<{ config: { url: string; secret?: string } }>(sim.hooks).map((h) => ({ url: h.config.url, secret: h.config.secret ?? null })),
    statuses: (sha) => sim.statuses.filter((s) => s.sha === sha).map((s) => ({ state: s.state, url: s.target_url })),
    push: async (branch, sha) => (await sim.deliver(repo, "push", sim.pushPayload(repo, { ref: `refs/heads/${branch}`, after: sha }))).map((r) => r.status),
  };
};

const SIMULATORS: Record<ProviderName, (options: StartOptions) => Promise<{ sim: GitHubSim | GitLabSim | BitbucketSim | GiteaSim; view: View }>> = {
  github: async (options) => {
    const sim = await GitHubSim.start(options);
    return { sim, view: githubLike(sim) };
  },
  gitea: async (options) => {
    const sim = await GiteaSim.start(options);
    return { sim, view: githubLike(sim) };
  },
  gitlab: async (options) => {
    const sim = await GitLabSim.start(options);
    const repo = "acme/platform/api";
    return {
      sim,
      view: {
        repo,
        keys: () => all(sim.keys).map((k) => ({ key: k.key, readOnly: !k.can_push })),
        hooks: () => all(sim.hooks).map((h) => ({ url: h.url, secret: h.token })),
        // GitLab updates an open status in place, so the history is what Slipway posted.
        statuses: (sha) =>
          sim.requests
            .filter((r) => r.method === "POST" && r.path.endsWith(`/statuses/${sha}`))
            .map((r) => JSON.parse(r.body) as { state: string; target_url?: string })
            .map((b) => ({ state: b.state, url: b.target_url ?? null })),
        push: async (branch, sha) => (await sim.deliver(repo, "Push Hook", sim.pushPayload(repo, { ref: `refs/heads/${branch}`, after: sha }))).map((r) => r.status),
      },
    };
  },
  bitbucket: async (options) => {
    const sim = await BitbucketSim.start(options);
    const repo = "acme/private-app";
    return {
      sim,
      view: {
        repo,
        settings: { bitbucketApiUrl: sim.apiUrl },
        // Bitbucket's deploy keys are read-only, always.
        keys: () => all(sim.keys).map((k) => ({ key: k.key, readOnly: true })),
        hooks: () => all(sim.hooks).map((h) => ({ url: h.url, secret: h.secret })),
        statuses: (sha) => sim.statuses.filter((s) => s.commit === sha).map((s) => ({ state: s.state, url: s.url })),
        push: async (branch, sha) => (await sim.deliver(repo, "repo:push", sim.pushPayload(repo, { branch, hash: sha }))).map((r) => r.status),
      },
    };
  },
};

async function simulate(provider: ProviderName, callbackUrl: string, sshUrl: () => string, caFile: string): Promise<Adapter> {
  const { sim, view } = await SIMULATORS[provider]({ callbackUrl, sshUrl });
  const settings = { [`${provider}ClientId`]: sim.clientId, [`${provider}ClientSecret`]: sim.clientSecret, [`${provider}Url`]: sim.url, [`${provider}CaFile`]: caFile, ...view.settings };
  return { ...view, ca: sim.ca, settings, close: () => sim.close() };
}

/** A free port on this namespace's loopback, so the OAuth app can be registered with the server's address before it starts. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function main(input: ScmRunInput): Promise<Record<string, ScmRunOutput>> {
  const dir = mkdtempSync(path.join(tmpdir(), "slipway-scm-e2e-"));
  const port = await freePort();
  const sims = new Map<ProviderName, Adapter>();
  try {
    for (const provider of input.providers) {
      const caFile = path.join(dir, `${provider}-ca.pem`);
      const sim = await simulate(provider, `http://127.0.0.1:${port}/api/v1/scm/${provider}/callback`, () => input.repositoryUrl, caFile);
      writeFileSync(caFile, sim.ca);
      sims.set(provider, sim);
    }
    // One server with every provider set up at once, as an operator may run it.
    const settings = Object.assign({}, ...[...sims.values()].map((s) => s.settings)) as SettingsInput;
    return await withCloneServer(
      async ({ h, owner }) => {
        const out: Record<string, ScmRunOutput> = {};
        for (const [provider, sim] of sims) {
          const redirect = await connectAccount(owner, provider, sim.ca);
          const projectId = (await owner.post("/api/v1/projects", { name: `app-${provider}` })).json().id as string;
          const deployKey = (await owner.get(`/api/v1/projects/${projectId}/deploy-key`)).json().publicKey as string;
          const linked = await owner.put(`/api/v1/projects/${projectId}/repository-link`, { provider, repo: sim.repo });
          const webhookSecret = await h.services.webhooks.reveal(projectId);
          const keysAfterLink = sim.keys();
          const hooksAfterLink = sim.hooks();
          // The git host lets in the key it holds for the repository: read-only, git-shell only.
          for (const k of keysAfterLink) appendFileSync(input.authorizedKeys, `${AUTHORIZED_KEY_OPTIONS} ${k.key}\n`);
          const deliveries = await sim.push("main", input.commit);
          const builds = (await owner.get(`/api/v1/projects/${projectId}/builds`)).json().builds as Array<{ id: string }>;
          const build = builds[0] ? await buildWhen(owner, builds[0].id, hasEnded) : undefined;
          await h.services.scm.statuses.settled();
          const unlink = await owner.delete(`/api/v1/projects/${projectId}/repository-link`);
          out[provider] = {
            redirect,
            link: { status: linked.statusCode, body: linked.json() },
            deployKey,
            keysAfterLink,
            hooksAfterLink,
            webhookSecret,
            deliveries,
            build: build ? { status: build.status, reason: build.reason, log: await buildLog(owner, build), id: build.id } : { status: "none", reason: "no build was started", log: "", id: "" },
            statuses: sim.statuses(input.commit),
            unlink: { status: unlink.statusCode, body: unlink.json() },
            keysAfterUnlink: sim.keys().length,
            hooksAfterUnlink: sim.hooks().length,
          };
        }
        return out;
      },
      { settings, port },
    );
  } finally {
    for (const sim of sims.values()) await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
