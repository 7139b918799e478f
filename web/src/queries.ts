import { useQuery } from "@tanstack/react-query";
import { get } from "./api";
import { isLive } from "./components/Status";
import type { Build, Connection, DeployKey, Org, OrgInfo, OrgMember, Project, ScmProviderInfo, Workspace, WorkspaceDetail, WorkspacePort, WorkspaceState, WorkspaceTerminal } from "./types";

// Each resource has one query key and one fetch, shared by the pages that show it.

export const useProjects = () => useQuery({ queryKey: ["projects"], queryFn: async () => (await get<{ projects: Project[] }>("/projects")).projects });

export const useOrgs = () => useQuery({ queryKey: ["orgs"], queryFn: async () => (await get<{ organizations: Org[] }>("/orgs")).organizations });

export const useOrg = (id: string) => useQuery({ queryKey: ["org", id], queryFn: () => get<OrgInfo>(`/orgs/${id}`) });

/** An organization's members with their roles (emails only for owners and admins, and oneself). */
export const useOrgMembers = (orgId: string) => useQuery({ queryKey: ["org-members", orgId], queryFn: async () => (await get<{ members: OrgMember[] }>(`/orgs/${orgId}/members`)).members });

export const useProject = (id: string) => useQuery({ queryKey: ["project", id], queryFn: () => get<Project>(`/projects/${id}`) });

/** The public half of a project's deploy key (the private half never leaves the server). */
export const useDeployKey = (projectId: string) => useQuery({ queryKey: ["deploy-key", projectId], queryFn: () => get<DeployKey>(`/projects/${projectId}/deploy-key`) });

/** The git hosts this server can connect to. */
export const useScmProviders = () => useQuery({ queryKey: ["scm-providers"], queryFn: async () => (await get<{ providers: ScmProviderInfo[] }>("/scm/providers")).providers });

/** A git host's name as people know it ("GitHub"), or its API name while the list is loading. */
export const labelOf = (providers: ScmProviderInfo[] | undefined, name: string) => providers?.find((p) => p.name === name)?.label ?? name;

/** The caller's connected git host accounts. */
export const useConnections = () => useQuery({ queryKey: ["connections"], queryFn: async () => (await get<{ connections: Connection[] }>("/me/connections")).connections });

export interface BuildFilter {
  branch?: string;
  status?: string;
  before?: number;
  limit?: number;
}

/** The query of a project's builds, newest first; asked again every few seconds while one of them is live. */
export const buildsQuery = (projectId: string, filter: BuildFilter = {}) => ({
  queryKey: ["builds", projectId, filter],
  queryFn: async () => {
    const q = new URLSearchParams(Object.entries(filter).flatMap(([k, v]) => (v === undefined || v === "" ? [] : [[k, String(v)]])));
    return (await get<{ builds: Build[] }>(`/projects/${projectId}/builds${q.size ? `?${q}` : ""}`)).builds;
  },
  refetchInterval: (query: { state: { data?: Build[] } }) => (query.state.data?.some((b) => isLive(b.status)) ? 3_000 : false),
});

export const useBuilds = (projectId: string, filter: BuildFilter = {}) => useQuery(buildsQuery(projectId, filter));

/** One build with its jobs and steps, followed every 2 s until it has ended. */
export const useBuild = (id: string) =>
  useQuery({
    queryKey: ["build", id],
    queryFn: () => get<Build>(`/builds/${id}`),
    refetchInterval: (query) => (!query.state.data || isLive(query.state.data.status) || query.state.data.jobs.some((j) => isLive(j.status)) ? 2_000 : false),
  });

/** States a workspace rests in until someone acts. */
export const isResting = (state: WorkspaceState) => state === "stopped" || state === "failed";

/** My workspaces, newest first; asked again while one of them is on its way somewhere, and now and then for their idle times. */
export const useWorkspaces = () =>
  useQuery({
    queryKey: ["workspaces"],
    queryFn: async () => (await get<{ workspaces: Workspace[] }>("/workspaces")).workspaces,
    refetchInterval: (query) => (query.state.data?.some((w) => !isResting(w.state) && w.state !== "running") ? 2_000 : 30_000),
  });

/** One workspace with its transitions; its state arrives live through useWorkspaceEvents, its tasks are asked for every few seconds while it runs. */
export const useWorkspace = (id: string) =>
  useQuery({
    queryKey: ["workspace", id],
    queryFn: () => get<WorkspaceDetail>(`/workspaces/${id}`),
    refetchInterval: (query) => (query.state.data?.state === "running" ? 5_000 : false),
  });

/** The terminals of a running workspace. */
export const useTerminals = (id: string, running: boolean) =>
  useQuery({ queryKey: ["terminals", id], queryFn: async () => (await get<{ terminals: WorkspaceTerminal[] }>(`/workspaces/${id}/terminals`)).terminals, enabled: running, refetchInterval: running ? 5_000 : false });

/** The ports of a running workspace: something may start listening at any time. */
export const usePorts = (id: string, running: boolean) =>
  useQuery({ queryKey: ["ports", id], queryFn: async () => (await get<{ ports: WorkspacePort[] }>(`/workspaces/${id}/ports`)).ports, enabled: running, refetchInterval: running ? 3_000 : false });
