import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useNavigate } from "react-router";
import { api, get } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { Field, formValues } from "../components/Field";
import { DeployKeyView } from "../components/DeployKeyView";
import { labelOf, useConnections, useOrgs, useScmProviders } from "../queries";
import type { Project, RepositoryPage } from "../types";

/** A project from a connected account's repository, or from any git URL (then: install its deploy key). */
export default function NewProject() {
  const orgs = useOrgs();
  const connections = useConnections();
  const providers = useScmProviders();
  const [created, setCreated] = useState<Project | null>(null);
  const [source, setSource] = useState<string>("git");
  const client = useQueryClient();
  const navigate = useNavigate();
  const listChanged = () => void client.invalidateQueries({ queryKey: ["projects"] });

  if (created) return <InstallDeployKey project={created} />;
  const usable = (connections.data ?? []).filter((c) => !c.problem);
  return (
    <section className="narrow">
      <h1>New project</h1>
      <fieldset className="tabs">
        <legend>Where the code is</legend>
        {usable.map((c) => (
          <label key={c.provider}>
            <input type="radio" name="source" value={c.provider} checked={source === c.provider} onChange={() => setSource(c.provider)} /> {labelOf(providers.data, c.provider)} ({c.login})
          </label>
        ))}
        <label>
          <input type="radio" name="source" value="git" checked={source === "git"} onChange={() => setSource("git")} /> Any git URL
        </label>
      </fieldset>
      {(orgs.data?.length ?? 0) > 1 && (
        <div className="field">
          <label htmlFor="org">Organization</label>
          <select id="org" name="organization" form="new-project">
            {orgs.data!.map((o) => (
              <option key={o.id} value={o.id}>
                {o.name}
              </option>
            ))}
          </select>
        </div>
      )}
      {source === "git" ? (
        <FromUrl
          onCreated={(p) => {
            listChanged();
            setCreated(p);
          }}
        />
      ) : (
        // A linked repository has its deploy key installed already: straight to the project.
        <FromProvider
          provider={source}
          onLinked={(p) => {
            listChanged();
            navigate(`/projects/${p.id}`);
          }}
        />
      )}
    </section>
  );
}

function FromUrl({ onCreated }: { onCreated: (p: Project) => void }) {
  const create = useMutation({
    mutationFn: (v: Record<string, string>) => api<Project>("POST", "/projects", { name: v.name, repositoryUrl: v.repositoryUrl, ...(v.organization && { organization: v.organization }) }),
    onSuccess: onCreated,
  });
  return (
    <form
      id="new-project"
      onSubmit={(e) => {
        e.preventDefault();
        create.mutate(formValues(e.currentTarget));
      }}
    >
      <Field label="Project name" name="name" required pattern="[A-Za-z0-9][A-Za-z0-9._\-]*" maxLength={100} hint="Letters, digits, '.', '_' and '-'." />
      <Field label="Repository URL" name="repositoryUrl" required placeholder="ssh://git@git.example.com/team/app.git" hint="An ssh://, git@host:path or https:// URL, without a password in it." />
      <ErrorNote error={create.error} />
      <button type="submit" disabled={create.isPending}>
        {create.isPending ? "Creating…" : "Create project"}
      </button>
    </form>
  );
}

/** Picks a repository the connected account sees (a page at a time, filtered here), then links it. */
function FromProvider({ provider, onLinked }: { provider: string; onLinked: (p: Project) => void }) {
  const [page, setPage] = useState(1);
  const [filter, setFilter] = useState("");
  const repos = useQuery({ queryKey: ["repositories", provider, page], queryFn: () => get<RepositoryPage>(`/me/connections/${provider}/repositories?page=${page}`) });
  const link = useMutation({
    mutationFn: async ({ repo, organization }: { repo: string; organization?: string }) => {
      const project = await api<Project>("POST", "/projects", { name: projectNameOf(repo), ...(organization && { organization }) });
      try {
        await api("PUT", `/projects/${project.id}/repository-link`, { provider, repo });
      } catch (err) {
        // A project that could not be linked is of no use, and its name would block the next try.
        await api("DELETE", `/projects/${project.id}`).catch(() => undefined);
        throw err;
      }
      return project;
    },
    onSuccess: onLinked,
  });
  const shown = (repos.data?.repos ?? []).filter((r) => r.fullName.toLowerCase().includes(filter.toLowerCase()));
  return (
    <div id="new-project">
      <Field label="Search this page" type="search" value={filter} onChange={(e) => setFilter(e.target.value)} />
      {repos.isPending && <p role="status">Loading repositories…</p>}
      <ErrorNote error={repos.error ?? link.error} />
      <ul className="repos">
        {shown.map((r) => (
          <li key={r.id}>
            <span className="mono">{r.fullName}</span> {r.private && <span className="muted">private</span>}
            <button
              type="button"
              disabled={link.isPending}
              onClick={() => link.mutate({ repo: r.fullName, organization: (document.getElementById("org") as HTMLSelectElement | null)?.value })}
            >
              Build this
            </button>
          </li>
        ))}
      </ul>
      <nav className="pager" aria-label="Repository pages">
        <button type="button" className="secondary" disabled={page === 1} onClick={() => setPage((p) => p - 1)}>
          Previous
        </button>
        <span>Page {page}</span>
        <button type="button" className="secondary" disabled={!repos.data?.nextPage} onClick={() => setPage((p) => p + 1)}>
          Next
        </button>
      </nav>
    </div>
  );
}

/** A project name from a repository's: its last part, in the characters a project name may have. */
const projectNameOf = (repo: string) => repo.split("/").at(-1)!.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 100) || "project";

/** After creating a project from a URL: the deploy key to add at the git server, and how the host key is trusted. */
function InstallDeployKey({ project }: { project: Project }) {
  return (
    <section className="narrow">
      <h1>{project.name} is ready</h1>
      <p>
        Add this <strong>read-only deploy key</strong> at your git server for <span className="mono">{project.repositoryUrl}</span>; builds clone with it.
      </p>
      <DeployKeyView projectId={project.id} />
      <p>
        The first clone trusts the git host's key it sees and shows its fingerprint in the project's settings: compare it with the one your git server's operator gives
        you, then confirm it there.
      </p>
      <Link className="button" to={`/projects/${project.id}`}>
        Go to the project
      </Link>
    </section>
  );
}
