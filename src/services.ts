import { mkdirSync, statSync } from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import { AuditLog } from "./audit/audit-log.js";
import { ApiTokens } from "./auth/api-tokens.js";
import { SshKeys } from "./auth/ssh-keys.js";
import { Authorizer } from "./auth/authorize.js";
import { Sessions } from "./auth/sessions.js";
import { SignInThrottle } from "./auth/sign-in-throttle.js";
import { SignIn } from "./auth/sign-in.js";
import { TwoFactor } from "./auth/two-factor.js";
import { Users } from "./auth/users.js";
import type { Settings } from "./config/settings.js";
import { loadKeyring } from "./crypto/master-key.js";
import { SecretBox } from "./crypto/secret-box.js";
import { createMailer, type Mailer } from "./mail/mailer.js";
import { Organizations } from "./orgs/organizations.js";
import type { PushHandler } from "./builds/events.js";
import { Badges } from "./projects/badges.js";
import { DeployKeys } from "./projects/deploy-keys.js";
import { Projects } from "./projects/projects.js";
import { Webhooks } from "./projects/webhooks.js";
import { Builds } from "./builds/builds.js";
import { refName } from "./builds/events.js";
import { shouldSkip } from "./pipeline/refs.js";
import { JobLogs } from "./builds/job-logs.js";
import { Runners } from "./builds/runners.js";
import { EnvFileKeys } from "./secrets/env-file-keys.js";
import { SecretVariables } from "./secrets/secret-variables.js";
import { openStore, type Store } from "./store/database.js";
import { CommitStatuses } from "./scm/commit-statuses.js";
import { ScmConnections } from "./scm/connections.js";
import { ScmRegistry } from "./scm/registry.js";
import { RepositoryLinks } from "./scm/repository-links.js";
import { RepositoryPolls } from "./scm/repository-polls.js";
import { ImageBuilder } from "./images/image-builder.js";
import { inMemoryImageStore, serverImageStore, type ImageStore } from "./images/image-store.js";
import { dockerfilePath } from "./pipeline/image-builds.js";
import { BwrapBackend } from "./sandbox/bwrap-backend.js";
import { LocalArchiveStorage } from "./workspaces/archive-storage.js";
import { WorkspaceHost } from "./workspaces/workspace-host.js";
import { S3ArchiveStorage, parseS3Url } from "./workspaces/s3-archive-storage.js";
import { Sharing } from "./workspaces/sharing.js";
import { AppError } from "./errors.js";
import { Snapshots } from "./workspaces/snapshots.js";
import { WorkspaceVariables } from "./workspaces/variables.js";
import { Workspaces } from "./workspaces/workspaces.js";

export interface Services {
  settings: Settings;
  store: Store;
  box: SecretBox;
  audit: AuditLog;
  mailer: Mailer;
  users: Users;
  sessions: Sessions;
  tokens: ApiTokens;
  sshKeys: SshKeys;
  twoFactor: TwoFactor;
  signIn: SignIn;
  throttle: SignInThrottle;
  orgs: Organizations;
  projects: Projects;
  deployKeys: DeployKeys;
  badges: Badges;
  envFileKeys: EnvFileKeys;
  webhooks: Webhooks;
  /** What a verified push does; builds plug in here (replace onPush), until then nothing is started. */
  hooks: { onPush: PushHandler };
  secrets: SecretVariables;
  authorizer: Authorizer;
  builds: Builds;
  logs: JobLogs;
  runners: Runners;
  scm: { registry: ScmRegistry; connections: ScmConnections; links: RepositoryLinks; statuses: CommitStatuses; polls: RepositoryPolls };
  /** Images for the embedded runner and for workspaces. */
  images: ImageStore;
  workspaces: Workspaces;
  /** Runs workspaces on this machine (sandboxes made on first use). */
  workspaceHost: WorkspaceHost;
  snapshots: Snapshots;
  workspaceVariables: WorkspaceVariables;
  sharing: Sharing;
  /** P18: whether the user may (still) open workspaces of the project. */
  mayOpenWorkspaces(userId: string, projectId: string): Promise<boolean>;
  masterKeyCreated: boolean;
  /** The URL users reach the server at, for links in mail; known only once it listens. */
  publicUrl(): string;
  setPublicUrl(url: string): void;
  /** The SSH gateway's port, once it listens (null without one). */
  sshPort(): number | null;
  setSshPort(port: number | null): void;
  close(): Promise<void>;
}

/** Wires every concern together; the one place that knows them all. */
export async function createServices(settings: Settings, log: Logger, opts: { settleRotation: boolean } = { settleRotation: true }): Promise<Services> {
  let url = settings.publicUrl ?? `http://${settings.host}:${settings.port}`;
  const publicUrl = () => url;
  let sshPort: number | null = null;
  mkdirSync(settings.dataDir, { recursive: true, mode: 0o700 });
  if (statSync(settings.dataDir).mode & 0o077) {
    log.warn({ dataDir: settings.dataDir }, `other users can open the data dir; run: chmod 700 ${settings.dataDir}`);
  }
  const { keyring, created } = loadKeyring(settings.dataDir, settings.masterKey);
  const store = await openStore(settings);
  try {
    const box = await SecretBox.open(store, keyring, opts);
    const audit = new AuditLog(store, await box.derivedKey("audit-log"));
    const mailer = createMailer({ smtpUrl: settings.smtpUrl, from: settings.mailFrom, dataDir: settings.dataDir, log });
    const users = new Users(store, audit, mailer, publicUrl);
    const sessions = new Sessions(store, { idleMinutes: settings.sessionIdleMinutes, maxDays: settings.sessionMaxDays });
    const twoFactor = new TwoFactor(store, box, audit);
    // Organisations tell projects when a contractor leaves; projects are made after them, hence the late binding.
    const throttle = new SignInThrottle(store);
    const orgs: Organizations = new Organizations(store, audit, (tx, orgId, userId) => projects.unassignAll(tx, orgId, userId));
    const secrets = new SecretVariables(store, box, audit);
    const deployKeys = new DeployKeys(store, box, audit);
    const webhooks = new Webhooks(store, box, audit);
    const projects: Projects = new Projects(store, box, audit, orgs, secrets, deployKeys, webhooks);
    const badges = new Badges(store, await box.derivedKey("badges"), audit);
    const logs = new JobLogs(store, box, settings.maxJobLogBytes);
    const builds = new Builds(store, logs, async (projectId) => {
      const p = await projects.find(store.db, projectId);
      return { repositoryUrl: p?.repositoryUrl ?? null, egressAllowlist: p?.egressAllowlist ?? null };
    }, audit);
    const registry = new ScmRegistry(settings, publicUrl);
    const connections = new ScmConnections(store, box, audit, registry, mailer, publicUrl);
    const links = new RepositoryLinks(store, audit, registry, connections, deployKeys, webhooks, (projectId, provider) => `${publicUrl()}/api/v1/hooks/${projectId}/${provider}`);
    const statuses = new CommitStatuses(builds, links, connections, (build) => `${publicUrl()}/builds/${build.id}`, log);
    builds.onChange((buildId) => statuses.changed(buildId));
    const polls = new RepositoryPolls(store, audit, async (projectId, ref, commit) => {
      const name = refName(ref);
      await builds.create(projectId, { ...(name.kind === "branch" ? { branch: name.name } : { tag: name.name }), commit, trigger: "poll" });
    });
    const authorizer = new Authorizer({
      buildProject: (buildId) => builds.projectOf(buildId),
      roleIn: (orgId, userId) => orgs.roleOf(store.db, orgId, userId),
      requires2fa: async (orgId) => (await orgs.get(orgId)).require2fa,
      projectOrg: async (projectId) => (await projects.find(store.db, projectId))?.orgId,
      isAssigned: (projectId, userId) => projects.isAssigned(store.db, projectId, userId),
      workspace: (workspaceId) => workspaces.ownership(workspaceId),
      portVisibility: (workspaceId, port) => workspaceHost.visibility(workspaceId, port),
      isGuest: (workspaceId, userId) => sharing.isGuest(workspaceId, userId),
    });
    const images = serverImageStore(settings);
    const workspaces = new Workspaces(store, box, audit);
    let backend: BwrapBackend | undefined;
    const sandboxes = () => (backend ??= new BwrapBackend({ onWarning: (m) => log.warn(m) }));
    const sharing = new Sharing(store, audit);
    const workspaceVariables = new WorkspaceVariables(store, box, audit);
    const archives = settings.workspaceS3Url ? new S3ArchiveStorage(parseS3Url(settings.workspaceS3Url)) : new LocalArchiveStorage(settings.workspaceArchiveDir ?? path.join(settings.dataDir, "workspaces"));
    const mayOpenWorkspaces = async (userId: string, projectId: string) => {
      // A user who no longer exists may open nothing; any other failure is the caller's to see.
      const user = await users.byId(store.db, userId).catch((err: unknown) => {
        if (err instanceof AppError && err.status === 404) return undefined;
        throw err;
      });
      if (!user) return false;
      const principal = { userId, email: user.email, isAdmin: user.isAdmin, twoFactor: user.twoFactor, via: "token", scopes: "all" } as const;
      return authorizer.projectAction(principal, "project.workspaces.open", projectId).then(
        () => true,
        () => false,
      );
    };
    const workspaceHost: WorkspaceHost = new WorkspaceHost(workspaces, {
      backend: sandboxes,
      images,
      storage: archives,
      // A workspace that stops is shared no more: guests need a new approval next time.
      stopped: (id) => sharing.end(id),
      network: { mode: settings.workspaceNetwork },
      limitsOf: async (ws) => {
        const orgId = (await projects.find(store.db, ws.projectId))?.orgId;
        const org = orgId ? await orgs.get(orgId) : undefined;
        const minutes = Math.min(settings.workspaceIdleMinutes, org?.workspaceIdleMinutes ?? Infinity);
        const hours = Math.min(settings.workspaceMaxHours, org?.workspaceMaxHours ?? Infinity);
        return { idleMs: minutes * 60_000, maxLifetimeMs: hours * 3_600_000 };
      },
      ownerMay: (ws) => mayOpenWorkspaces(ws.ownerId, ws.projectId),
      // The project's variables, then the owner's own for this repository (the most specific scope): theirs win.
      variables: async (ws) => {
        const project = Object.fromEntries(await secrets.reveal(store.db, { kind: "project", id: ws.projectId }));
        const own = await workspaceVariables.forRepository(ws.ownerId, ws.repositoryUrl);
        const env = { ...project, ...own };
        return { env, secrets: [...new Set([...Object.values(project), ...Object.values(own)])] };
      },
      // A workspace's image built from its Dockerfile, held in memory while it runs, through the
      // project's image cache: an unchanged Dockerfile and context give the image built before.
      build: async (ws, build, checkout, output) => {
        const memory = inMemoryImageStore();
        try {
          const key = await box.ownerKey(store.db, { kind: "project", id: ws.projectId }, "image-cache");
          const access = { key, project: ws.projectId, branch: ws.ref ?? "default", write: true, maxAgeMs: settings.imageCacheMaxDays * 86_400_000 };
          const spec = { dockerfile: dockerfilePath(build), context: build.context, args: build.args, ...(build.target !== undefined && { target: build.target }) };
          const built = await new ImageBuilder(sandboxes(), images).build(spec, { into: memory.store, checkout, output, network: { mode: settings.workspaceNetwork }, cache: { cache: images.projectCaches, access } });
          return { rootfs: built.rootfs, env: built.env, dispose: memory.dispose };
        } catch (err) {
          memory.dispose();
          throw err;
        }
      },
      access: (ws) => ({
        // P01: the project's deploy key, as a build's clone gets it; the host removes it after the clone.
        credentials: async () => ({ privateKey: (await deployKeys.revealDeployKey(ws.projectId)).privateKey, knownHosts: (await projects.get(ws.projectId)).knownHosts }),
        pinHostKeys: async (knownHosts) => void (await projects.pinFirstSeenHostKeys(ws.projectId, `workspace ${ws.id}`, knownHosts)),
      }),
      log,
    });
    sharing.onGuestsEnded((id, guests) => void workspaceHost.closeGuestTerminals(id, guests).catch((err: unknown) => log.warn({ err, workspace: id }, "closing a guest's terminals failed")));
    const snapshots = new Snapshots(store, workspaces, workspaceHost, archives, audit, settings.workspaceMaxSnapshots);
    return {
      settings,
      store,
      box,
      audit,
      mailer,
      users,
      sessions,
      tokens: new ApiTokens(store, audit),
      sshKeys: new SshKeys(store, audit),
      twoFactor,
      signIn: new SignIn(store, users, sessions, twoFactor, throttle, audit),
      throttle,
      orgs,
      projects,
      deployKeys,
      badges,
      envFileKeys: new EnvFileKeys(store, box, audit),
      webhooks,
      hooks: {
        // A push becomes a build of its branch or tag, unless its message asks to skip CI.
        onPush: async (projectId, event) => {
          if (shouldSkip(event.message ?? "")) return { buildId: null };
          const ref = refName(event.ref);
          const build = await builds.create(projectId, {
            ...(ref.kind === "branch" ? { branch: ref.name } : { tag: ref.name }),
            commit: event.commit,
            message: event.message,
            author: event.author,
            pullRequest: event.pullRequest,
            fromFork: event.fromFork,
            trigger: "webhook",
          });
          return { buildId: build.id };
        },
      },
      secrets,
      authorizer,
      builds,
      logs,
      runners: new Runners(store, audit),
      scm: { registry, connections, links, statuses, polls },
      images,
      workspaces,
      workspaceHost,
      mayOpenWorkspaces,
      snapshots,
      sharing,
      workspaceVariables,
      masterKeyCreated: created,
      publicUrl,
      sshPort: () => sshPort,
      setSshPort: (port) => {
        sshPort = port;
      },
      setPublicUrl: (u) => {
        url = settings.publicUrl ?? u;
      },
      close: async () => {
        // Posts still retrying against a failing provider are given a moment, not the whole backoff.
        await Promise.race([statuses.settled(), new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
        await workspaceHost.close();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}
