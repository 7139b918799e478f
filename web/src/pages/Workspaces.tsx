import { Link } from "react-router";
import { repositoryName } from "../../../src/workspaces/repository-names";
import { ErrorNote } from "../components/ErrorNote";
import { Status } from "../components/Status";
import { TableHead } from "../components/TableHead";
import { duration, Time } from "../components/Time";
import { useProjects, useWorkspaces } from "../queries";

/** My workspaces: what each is of, its state, how long it has been idle. */
export default function Workspaces() {
  const workspaces = useWorkspaces();
  const projects = useProjects();
  if (workspaces.isPending) return <p role="status">Loading your workspaces…</p>;
  if (workspaces.error) return <ErrorNote error={workspaces.error} />;
  const open = (
    <Link className="button" to="/workspaces/new">
      Open a workspace
    </Link>
  );
  if (workspaces.data.length === 0) {
    return (
      <section className="empty">
        <h1>Workspaces</h1>
        <p>A workspace is a project's repository, ready to code in: terminals in the browser, SSH from your editor, its web servers at a link. It keeps /workspace while stopped, encrypted.</p>
        {open}
      </section>
    );
  }
  const projectName = (id: string) => projects.data?.find((p) => p.id === id)?.name ?? "";
  return (
    <>
      <div className="heading">
        <h1>Workspaces</h1>
        {open}
      </div>
      <table className="builds">
        <TableHead columns={["Repository", "Project", "Branch", "State", "Idle", "Opened"]} />
        <tbody>
          {workspaces.data.map((w) => (
            <tr key={w.id}>
              <td>
                <Link to={`/workspaces/${w.id}`}>{repositoryName(w.repositoryUrl) || w.repositoryUrl}</Link>
              </td>
              <td>{projectName(w.projectId)}</td>
              <td className="mono">{w.ref ?? "default"}</td>
              <td>
                <Status status={w.state} />
              </td>
              <td>{w.state === "running" ? duration(w.lastActivityAt, null) : w.stoppedAt ? <>stopped <Time at={w.stoppedAt} /></> : "–"}</td>
              <td>
                <Time at={w.createdAt} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
