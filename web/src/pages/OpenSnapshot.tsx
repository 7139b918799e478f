import { useMutation, useQuery } from "@tanstack/react-query";
import { Link, useNavigate, useParams } from "react-router";
import { api, get } from "../api";
import { ErrorNote, LoadError } from "../components/ErrorNote";
import { Time } from "../components/Time";
import { useProjects } from "../queries";
import type { Snapshot, Workspace } from "../types";

/** A snapshot's link: what it is a copy of, and opening it as a workspace of my own. */
export default function OpenSnapshot() {
  const { snapshotId = "" } = useParams();
  const navigate = useNavigate();
  const snapshot = useQuery({ queryKey: ["snapshot", snapshotId], queryFn: () => get<Snapshot>(`/snapshots/${snapshotId}`) });
  const project = useProjects().data?.find((p) => p.id === snapshot.data?.projectId);
  const open = useMutation({ mutationFn: () => api<Workspace>("POST", `/snapshots/${snapshotId}/open`), onSuccess: (ws) => navigate(`/workspaces/${ws.id}`) });
  if (snapshot.error) return <LoadError error={snapshot.error} what="snapshot" />;
  if (!snapshot.data) return <p role="status">Loading the snapshot…</p>;
  return (
    <section className="narrow">
      <h1>Open the snapshot “{snapshot.data.name}”</h1>
      <p>
        A copy of a workspace of {project ? <Link to={`/projects/${project.id}`}>{project.name}</Link> : "a project"}, taken <Time at={snapshot.data.createdAt} />. Opening it makes a new workspace of your own, starting from its files.
      </p>
      <ErrorNote error={open.error} />
      <button type="button" disabled={open.isPending} onClick={() => open.mutate()} autoFocus>
        {open.isPending ? "Opening…" : "Open as my workspace"}
      </button>
    </section>
  );
}
