import { useQueries } from "@tanstack/react-query";
import { Link } from "react-router";
import { BuildTable, refOf } from "../components/BuildRow";
import { ErrorNote } from "../components/ErrorNote";
import { Status } from "../components/Status";
import { buildsQuery, useProjects } from "../queries";

/** My projects with the last build of each branch, and the newest builds across them. */
export default function Dashboard() {
  const projects = useProjects();
  const recent = useQueries({ queries: (projects.data ?? []).map((p) => buildsQuery(p.id, { limit: 20 })) });

  if (projects.isPending) return <p role="status">Loading your projects…</p>;
  if (projects.error) return <ErrorNote error={projects.error} />;
  if (projects.data.length === 0) {
    return (
      <section className="empty">
        <h1>Projects</h1>
        <p>Nothing is built here yet. A project builds a repository on every push, in a fresh sandbox.</p>
        <Link className="button" to="/projects/new">
          Create your first project
        </Link>
      </section>
    );
  }
  const newest = recent
    .flatMap((q, i) => (q.data ?? []).map((build) => ({ build, project: projects.data[i]!.name })))
    .sort((a, b) => b.build.createdAt.localeCompare(a.build.createdAt))
    .slice(0, 10);
  return (
    <>
      <div className="heading">
        <h1>Projects</h1>
        <Link className="button" to="/projects/new">
          New project
        </Link>
      </div>
      <ul className="cards">
        {projects.data.map((p, i) => {
          const builds = recent[i]?.data ?? [];
          // Newest first: read oldest first so that each ref keeps its newest build.
          const lastPerRef = [...new Map([...builds].reverse().map((b) => [refOf(b), b] as const)).values()].reverse();
          return (
            <li key={p.id} className="card">
              <h2>
                <Link to={`/projects/${p.id}`}>{p.name}</Link>
              </h2>
              <p className="muted mono">{p.repositoryUrl ?? "no repository yet"}</p>
              <ErrorNote error={recent[i]?.error} />
              {recent[i]?.isPending ? (
                <p className="muted" role="status">
                  Loading builds…
                </p>
              ) : recent[i]?.error ? null : lastPerRef.length === 0 ? (
                <p className="muted">No builds yet.</p>
              ) : (
                <ul className="branches" aria-label={`Last build per branch of ${p.name}`}>
                  {lastPerRef.slice(0, 5).map((b) => (
                    <li key={b.id}>
                      <Link to={`/builds/${b.id}`}>{refOf(b)}</Link> <Status status={b.status} />
                    </li>
                  ))}
                </ul>
              )}
            </li>
          );
        })}
      </ul>
      <h2>Recent builds</h2>
      {newest.length ? <BuildTable builds={newest} showProject /> : <p className="muted">No builds yet: push to a linked repository, or run one from a project.</p>}
    </>
  );
}
