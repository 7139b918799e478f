import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createGitUser, makeRepos, startSshd, type GitUser, type ServedRepos, type Sshd } from "./git-server.js";
import { createLab, LAB, type Lab } from "./sandbox-network.js";

/**
 * The test's two network namespaces with a plain git server in "services": a system user owning
 * the repositories (the app's with `config` as its .slipway.yml), served by sshd at LAB.allowed,
 * letting in the keys written to `authorizedKeys`. Needs root.
 */
export interface GitLab {
  lab: Lab;
  user: GitUser;
  repos: ServedRepos;
  authorizedKeys: string;
  /** The SSH URL of a served repository. */
  urlOf(repo: string): string;
  close(): Promise<void>;
}

export async function startGitLab(config: string, name: string): Promise<GitLab> {
  const lab = createLab();
  const root = mkdtempSync(path.join(tmpdir(), `slipway-${name}-git-`));
  let user: GitUser | undefined;
  let sshd: Sshd | undefined;
  const close = async () => {
    await sshd?.stop();
    user?.remove();
    lab.destroy();
    rmSync(root, { recursive: true, force: true });
  };
  try {
    chmodSync(root, 0o755);
    user = createGitUser(root);
    const gitUser = user;
    const urlOf = (repo: string) => `ssh://${gitUser.name}@${LAB.allowed}:22${repo}`;
    const repos = makeRepos(root, config, urlOf(path.join(root, "srv", "lib.git")), user);
    const authorizedKeys = path.join(root, "authorized_keys");
    writeFileSync(authorizedKeys, "");
    sshd = await startSshd(lab.services, LAB.allowed, root, user, authorizedKeys);
    return { lab, user, repos, authorizedKeys, urlOf, close };
  } catch (err) {
    await close();
    throw err;
  }
}
