// The API's shapes, derived from the server's own zod schemas (type-only: nothing of the server
// reaches the bundle), so the page and the API cannot drift apart unnoticed.
import type { z } from "zod";
import type { auditActions, auditChainSchema, auditEntrySchema } from "../../src/audit/audit-log.js";
import type { buildSchema } from "../../src/builds/builds.js";
import type { runnerSchema } from "../../src/builds/runners.js";
import type { orgSchema } from "../../src/orgs/organizations.js";
import type { badgeLinkSchema, deployKeySchema, orgMemberSchema, orgWithRoleSchema, projectSchema, secretNameListSchema, sessionResponseSchema, tokenSchema, userSchema, webhookSecretSchema } from "../../src/http/schemas.js";
import type { connectionSchema, providerInfoSchema } from "../../src/scm/connections.js";
import type { repositoryPageSchema } from "../../src/scm/provider.js";
import type { leftoverSchema, repositoryLinkSchema } from "../../src/scm/repository-links.js";

export type User = z.infer<typeof userSchema>;
export type Session = z.infer<typeof sessionResponseSchema>;
export type Project = z.infer<typeof projectSchema>;
export type Org = z.infer<typeof orgWithRoleSchema>;
export type Build = z.infer<typeof buildSchema>;
export type Job = Build["jobs"][number];
export type Step = Job["steps"][number];
export type BuildStatus = Build["status"];
export type DeployKey = z.infer<typeof deployKeySchema>;
export type Connection = z.infer<typeof connectionSchema>;
export type ScmProviderInfo = z.infer<typeof providerInfoSchema>;
export type ApiToken = z.infer<typeof tokenSchema>;
export type Scope = ApiToken["scopes"][number];
export type RepositoryPage = z.infer<typeof repositoryPageSchema>;
export type OrgMember = z.infer<typeof orgMemberSchema>;
export type SecretName = z.infer<typeof secretNameListSchema>["secrets"][number];
export type WebhookSecret = z.infer<typeof webhookSecretSchema>;
export type RepositoryLink = z.infer<typeof repositoryLinkSchema>;
export type Leftover = z.infer<typeof leftoverSchema>;
export type OrgInfo = z.infer<typeof orgSchema>;
export type Role = Org["role"];
export type AuditEntry = z.infer<typeof auditEntrySchema>;
export type AuditAction = (typeof auditActions)[number];
export type AuditChain = z.infer<typeof auditChainSchema>;
export type Runner = z.infer<typeof runnerSchema>;
export type BadgeLink = z.infer<typeof badgeLinkSchema>;
