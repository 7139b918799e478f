import { pollingSchema } from "../scm/repository-polls.js";
import { z } from "zod";
import { roleSchema } from "../auth/permissions.js";
import { userSchema } from "../auth/users.js";
import { orgSchema } from "../orgs/organizations.js";

/** Response shapes. Serialisation drops any field not named here, so nothing extra reaches a client. */
export { userSchema };
export { tokenSchema } from "../auth/api-tokens.js";
export { orgSchema };
export const orgWithRoleSchema = orgSchema.extend({ role: roleSchema });

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

export const secretNameListSchema = z.object({ secrets: z.array(z.object({ name: z.string(), updatedAt: z.string() })) });

export const deployKeySchema = z.object({ publicKey: z.string(), fingerprint: z.string(), createdAt: z.string() });
export const webhookSecretSchema = z.object({ secret: z.string(), url: z.string() });

export const messageSchema = z.object({ message: z.string() });

/** A PATCH body must change something: an empty one would be an UPDATE with nothing to set. */
export const someField = [(body: object) => Object.keys(body).length > 0, "send at least one field to change"] as const;
