import { z } from "zod";
import { roleSchema, scopeSchema } from "../auth/permissions.js";

/** Response shapes. Serialisation drops any field not named here, so nothing extra reaches a client. */
export const userSchema = z.object({
  id: z.string(),
  email: z.string(),
  name: z.string(),
  isAdmin: z.boolean(),
  twoFactor: z.boolean(),
  createdAt: z.string(),
});

export const orgSchema = z.object({ id: z.string(), name: z.string(), require2fa: z.boolean(), createdAt: z.string() });
export const orgWithRoleSchema = orgSchema.extend({ role: roleSchema });

export const projectSchema = z.object({
  id: z.string(),
  organization: z.string(),
  name: z.string(),
  repositoryUrl: z.string().nullable(),
  createdAt: z.string(),
});

export const tokenSchema = z.object({
  id: z.string(),
  name: z.string(),
  scopes: z.array(scopeSchema),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
});

export const secretNameListSchema = z.object({ secrets: z.array(z.object({ name: z.string(), updatedAt: z.string() })) });

export const messageSchema = z.object({ message: z.string() });

export const idParam = (name: string) => z.object({ [name]: z.string().min(1).max(64) });

/** A PATCH body must change something: an empty one would be an UPDATE with nothing to set. */
export const someField = [(body: object) => Object.keys(body).length > 0, "send at least one field to change"] as const;
