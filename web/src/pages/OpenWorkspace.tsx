import { useMutation } from "@tanstack/react-query";
import { useId } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { api } from "../api";
import { repositoryKey } from "../../../src/workspaces/repository-names";
import { ErrorNote } from "../components/ErrorNote";
import { Field, submitting } from "../components/Field";
import { useProjects } from "../queries";
import type { Workspace } from "../types";

/**
 * Open a workspace of one of my projects' repositories. A link `/#<repository-url>` lands here
 * with the repository chosen; opening still takes a click, so that no other site's link starts
 * a workspace in my name.
 */
export default function OpenWorkspace() {
  const [params] = useSearchParams();
  const wanted = params.get("repository");
  const projects = useProjects();
  const navigate = useNavigate();
  const selectId = useId();
  const open = useMutation({ mutationFn: (body: { repository: string; ref?: string; pushAccess?: boolean }) => api<Workspace>("POST", "/workspaces", body), onSuccess: (ws) => navigate(`/workspaces/${ws.id}`) });

  if (projects.isPending) return <p role="status">Loading your projects…</p>;
  if (projects.error) return <ErrorNote error={projects.error} />;
  const withRepository = projects.data.filter((p) => p.repositoryUrl !== null);
  const choices = wanted ? withRepository.filter((p) => repositoryKey(p.repositoryUrl!) === repositoryKey(wanted)) : withRepository;
  return (
    <section className="narrow">
      <p className="crumbs">
        <Link to="/workspaces">Workspaces</Link> / open
      </p>
      <h1>Open a workspace</h1>
      {choices.length === 0 ? (
        <p role="alert">
          {wanted ? <>No project of yours has the repository <code>{wanted}</code>.</> : "None of your projects has a repository yet."} A workspace is cloned with a project's deploy key:{" "}
          <Link to="/projects/new">create a project</Link> with the repository first, or ask to be added to the organization that has it.
        </p>
      ) : (
        <form className="stack" onSubmit={submitting((v) => open.mutate({ repository: v.project!, ...(v.ref ? { ref: v.ref } : {}), ...(v.push ? { pushAccess: true } : {}) }))}>
          <div className="field">
            <label htmlFor={selectId}>Project</label>
            <select id={selectId} name="project" defaultValue={choices[0]!.id}>
              {choices.map((p) => (
                <option key={p.id} value={p.id}>
                  {p.name} — {p.repositoryUrl}
                </option>
              ))}
            </select>
          </div>
          <Field label="Branch or tag" name="ref" defaultValue={params.get("ref") ?? ""} placeholder="the default branch" hint="Left empty: the repository's default branch." />
          <label className="check">
            <input type="checkbox" name="push" /> Let git push to the repository from this workspace{" "}
            <span className="muted">(with the project's deploy key, kept in the workspace while it runs; for those who manage the project)</span>
          </label>
          <ErrorNote error={open.error} />
          <div className="actions">
            <button type="submit" disabled={open.isPending} autoFocus>
              {open.isPending ? "Opening…" : "Open workspace"}
            </button>
          </div>
        </form>
      )}
    </section>
  );
}
