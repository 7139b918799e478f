import { readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { cidrSchema } from "../sandbox/network.js";

const bool = z
  .union([z.boolean(), z.enum(["true", "false", "1", "0", "yes", "no"])])
  .transform((v) => v === true || v === "true" || v === "1" || v === "yes");

const positiveInt = z.coerce.number().int().positive();

/** A list from a JSON array or a comma-separated environment variable. */
const commaList = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (typeof v === "string" ? v.split(",").map((s) => s.trim()).filter(Boolean) : v), z.array(item));

/** Every server setting, validated once at start. Environment variables win over the file. */
export const settingsSchema = z
  .object({
    host: z.string().min(1).default("127.0.0.1"),
    port: z.coerce.number().int().min(0).max(65535).default(8080),
    dataDir: z.string().min(1).default("./slipway-data"),
    databaseUrl: z.string().optional(),
    masterKey: z.string().optional(),
    publicUrl: z.string().url().optional(),
    tlsCertFile: z.string().optional(),
    tlsKeyFile: z.string().optional(),
    signup: bool.default(false),
    smtpUrl: z.string().url().optional(),
    mailFrom: z.string().default("Slipway <slipway@localhost>"),
    sessionIdleMinutes: positiveInt.default(8 * 60),
    sessionMaxDays: positiveInt.default(30),
    securityContact: z.string().regex(/^(mailto:|https:\/\/|tel:)\S+$/, "a security contact is a mailto:, https:// or tel: URI (RFC 9116)").optional(),
    securityPgpKeyUrl: z.string().url().optional(),
    securityPolicyUrl: z.string().url().optional(),
    securityTxtExpires: z.string().datetime().optional(),
    trustProxy: bool.default(false),
    embeddedRunner: bool.default(true),
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    /** The addresses (IPs or CIDRs) builds leave from, published in /api/v1/meta for allowlisting on the other side. */
    egressAddresses: commaList(cidrSchema).default([]),
    /** Where the embedded runner keeps unpacked images; default <dataDir>/images. */
    imageCacheDir: z.string().min(1).optional(),
    /** A folder of OCI layouts (<name>/oci-layout) used instead of pulling images of those names. */
    imageLayoutsDir: z.string().min(1).optional(),
    /** CA certificates (*.crt) that image registries' certificates may chain to, beside the system's. */
    imageRegistryCertDir: z.string().min(1).optional(),
    /** Entries of a project's image cache (services with `cached: true`) older than this are removed. */
    imageCacheMaxDays: positiveInt.default(90),
    /** Where stopped workspaces' encrypted archives are kept; default <dataDir>/workspaces. */
    workspaceArchiveDir: z.string().min(1).optional(),
    /** S3-compatible object storage for them instead: https://<key id>:<secret>@<host>/<bucket>[/<prefix>]?region=<region>. */
    workspaceS3Url: z.url({ protocol: /^https?$/ }).optional(),
    /** `outbound`: workspaces reach the internet (never this machine or its networks); `none`: loopback only. */
    workspaceNetwork: z.enum(["outbound", "none"]).default("outbound"),
    /** The SSH gateway to workspaces: on by default, on its own port (0 picks a free one). */
    sshGateway: bool.default(true),
    /** 2222 unless set; a server on a free port (`--port 0`) takes a free one for SSH too. */
    sshPort: z.coerce.number().int().min(0).max(65535).optional(),
    /** The address it listens on; the server's host when unset. */
    sshHost: z.string().min(1).optional(),
    /** A workspace nobody used for this long is stopped (its work archived). */
    workspaceIdleMinutes: positiveInt.default(30),
    /** Snapshots one workspace may keep. */
    workspaceMaxSnapshots: positiveInt.default(5),
    /** A workspace is stopped this long after it started, used or not. */
    workspaceMaxHours: positiveInt.default(24),
    /** Output of one job beyond this many bytes is not stored; the log says so at its end. */
    maxJobLogBytes: positiveInt.default(64 * 1024 ** 2),
    /** OAuth app of GitHub (github.com, or a GitHub Enterprise Server by its https:// address): sign-in, linking, webhooks, statuses. Unset = not offered. */
    githubClientId: z.string().min(1).optional(),
    githubClientSecret: z.string().min(1).optional(),
    githubUrl: z.url({ protocol: /^https$/ }).optional(),
    /** A CA certificate (PEM file) that server's certificate chains to, beside the system's. */
    githubCaFile: z.string().min(1).optional(),
    /** OAuth app of GitLab (gitlab.com, or a self-managed instance by its https:// address): sign-in, linking, webhooks, statuses. Unset = not offered. */
    gitlabClientId: z.string().min(1).optional(),
    gitlabClientSecret: z.string().min(1).optional(),
    gitlabUrl: z.url({ protocol: /^https$/ }).optional(),
    /** A CA certificate (PEM file) that server's certificate chains to, beside the system's. */
    gitlabCaFile: z.string().min(1).optional(),
    /** OAuth app of Bitbucket Cloud: sign-in, linking, webhooks, statuses. Unset = not offered. */
    bitbucketClientId: z.string().min(1).optional(),
    bitbucketClientSecret: z.string().min(1).optional(),
    bitbucketUrl: z.url({ protocol: /^https$/ }).optional(),
    /** A CA certificate (PEM file) that server's certificate chains to, beside the system's. */
    bitbucketCaFile: z.string().min(1).optional(),
    /** OAuth app of Gitea or Forgejo (its https:// address is required): sign-in, linking, webhooks, statuses. Unset = not offered. */
    giteaClientId: z.string().min(1).optional(),
    giteaClientSecret: z.string().min(1).optional(),
    giteaUrl: z.url({ protocol: /^https$/ }).optional(),
    /** A CA certificate (PEM file) that server's certificate chains to, beside the system's. */
    giteaCaFile: z.string().min(1).optional(),
    /** Bitbucket's REST API root, only where it is not https://api.bitbucket.org/2.0 (a test double, say). */
    bitbucketApiUrl: z.url({ protocol: /^https$/ }).optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    // Gitea and Forgejo are always self-hosted: there is no default address to fall back on.
    if (s.giteaClientId && !s.giteaUrl) ctx.addIssue({ code: "custom", path: ["giteaUrl"], message: "the address of the Gitea/Forgejo server (https://…) is needed with its OAuth app" });
  });

export type Settings = z.output<typeof settingsSchema>;
export type SettingsInput = z.input<typeof settingsSchema>;

const envNames: Record<keyof Settings, string> = {
  host: "SLIPWAY_HOST",
  port: "SLIPWAY_PORT",
  dataDir: "SLIPWAY_DATA_DIR",
  databaseUrl: "SLIPWAY_DATABASE_URL",
  masterKey: "SLIPWAY_MASTER_KEY",
  publicUrl: "SLIPWAY_PUBLIC_URL",
  tlsCertFile: "SLIPWAY_TLS_CERT",
  tlsKeyFile: "SLIPWAY_TLS_KEY",
  signup: "SLIPWAY_SIGNUP",
  smtpUrl: "SLIPWAY_SMTP_URL",
  mailFrom: "SLIPWAY_MAIL_FROM",
  sessionIdleMinutes: "SLIPWAY_SESSION_IDLE_MINUTES",
  sessionMaxDays: "SLIPWAY_SESSION_MAX_DAYS",
  securityContact: "SLIPWAY_SECURITY_CONTACT",
  securityPgpKeyUrl: "SLIPWAY_SECURITY_PGP_KEY_URL",
  securityPolicyUrl: "SLIPWAY_SECURITY_POLICY_URL",
  securityTxtExpires: "SLIPWAY_SECURITY_TXT_EXPIRES",
  trustProxy: "SLIPWAY_TRUST_PROXY",
  embeddedRunner: "SLIPWAY_EMBEDDED_RUNNER",
  logLevel: "SLIPWAY_LOG_LEVEL",
  egressAddresses: "SLIPWAY_EGRESS_ADDRESSES",
  imageCacheDir: "SLIPWAY_IMAGE_CACHE",
  imageLayoutsDir: "SLIPWAY_IMAGE_LAYOUTS",
  imageRegistryCertDir: "SLIPWAY_REGISTRY_CERTS",
  imageCacheMaxDays: "SLIPWAY_IMAGE_CACHE_MAX_DAYS",
  workspaceArchiveDir: "SLIPWAY_WORKSPACE_ARCHIVE_DIR",
  workspaceNetwork: "SLIPWAY_WORKSPACE_NETWORK",
  sshGateway: "SLIPWAY_SSH_GATEWAY",
  sshPort: "SLIPWAY_SSH_PORT",
  sshHost: "SLIPWAY_SSH_HOST",
  workspaceS3Url: "SLIPWAY_WORKSPACE_S3_URL",
  workspaceIdleMinutes: "SLIPWAY_WORKSPACE_IDLE_MINUTES",
  workspaceMaxHours: "SLIPWAY_WORKSPACE_MAX_HOURS",
  workspaceMaxSnapshots: "SLIPWAY_WORKSPACE_MAX_SNAPSHOTS",
  maxJobLogBytes: "SLIPWAY_MAX_JOB_LOG_BYTES",
  githubClientId: "SLIPWAY_GITHUB_CLIENT_ID",
  githubClientSecret: "SLIPWAY_GITHUB_CLIENT_SECRET",
  githubUrl: "SLIPWAY_GITHUB_URL",
  githubCaFile: "SLIPWAY_GITHUB_CA_FILE",
  gitlabClientId: "SLIPWAY_GITLAB_CLIENT_ID",
  gitlabClientSecret: "SLIPWAY_GITLAB_CLIENT_SECRET",
  gitlabUrl: "SLIPWAY_GITLAB_URL",
  gitlabCaFile: "SLIPWAY_GITLAB_CA_FILE",
  bitbucketClientId: "SLIPWAY_BITBUCKET_CLIENT_ID",
  bitbucketClientSecret: "SLIPWAY_BITBUCKET_CLIENT_SECRET",
  bitbucketUrl: "SLIPWAY_BITBUCKET_URL",
  bitbucketCaFile: "SLIPWAY_BITBUCKET_CA_FILE",
  giteaClientId: "SLIPWAY_GITEA_CLIENT_ID",
  giteaClientSecret: "SLIPWAY_GITEA_CLIENT_SECRET",
  giteaUrl: "SLIPWAY_GITEA_URL",
  giteaCaFile: "SLIPWAY_GITEA_CA_FILE",
  bitbucketApiUrl: "SLIPWAY_BITBUCKET_API_URL",
};

export class SettingsError extends Error {}

/**
 * Settings come from (lowest first) the JSON file named by SLIPWAY_CONFIG, the environment,
 * then command-line flags. An unknown key or a bad value stops the server with its name.
 */
export function loadSettings(
  flags: SettingsInput = {},
  env: NodeJS.ProcessEnv = process.env,
): Settings {
  const merged: Record<string, unknown> = {};
  const file = env.SLIPWAY_CONFIG;
  if (file) {
    try {
      Object.assign(merged, JSON.parse(readFileSync(file, "utf8")));
    } catch (err) {
      throw new SettingsError(`cannot read SLIPWAY_CONFIG ${file}: ${(err as Error).message}`);
    }
  }
  for (const [key, name] of Object.entries(envNames)) {
    const value = env[name];
    if (value !== undefined && value !== "") merged[key] = value;
  }
  for (const [key, value] of Object.entries(flags)) if (value !== undefined) merged[key] = value;
  const parsed = settingsSchema.safeParse(merged);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const key = String(i.path[0] ?? "");
      const source = key in envNames ? `${key} (${envNames[key as keyof Settings]})` : key;
      return `  ${source}: ${i.message}`;
    });
    throw new SettingsError(`invalid settings:\n${lines.join("\n")}`);
  }
  return { ...parsed.data, dataDir: path.resolve(parsed.data.dataDir) };
}

export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
