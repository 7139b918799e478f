// The API's shapes, derived from the server's own zod schemas (type-only: nothing of the server
// reaches the bundle), so the page and the API cannot drift apart unnoticed.
import type { z } from "zod";
import type { buildSchema } from "../../src/builds/builds.js";
import type { deployKeySchema, orgWithRoleSchema, projectSchema, sessionResponseSchema, userSchema } from "../../src/http/schemas.js";
import type { connectionSchema } from "../../src/scm/connections.js";
import type { repositoryPageSchema } from "../../src/scm/provider.js";

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
export type RepositoryPage = z.infer<typeof repositoryPageSchema>;
