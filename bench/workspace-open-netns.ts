import { appendFileSync } from "node:fs";
import { AUTHORIZED_KEY_OPTIONS } from "../test/helpers/git-server.js";
import type { Workspace } from "../src/workspaces/workspaces.js";
import { plainClones } from "./plain-clones.js";
import { withSlipway, type Slipway } from "./support.js";

// The cold-open benchmark's side inside the network namespace it makes (see runModuleInNetns):
// real services open workspaces of a repository whose only way out leads to the bench's sshd.

export interface OpenInput {
  repositoryUrl: string;
  authorizedKeys: string;
  rounds: number;
  workDir: string;
  keyDir: string;
}

/** Ascending milliseconds. */
export interface OpenOutput {
  open: number[];
  gitClone: number[];
}

const OPEN_TIMEOUT_MS = 120_000;

export async function main(input: OpenInput): Promise<OpenOutput> {
  process.env.TMPDIR = input.workDir;
  return withSlipway(
    async (s) => {
      const key = await s.services.deployKeys.revealDeployKey(s.project.id);
      appendFileSync(input.authorizedKeys, `${AUTHORIZED_KEY_OPTIONS} ${key.publicKey.trim()}\n`);
      // The first open also pins the git host's key.
      await openOnce(s);
      const open: number[] = [];
      for (let i = 0; i < input.rounds; i++) open.push(await openOnce(s));
      return { open: open.sort((a, b) => a - b), gitClone: await plainClones(input, key.privateKey, input.rounds) };
    },
    { repositoryUrl: input.repositoryUrl, settings: { workspaceNetwork: "outbound" } },
  );
}

/** Milliseconds from asking for a workspace to the first byte its shell prints; the workspace is deleted after. */
async function openOnce({ services, ctx, project }: Slipway): Promise<number> {
  const { workspaces, workspaceHost: host } = services;
  const started = performance.now();
  const ws = await workspaces.create(ctx, { ...project, repositoryUrl: project.repositoryUrl! }, null);
  const running = new Promise<Workspace>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the workspace did not start within ${OPEN_TIMEOUT_MS / 1000} s`)), OPEN_TIMEOUT_MS);
    const unfollow = workspaces.onChange((w) => {
      if (w.id !== ws.id || (w.state !== "running" && w.state !== "failed")) return;
      clearTimeout(timer);
      unfollow();
      resolve(w);
    });
  });
  host.start(ws.id);
  const seen = await running;
  if (seen.state !== "running") throw new Error(`the workspace failed: ${seen.reason}`);
  const terminal = host.openTerminal(ws.id)!;
  let detach = () => undefined as void;
  await new Promise<void>((resolve) => {
    const attached = terminal.attach(() => resolve(), () => resolve());
    detach = attached.detach;
    if (attached.backlog.length > 0) resolve();
  });
  detach();
  const ms = performance.now() - started;
  await host.discard(ws.id);
  await workspaces.delete(ctx, ws.id, project.orgId);
  return ms;
}
