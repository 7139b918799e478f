import { AppError, notFound } from "../errors.js";
import { hasScope, permissionTable, roleAllows, type Access, type Action, type Principal, type Role } from "./permissions.js";

/** What the access decision needs to know about organisations and projects; supplied by those concerns. */
export interface AccessFacts {
  roleIn(orgId: string, userId: string): Promise<Role | undefined>;
  requires2fa(orgId: string): Promise<boolean>;
  projectOrg(projectId: string): Promise<string | undefined>;
  isAssigned(projectId: string, userId: string): Promise<boolean>;
  buildProject(buildId: string): Promise<string | undefined>;
  workspace(workspaceId: string): Promise<{ ownerId: string; projectId: string } | undefined>;
  /** Who may reach a port of a running workspace; undefined when the workspace does not run. */
  portVisibility(workspaceId: string, port: number): Promise<"public" | "private" | undefined>;
  isGuest(workspaceId: string, userId: string): Promise<boolean>;
}

export const unauthenticated = () => new AppError(401, "unauthenticated", "sign in (POST /api/v1/session) or send an API token as 'Authorization: Bearer <token>'");

/**
 * The single access decision for every route. Outsiders get 404 so that ids of other
 * organisations' resources reveal nothing; members lacking the role get 403.
 */
export class Authorizer {
  constructor(private readonly facts: AccessFacts) {}

  async check(principal: Principal | undefined, access: Access, params: Record<string, string | undefined>): Promise<void> {
    // Runner routes authenticate the runner token in the HTTP layer; users never reach them.
    if (access.kind === "public" || access.kind === "runner") return;
    if (access.kind === "workspacePort") {
      const workspaceId = requireParam(params, "workspaceId");
      const visibility = await this.facts.portVisibility(workspaceId, Number(requireParam(params, "port")));
      if (!visibility) throw new AppError(404, "not_found", "no such running workspace; start it, then open its port again");
      if (visibility === "public") return;
      return this.check(principal, { kind: "workspace", scope: "workspaces:read", guests: true }, params);
    }
    if (!principal) throw unauthenticated();
    switch (access.kind) {
      case "account":
        if (access.sessionOnly && principal.via !== "session") throw sessionRequired();
        if (access.scope && !hasScope(principal, access.scope)) throw insufficientScope(access.scope);
        return;
      case "admin":
        // No token scope grants instance administration (it mints runner tokens): only the admin's own session does.
        if (principal.via !== "session") throw sessionRequired();
        if (!principal.isAdmin) throw new AppError(403, "forbidden", "only an instance administrator may do this; ask one, or make one with `slipway admin create-user --admin`");
        return;
      case "org":
        return this.orgAction(principal, access.action, requireParam(params, "orgId"));
      case "project":
        return this.projectAction(principal, access.action, requireParam(params, "projectId"));
      case "build": {
        const projectId = await this.facts.buildProject(requireParam(params, "buildId"));
        if (!projectId) throw notFound("build");
        return this.projectAction(principal, access.action, projectId);
      }
      case "workspace": {
        const workspaceId = requireParam(params, "workspaceId");
        const ws = await this.facts.workspace(workspaceId);
        const guest = ws && ws.ownerId !== principal.userId && access.guests === true && (await this.facts.isGuest(workspaceId, principal.userId));
        if (!ws || (ws.ownerId !== principal.userId && !guest)) throw notFound("workspace");
        if (!hasScope(principal, access.scope)) throw insufficientScope(access.scope);
        if (guest) return;
        if (!access.ownerOnly) await this.projectAction(principal, "project.workspaces.open", ws.projectId);
        return;
      }
    }
  }

  async orgAction(principal: Principal, action: Action, orgId: string): Promise<void> {
    const role = await this.facts.roleIn(orgId, principal.userId);
    if (!role) throw notFound("organization");
    await this.decide(principal, action, orgId, role);
  }

  async projectAction(principal: Principal, action: Action, projectId: string): Promise<void> {
    const orgId = await this.facts.projectOrg(projectId);
    const role = orgId && (await this.facts.roleIn(orgId, principal.userId));
    if (!orgId || !role || (role === "contractor" && !(await this.facts.isAssigned(projectId, principal.userId)))) throw notFound("project");
    await this.decide(principal, action, orgId, role);
  }

  private async decide(principal: Principal, action: Action, orgId: string, role: Role): Promise<void> {
    const rule = permissionTable[action];
    if (!hasScope(principal, rule.scope)) throw insufficientScope(rule.scope);
    if (!principal.twoFactor && (await this.facts.requires2fa(orgId))) {
      throw new AppError(403, "2fa_required", "this organization requires two-factor authentication: turn it on in your account (POST /api/v1/me/2fa), then try again");
    }
    if (!roleAllows(role, action)) throw new AppError(403, "forbidden", `your role (${role}) does not allow ${action}; ask an owner or admin of the organization`);
  }
}

const sessionRequired = () => new AppError(403, "session_required", "this action needs a signed-in browser session, not an API token");

function insufficientScope(scope: string): AppError {
  return new AppError(403, "insufficient_scope", `this API token lacks the ${scope} scope; create a token that has it`);
}

function requireParam(params: Record<string, string | undefined>, name: string): string {
  const v = params[name];
  if (!v) throw new AppError(500, "route_misconfigured", `route lacks :${name}`);
  return v;
}
