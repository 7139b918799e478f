import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router";
import { api } from "../api";
import { BuildTable } from "../components/BuildRow";
import { ErrorNote, LoadError } from "../components/ErrorNote";
import { Field, formValues } from "../components/Field";
import { useBuilds, useProject } from "../queries";
import type { Build } from "../types";

const STATUSES = ["queued", "running", "waiting-for-approval", "success", "failed", "error", "canceled", "skipped"];
const PAGE = 25;

/** A project's builds, filtered by branch and status a page at a time, and a form to run one. */
export default function Project() {
  const { projectId = "" } = useParams();
  // Another project starts on its first page.
  return <ProjectPage key={projectId} projectId={projectId} />;
}

function ProjectPage({ projectId }: { projectId: string }) {
  const project = useProject(projectId);
  const [params, setParams] = useSearchParams();
  const filter = { branch: params.get("branch") ?? "", status: params.get("status") ?? "" };
  // Pages go back in time: each starts before the oldest build of the one before.
  const [before, setBefore] = useState<number[]>([]);
  const builds = useBuilds(projectId, { ...filter, before: before.at(-1), limit: PAGE });
  const setFilter = (name: string, value: string) => {
    setBefore([]);
    setParams((p) => {
      if (value) p.set(name, value);
      else p.delete(name);
      return p;
    });
  };

  if (project.error) return <LoadError error={project.error} what="project" />;
  return (
    <>
      <div className="heading">
        <h1>{project.data?.name ?? "Project"}</h1>
        {project.data?.repositoryUrl && <span className="muted mono">{project.data.repositoryUrl}</span>}
        <Link className="actions" to={`/projects/${projectId}/settings`}>
          Settings
        </Link>
      </div>
      {project.data?.polling?.problem && (
        <p className="error" role="alert">
          The last poll of the repository failed: {project.data.polling.problem}
        </p>
      )}
      <RunBuild projectId={projectId} />
      <h2>Builds</h2>
      <div className="filters">
        <Field label="Branch" type="search" defaultValue={filter.branch} onBlur={(e) => setFilter("branch", e.target.value.trim())} onKeyDown={(e) => e.key === "Enter" && setFilter("branch", e.currentTarget.value.trim())} />
        <div className="field">
          <label htmlFor="status-filter">Status</label>
          <select id="status-filter" value={filter.status} onChange={(e) => setFilter("status", e.target.value)}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
      </div>
      <ErrorNote error={builds.error} />
      {builds.isPending ? (
        <p role="status">Loading builds…</p>
      ) : builds.data?.length ? (
        <BuildTable builds={builds.data.map((build) => ({ build }))} />
      ) : (
        <p className="muted">{before.length ? "No older builds." : filter.branch || filter.status ? "No build matches." : "No builds yet: push to the repository, or run one above."}</p>
      )}
      <nav className="pager" aria-label="Build pages">
        <button type="button" className="secondary" disabled={!before.length} onClick={() => setBefore((b) => b.slice(0, -1))}>
          Newer
        </button>
        <button type="button" className="secondary" disabled={(builds.data?.length ?? 0) < PAGE} onClick={() => setBefore((b) => [...b, (builds.data as Build[]).at(-1)!.number])}>
          Older
        </button>
      </nav>
    </>
  );
}

function RunBuild({ projectId }: { projectId: string }) {
  const client = useQueryClient();
  const navigate = useNavigate();
  const run = useMutation({
    mutationFn: (v: Record<string, string>) => api<Build>("POST", `/projects/${projectId}/builds`, { branch: v.branch }),
    onSuccess: (build) => {
      void client.invalidateQueries({ queryKey: ["builds", projectId] });
      navigate(`/builds/${build.id}`);
    },
  });
  return (
    <form
      className="inline"
      onSubmit={(e) => {
        e.preventDefault();
        run.mutate(formValues(e.currentTarget));
      }}
    >
      <Field label="Branch to build" name="branch" required defaultValue="main" />
      <button type="submit" disabled={run.isPending}>
        {run.isPending ? "Starting…" : "Run build"}
      </button>
      <ErrorNote error={run.error} />
    </form>
  );
}
