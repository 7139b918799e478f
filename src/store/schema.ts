/**
 * The database as Kysely sees it, kept beside the migrations that make it.
 * Times are ISO-8601 text and flags are 0/1 integers so that one set of migrations serves
 * SQLite and PostgreSQL alike.
 */
export interface UsersTable {
  id: string;
  email: string;
  name: string;
  password_hash: string;
  is_admin: number;
  email_verified: number;
  totp_secret: string | null;
  totp_pending: string | null;
  totp_last_counter: number | null;
  created_at: string;
}

export interface RecoveryCodesTable {
  user_id: string;
  code_hash: string;
  used_at: string | null;
}

export interface SessionsTable {
  id_hash: string;
  user_id: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  ip: string | null;
}

export interface ApiTokensTable {
  id: string;
  user_id: string;
  name: string;
  token_hash: string;
  scopes: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
}

export interface EmailTokensTable {
  token_hash: string;
  user_id: string;
  purpose: string;
  expires_at: string;
  used_at: string | null;
}

export interface AuthThrottleTable {
  key: string;
  failures: number;
  window_start: string;
  locked_until: string | null;
}

export interface OrganizationsTable {
  id: string;
  name: string;
  require_2fa: number;
  created_at: string;
  /** 0 when the organisation forbids sharing running workspaces. */
  workspace_sharing: number;
  /** The organisation's own limits for its workspaces (null: the operator's), never above the operator's. */
  workspace_idle_minutes: number | null;
  workspace_max_hours: number | null;
}

export interface MembershipsTable {
  org_id: string;
  user_id: string;
  role: string;
  created_at: string;
}

export interface InvitationsTable {
  token_hash: string;
  org_id: string;
  email: string;
  role: string;
  invited_by: string;
  expires_at: string;
  accepted_at: string | null;
}

export interface ProjectsTable {
  id: string;
  org_id: string;
  name: string;
  repository_url: string | null;
  created_at: string;
  /** JSON array of allow entries, or null. */
  egress_allowlist: string | null;
  /** "run" or "approve": see migration 012. */
  fork_builds: string;
  /** 1 when a person set or confirmed the pinned host keys; 0 while they are trusted on first use only. */
  known_hosts_confirmed: number;
  /** The git host's pinned keys, known_hosts text, or null (the next clone pins what it sees). */
  known_hosts: string | null;
  /** Bumped to revoke every status badge link: see migration 016. */
  badge_generation: number;
}

export interface ProjectAssignmentsTable {
  project_id: string;
  user_id: string;
}

export interface DataKeysTable {
  owner_kind: string;
  owner_id: string;
  wrapped: string;
  kek_id: string;
  created_at: string;
}

export interface SecretsTable {
  owner_kind: string;
  owner_id: string;
  name: string;
  value: string;
  updated_at: string;
}

export interface AuditLogTable {
  seq: number;
  at: string;
  actor_id: string | null;
  actor: string;
  org_id: string | null;
  action: string;
  target: string | null;
  ip: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

export interface DeployKeysTable {
  project_id: string;
  public_key: string;
  fingerprint: string;
  /** Sealed (secret box, owner = the project, field "deploy_key"). */
  private_key: string;
  created_at: string;
}

export interface EnvFileKeysTable {
  project_id: string;
  /** Base64 of the raw X25519 public key: public to the project's members. */
  public_key: string;
  /** Sealed (secret box, owner = the project, field "env_file_key"). */
  private_key: string;
  created_at: string;
}

export interface WebhookSecretsTable {
  project_id: string;
  /** Sealed (secret box, owner = the project, field "webhook_secret"). */
  secret: string;
  created_at: string;
}

export interface ScmConnectionsTable {
  id: string;
  user_id: string;
  /** A WebhookProvider name: github, gitlab, bitbucket, gitea. */
  provider: string;
  provider_user_id: string;
  login: string;
  name: string | null;
  email: string | null;
  avatar_url: string | null;
  /** JSON array of the scopes the provider granted. */
  scopes: string;
  /** Sealed (secret box, owner = the user, field "scm_access_token"). */
  access_token: string;
  /** Sealed (secret box, owner = the user, field "scm_refresh_token"). */
  refresh_token: string | null;
  expires_at: string | null;
  /** Why the last call with this token failed for good (e.g. revoked), for the user to see; null when fine. */
  problem: string | null;
  created_at: string;
  updated_at: string;
}

export interface ScmSignInsTable {
  /** SHA-256 of the OAuth `state`: the state itself travels in the browser only. */
  state_hash: string;
  /** The account being connected; null for a sign-in with the provider. */
  user_id: string | null;
  provider: string;
  /** Sealed (secret box, system owner, field "scm_code_verifier"). */
  code_verifier: string;
  created_at: string;
}

export interface RepositoryLinksTable {
  project_id: string;
  provider: string;
  /** The provider's name of the repository, e.g. `acme/app` or `group/sub/app`. */
  repo: string;
  provider_repo_id: string;
  /** The connection whose token installed the key and hook and posts statuses; null once disconnected. */
  connection_id: string | null;
  /** Provider ids of what Slipway installed; null when it is gone. */
  deploy_key_id: string | null;
  webhook_id: string | null;
  /** The last provider failure on this link (e.g. a revoked token), for the project page; null when fine. */
  problem: string | null;
  linked_at: string;
}

export interface RepositoryPollsTable {
  project_id: string;
  interval_s: number;
  /** JSON object ref → commit of the heads and tags the last poll saw; null before the first. */
  refs: string | null;
  next_at: string;
  runner_id: string | null;
  lease_expires_at: string | null;
  polled_at: string | null;
  /** Why the last poll failed, in the runner's words; null when it worked. */
  problem: string | null;
}

export interface WebhookDeliveriesTable {
  project_id: string;
  delivery_id: string;
  received_at: string;
}

export interface BuildsTable {
  id: string;
  project_id: string;
  number: number;
  branch: string | null;
  tag: string | null;
  commit_sha: string | null;
  message: string;
  author_name: string;
  author_email: string;
  pr_number: number | null;
  trigger: string;
  status: string;
  reason: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export interface JobsTable {
  id: string;
  build_id: string;
  name: string;
  status: string;
  runner_id: string | null;
  lease_expires_at: string | null;
  attempts: number;
  cancel_requested: number;
  reason: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  log_bytes: number;
}

/** A manual step a job stopped at (approved_* null until an owner or admin approves it). */
export interface BuildApprovalsTable {
  build_id: string;
  step_id: string;
  step_name: string;
  waiting_job_id: string;
  requested_at: string;
  approved_by: string | null;
  approved_at: string | null;
  resume_job_id: string | null;
}

/** A step of a job as its runner reported it (see builds/job-steps.ts). */
export interface JobStepsTable {
  job_id: string;
  step_id: string;
  name: string;
  status: string;
  sandbox: number;
  log_offset: number;
  exit_code: number | null;
  reason: string | null;
  started_at: string | null;
  finished_at: string | null;
}

export interface LogChunksTable {
  job_id: string;
  offset: number;
  size: number;
  /** Sealed (secret box, owner = the build's project). */
  data: string;
}

export interface RunnersTable {
  id: string;
  name: string;
  token_hash: string;
  created_at: string;
  last_seen_at: string | null;
}

export interface WorkspacesTable {
  id: string;
  owner_id: string;
  project_id: string;
  repository_url: string;
  ref: string | null;
  commit_sha: string | null;
  state: string;
  reason: string | null;
  /** The WorkspaceConfig it was opened with (JSON), once read from the clone. */
  config: string | null;
  /** The config's findings (JSON list of problems). */
  problems: string;
  initialized: number;
  /** The storage name of its encrypted /workspace archive, once stopped. */
  archive: string | null;
  archive_bytes: number | null;
  created_at: string;
  started_at: string | null;
  stopped_at: string | null;
  last_activity_at: string;
  /** 1 while its owner shares it: others may ask to join. */
  shared: number;
  /** 1 once its owner extended the current run (once per start). */
  extended: number;
  /** 1 when its owner opted into pushing with the project's deploy key. */
  push_access: number;
}

export interface WorkspaceTransitionsTable {
  workspace_id: string;
  seq: number;
  state: string;
  reason: string | null;
  at: string;
}

export interface WorkspacePortsTable {
  workspace_id: string;
  port: number;
  visibility: string;
}

export interface UserSshKeysTable {
  id: string;
  user_id: string;
  name: string;
  /** `type base64`, as the user gave it, without its comment. */
  public_key: string;
  fingerprint: string;
  created_at: string;
  last_used_at: string | null;
}

export interface WorkspaceSnapshotsTable {
  id: string;
  workspace_id: string;
  name: string;
  /** The storage name of its sealed archive. */
  object: string;
  bytes: number;
  created_at: string;
}

export interface WorkspaceGuestsTable {
  workspace_id: string;
  user_id: string;
  /** pending, approved or denied. */
  state: string;
  requested_at: string;
  decided_at: string | null;
}

export interface WorkspaceVariablesTable {
  user_id: string;
  name: string;
  /** owner/repo, an owner with any repository, or any repository: those whose workspaces get it. */
  scope: string;
  /** Sealed with the user's data key. */
  value: string;
  updated_at: string;
}

export interface Database {
  users: UsersTable;
  recovery_codes: RecoveryCodesTable;
  sessions: SessionsTable;
  api_tokens: ApiTokensTable;
  email_tokens: EmailTokensTable;
  auth_throttle: AuthThrottleTable;
  organizations: OrganizationsTable;
  memberships: MembershipsTable;
  invitations: InvitationsTable;
  projects: ProjectsTable;
  project_assignments: ProjectAssignmentsTable;
  data_keys: DataKeysTable;
  secrets: SecretsTable;
  audit_log: AuditLogTable;
  builds: BuildsTable;
  jobs: JobsTable;
  build_approvals: BuildApprovalsTable;
  job_steps: JobStepsTable;
  log_chunks: LogChunksTable;
  runners: RunnersTable;
  deploy_keys: DeployKeysTable;
  env_file_keys: EnvFileKeysTable;
  webhook_secrets: WebhookSecretsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  scm_connections: ScmConnectionsTable;
  scm_sign_ins: ScmSignInsTable;
  repository_links: RepositoryLinksTable;
  repository_polls: RepositoryPollsTable;
  workspaces: WorkspacesTable;
  workspace_transitions: WorkspaceTransitionsTable;
  workspace_ports: WorkspacePortsTable;
  user_ssh_keys: UserSshKeysTable;
  workspace_snapshots: WorkspaceSnapshotsTable;
  workspace_guests: WorkspaceGuestsTable;
  workspace_variables: WorkspaceVariablesTable;
}
