import { pollingSchema } from "../scm/repository-polls.js";
import { z } from "zod";
import { roleSchema, scopeSchema } from "../auth/permissions.js";
import { userSchema } from "../auth/users.js";
import { orgSchema } from "../orgs/organizations.js";

/** Response shapes. Serialisation drops any field not named here, so nothing extra reaches a client. */
export { userSchema };
export { tokenSchema } from "../auth/api-tokens.js";
export { orgSchema };
export const orgWithRoleSchema = orgSchema.extend({ role: roleSchema });
/** A member as the organization's members see them: emails only for owners and admins (and oneself). */
export const orgMemberSchema = z.object({ userId: z.string(), name: z.string(), email: z.string().optional(), role: roleSchema, since: z.string() });

export const projectSchema = z.object({
  id: z.string(),
  organization: z.string(),
  name: z.string(),
  repositoryUrl: z.string().nullable(),
  createdAt: z.string(),
  egressAllowlist: z.array(z.string()).nullable(),
  /** The git host's pinned keys, known_hosts text: public keys, shown to every member. */
  knownHosts: z.string().nullable(),
  forkBuilds: z.enum(["run", "approve"]),
  /** The pinned keys' fingerprints as `host type SHA256:…`, to compare with what the git host's operator gives. */
  hostKeyFingerprints: z.array(z.string()),
  /** false while the pinned keys were only trusted on first use; confirm them with `confirmHostKeys`. */
  knownHostsConfirmed: z.boolean(),
  /** Set when the repository is polled for new commits (P08), with how the last poll went. */
  polling: pollingSchema.nullable(),
});

export const sessionResponseSchema = z.object({ user: userSchema, csrfToken: z.string() });

export const meSchema = z.object({ user: userSchema, organizations: z.array(orgWithRoleSchema), recoveryCodesLeft: z.number() });
export const twoFactorSetupSchema = z.object({ otpauthUri: z.string(), secret: z.string(), qrSvg: z.string() });
export const recoveryCodesSchema = z.object({ recoveryCodes: z.array(z.string()) });
export const newTokenSchema = z.object({ name: z.string().trim().min(1).max(100), scopes: z.array(scopeSchema).min(1).max(20), expiresAt: z.string().datetime().optional() }).strict();
export const createdTokenSchema = z.object({ id: z.string(), token: z.string() });
export const metaSchema = z.object({ version: z.string(), signup: z.boolean(), egressAddresses: z.array(z.string()), sshPort: z.number().nullable().describe("The SSH gateway's port: `ssh <workspace id>@<this host> -p <sshPort>`") });

export const secretNameListSchema = z.object({ secrets: z.array(z.object({ name: z.string(), updatedAt: z.string() })) });

export const deployKeySchema = z.object({ publicKey: z.string(), fingerprint: z.string(), createdAt: z.string() });
export const webhookSecretSchema = z.object({ secret: z.string(), url: z.string() });

export const messageSchema = z.object({ message: z.string() });

export const badgeLinkSchema = z.object({
  imageUrl: z.string().describe("The badge's address, token included: anyone with it sees the build status (and nothing else)."),
  markdown: z.string().describe("Ready to paste into a README, linking to the project's builds."),
});

export const projectParams = z.object({ projectId: z.string().min(1).max(64) });
export const workspaceParams = z.object({ workspaceId: z.string().min(1).max(64) });

/** A branch or tag name as a path or query part (git's own rules are checked where a ref is built). */
export const refPart = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[^\0-\x20\x7f~^:?*[\\]+$/, "a branch or tag name has no spaces, control characters or ~^:?*[\\");

/** A PATCH body must change something: an empty one would be an UPDATE with nothing to set. */
export const someField = [(body: object) => Object.keys(body).length > 0, "send at least one field to change"] as const;
