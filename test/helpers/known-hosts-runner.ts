import { existsSync } from "node:fs";
import { buildWhen, hasEnded } from "./build-wait.js";
import { buildLog, projectAtGitServer, withCloneServer } from "./clone-runner.js";
import { AUTHORIZED_KEY_OPTIONS } from "./git-server.js";

// The entry point of a process run inside the test's "runner" network namespace (see
// runModuleInNetns): a real Slipway server and Runner cloning from the sshd in the "services"
// namespace, for projects with pinned, first-seen or changed git host keys, or a clone that hangs.

export interface HostKeysProject {
  /** The git server lets the project's key run only a command that touches this file and then never answers. */
  hangMarker?: string;
  /** The project's known hosts, set through the API before its build (null clears them). */
  pin?: string | null;
  /** Cancel the build once the clone hangs. */
  cancelWhenHung?: boolean;
  /** How many builds to run, one after the other. */
  builds: number;
}

export interface HostKeysRunInput {
  repositoryUrl: string;
  authorizedKeys: string;
  projects: HostKeysProject[];
}

export interface HostKeysBuild {
  status: string;
  reason: string | null;
  log: string;
  /** The project's known hosts as the API shows them after the build. */
  knownHosts: string | null;
  /** Running with the clone hung, just before the cancel. */
  statusWhenHung?: string;
  /** From the cancel request to the build's end. */
  cancelMs?: number;
}

export interface HostKeysRunOutput {
  projects: Array<{ fingerprint: string; builds: HostKeysBuild[]; audit: Array<{ action: string; actor: string; details: Record<string, unknown> }> }>;
}

async function untilExists(file: string, ms = 60_000): Promise<void> {
  const until = Date.now() + ms;
  while (!existsSync(file)) {
    if (Date.now() > until) throw new Error(`${file} did not appear: the clone never reached the git server`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const main = (input: HostKeysRunInput): Promise<HostKeysRunOutput> =>
  withCloneServer(async ({ h, owner }) => {
    const out: HostKeysRunOutput = { projects: [] };
    for (const [i, spec] of input.projects.entries()) {
      // The same restrictions, another command: it reads what git sends and never answers, until the client goes.
      const options = spec.hangMarker ? `command="touch ${spec.hangMarker}; exec cat >/dev/null",${AUTHORIZED_KEY_OPTIONS.split('",').pop()}` : AUTHORIZED_KEY_OPTIONS;
      const project = await projectAtGitServer(owner, `app${i}`, input.repositoryUrl, input.authorizedKeys, options);
      if (spec.pin !== undefined) {
        const res = await owner.patch(`/api/v1/projects/${project}`, { knownHosts: spec.pin });
        if (res.statusCode !== 200) throw new Error(`pinning failed: ${res.body}`);
      }
      const builds: HostKeysBuild[] = [];
      for (let n = 0; n < spec.builds; n++) {
        const created = (await owner.post(`/api/v1/projects/${project}/builds`, { branch: "main" })).json();
        let hung: Pick<HostKeysBuild, "statusWhenHung"> = {};
        let canceledAt = 0;
        if (spec.cancelWhenHung) {
          await untilExists(spec.hangMarker!);
          hung = { statusWhenHung: (await owner.get(`/api/v1/builds/${created.id}`)).json().status };
          canceledAt = Date.now();
          await owner.post(`/api/v1/builds/${created.id}/cancel`);
        }
        const build = await buildWhen(owner, created.id, hasEnded);
        builds.push({
          status: build.status,
          reason: build.reason,
          log: await buildLog(owner, build),
          knownHosts: (await owner.get(`/api/v1/projects/${project}`)).json().knownHosts,
          ...hung,
          ...(canceledAt && { cancelMs: Date.now() - canceledAt }),
        });
      }
      const audit = await h.services.store.db.selectFrom("audit_log").select(["action", "actor", "details"]).where("target", "=", project).where("action", "like", "project.known_hosts%").orderBy("seq").execute();
      out.projects.push({
        fingerprint: (await owner.get(`/api/v1/projects/${project}/deploy-key`)).json().fingerprint,
        builds,
        audit: audit.map((a) => ({ action: a.action, actor: a.actor, details: JSON.parse(a.details) as Record<string, unknown> })),
      });
    }
    return out;
  });
