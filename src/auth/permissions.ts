import { z } from "zod";

export const roles = ["owner", "admin", "member", "contractor", "support"] as const;
export type Role = (typeof roles)[number];
export const roleSchema = z.enum(roles);

export const scopes = [
  "projects:read",
  "projects:write",
  "secrets:read",
  "secrets:write",
  "orgs:read",
  "orgs:write",
  "audit:read",
  "builds:read",
  "builds:write",
  "workspaces:read",
  "workspaces:write",
] as const;
export type Scope = (typeof scopes)[number];
export const scopeSchema = z.enum(scopes);

const everyone: readonly Role[] = roles;
const managers: readonly Role[] = ["owner", "admin"];
const builders: readonly Role[] = ["owner", "admin", "member", "contractor"];

/**
 * The one table that decides who may do what. Every route names one of these actions (or is
 * public, or acts on the caller's own account). Contractors reach a project only when they are
 * assigned to it; support sees records but no content (secrets, logs, code) without a consent
 * grant.
 */
export const permissionTable = {
  "org.read": { scope: "orgs:read", roles: everyone },
  "org.update": { scope: "orgs:write", roles: managers },
  "org.members.read": { scope: "orgs:read", roles: ["owner", "admin", "member", "support"] },
  "org.members.manage": { scope: "orgs:write", roles: managers },
  "org.audit.read": { scope: "audit:read", roles: managers },
  "project.list": { scope: "projects:read", roles: everyone },
  "project.create": { scope: "projects:write", roles: ["owner", "admin", "member"] },
  "project.read": { scope: "projects:read", roles: everyone },
  "project.update": { scope: "projects:write", roles: managers },
  "project.delete": { scope: "projects:write", roles: managers },
  "project.assignments.manage": { scope: "projects:write", roles: managers },
  "project.secrets.read": { scope: "secrets:read", roles: builders },
  "project.secrets.write": { scope: "secrets:write", roles: builders },
  // Reveals the values of an encrypted env file: for those who manage the project, audited.
  "project.env_files.decrypt": { scope: "secrets:write", roles: managers },
  // Logs are content: support does not see them without a consent grant.
  "project.builds.read": { scope: "builds:read", roles: builders },
  "project.builds.write": { scope: "builds:write", roles: builders },
  // A manual step is a gate (a deploy, say): those who merely build may not open it.
  "project.builds.approve": { scope: "builds:write", roles: managers },
  // A workspace holds the repository's code: who may build may open one (P18).
  "project.workspaces.open": { scope: "workspaces:write", roles: builders },
  // Pushing from a workspace uses the project's deploy key: for those who manage the project.
  "project.workspaces.push": { scope: "workspaces:write", roles: managers },
} as const satisfies Record<string, { scope: Scope; roles: readonly Role[] }>;

export type Action = keyof typeof permissionTable;
export type OrgAction = Extract<Action, `org.${string}` | "project.create" | "project.list">;
export type ProjectAction = Exclude<Extract<Action, `project.${string}`>, "project.create" | "project.list">;

/** Who the caller is and how they proved it. Tokens carry scopes; sessions may do all the user may. */
export interface Principal {
  userId: string;
  email: string;
  isAdmin: boolean;
  twoFactor: boolean;
  via: "session" | "token";
  scopes: ReadonlySet<Scope> | "all";
  sessionHash?: string;
  tokenId?: string;
}

/** The caller of an operation, as concerns see it: who, and from where (for the audit log). */
export interface RequestContext {
  principal: Principal;
  ip: string | null;
}

/** How a route is reached: the HTTP layer enforces this before any handler runs. */
export type Access =
  | { kind: "public" }
  | { kind: "account"; scope?: Scope; sessionOnly?: boolean }
  | { kind: "org"; action: OrgAction }
  | { kind: "project"; action: ProjectAction }
  | { kind: "build"; action: ProjectAction }
  /**
   * A workspace: its owner alone, while they may still open workspaces of its project (P18);
   * `ownerOnly` needs the ownership alone (one can always clean up after oneself); `guests` lets
   * in the guests its owner approved while sharing it (P18).
   */
  | { kind: "workspace"; scope: Scope; ownerOnly?: boolean; guests?: boolean }
  /** A port of a running workspace through the proxy: anyone when it is public, else as `workspace` (read). */
  | { kind: "workspacePort" }
  /** The instance itself (runners): instance administrators, signed in with a browser session. */
  | { kind: "admin" }
  | { kind: "runner" };

export function hasScope(p: Principal, scope: Scope): boolean {
  return p.scopes === "all" || p.scopes.has(scope);
}

export function roleAllows(role: Role, action: Action): boolean {
  return (permissionTable[action].roles as readonly Role[]).includes(role);
}
