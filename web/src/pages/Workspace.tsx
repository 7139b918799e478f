import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { api, ApiError } from "../api";
import { repositoryName } from "../../../src/workspaces/repository-names";
import { ConfirmButton } from "../components/ConfirmButton";
import { CopyButton } from "../components/CopyButton";
import { ErrorNote } from "../components/ErrorNote";
import { Status } from "../components/Status";
import { duration, Time } from "../components/Time";
import { useMeta } from "../meta";
import { isResting, useProject, useWorkspace } from "../queries";
import { useSession } from "../session";
import type { WorkspaceDetail } from "../types";
import { Ports } from "../workspace/Ports";
import { Sharing } from "../workspace/Sharing";
import { Snapshots } from "../workspace/Snapshots";
import { Terminals } from "../workspace/Terminals";
import { useWorkspaceEvents } from "../workspace/useWorkspaceEvents";

/** A workspace: its state live, its terminals, ports, snapshots and sharing, and what can be done to it. */
export default function Workspace() {
  const { workspaceId = "" } = useParams();
  const ws = useWorkspace(workspaceId);
  useWorkspaceEvents(workspaceId, !!ws.data && !isResting(ws.data.state));
  if (ws.error instanceof ApiError && ws.error.status === 404) return <AskToJoin id={workspaceId} />;
  if (ws.error) return <ErrorNote error={ws.error} />;
  if (!ws.data) return <p role="status">Loading the workspace…</p>;
  return <WorkspacePage ws={ws.data} />;
}

function WorkspacePage({ ws }: { ws: WorkspaceDetail }) {
  const { user } = useSession();
  const project = useProject(ws.projectId);
  const mine = ws.ownerId === user?.id;
  const running = ws.state === "running";
  return (
    <div className="workspace">
      <p className="crumbs">
        <Link to="/workspaces">Workspaces</Link> / {ws.id}
      </p>
      <div className="heading">
        <h1>
          {repositoryName(ws.repositoryUrl) || ws.repositoryUrl} <Status status={ws.state} />
        </h1>
        {mine && <Actions ws={ws} />}
      </div>
      {!mine && <p className="notice">You are a guest in this workspace of another user, while they share it.</p>}
      <dl className="facts">
        <dt>Project</dt>
        <dd>{project.data ? <Link to={`/projects/${project.data.id}`}>{project.data.name}</Link> : "–"}</dd>
        <dt>Repository</dt>
        <dd className="mono">{ws.repositoryUrl}</dd>
        <dt>Branch</dt>
        <dd className="mono">{ws.ref ?? "default"}</dd>
        <dt>Commit</dt>
        <dd className="mono">{ws.commit?.slice(0, 12) ?? "not cloned yet"}</dd>
        <dt>{running ? "Running for" : "Stopped"}</dt>
        <dd>{running ? duration(ws.startedAt, null) : ws.stoppedAt ? <Time at={ws.stoppedAt} /> : "–"}</dd>
        {running && (
          <>
            <dt>Idle</dt>
            <dd>{duration(ws.lastActivityAt, null)}</dd>
          </>
        )}
      </dl>
      {ws.reason && <p className={ws.state === "failed" ? "error" : "muted"} role={ws.state === "failed" ? "alert" : undefined}>{ws.reason}</p>}
      {ws.problems.length > 0 && (
        <div className="problems">
          <h2>Workspace config</h2>
          <ul>
            {ws.problems.map((p, i) => (
              <li key={i} className={p.severity === "error" ? "error" : "muted"}>
                <span className="mono">
                  {p.file}:{p.line}:{p.col}
                </span>{" "}
                {p.message}{p.hint ? ` (${p.hint})` : ""}
              </li>
            ))}
          </ul>
        </div>
      )}
      {!running && !isResting(ws.state) && <Progress ws={ws} />}
      {running && <Terminals ws={ws} />}
      {running && <Ports ws={ws} mine={mine} />}
      {running && <SshHint id={ws.id} />}
      {mine && <Snapshots ws={ws} />}
      {mine && <Sharing ws={ws} />}
    </div>
  );
}

/** The way to a running workspace: each state it went through so far, with its time. */
function Progress({ ws }: { ws: WorkspaceDetail }) {
  return (
    <ol className="progress" aria-label="Progress" aria-live="polite">
      {ws.transitions.map((t, i) => (
        <li key={i}>
          <Status status={t.state} /> <Time at={t.at} />
        </li>
      ))}
    </ol>
  );
}

function SshHint({ id }: { id: string }) {
  const meta = useMeta();
  if (!meta.data?.sshPort) return null;
  const command = `ssh ${id}@${location.hostname} -p ${meta.data.sshPort}`;
  return (
    <p className="muted">
      From your editor or terminal, with an SSH key <Link to="/account">registered in your account</Link>: <code>{command}</code> <CopyButton text={command} label="Copy command" />
    </p>
  );
}

function Actions({ ws }: { ws: WorkspaceDetail }) {
  const client = useQueryClient();
  const navigate = useNavigate();
  const refresh = () => client.invalidateQueries({ queryKey: ["workspace", ws.id] });
  const act = useMutation({ mutationFn: (action: "stop" | "start" | "extend") => api("POST", `/workspaces/${ws.id}/${action}`), onSettled: refresh });
  const remove = useMutation({ mutationFn: () => api("DELETE", `/workspaces/${ws.id}`), onSuccess: () => navigate("/workspaces") });
  const stopping = act.isPending && act.variables === "stop";
  return (
    <div className="actions">
      {ws.state === "running" && !ws.extended && (
        <button type="button" className="secondary" disabled={act.isPending} onClick={() => act.mutate("extend")}>
          Let it run longer
        </button>
      )}
      {isResting(ws.state) ? (
        <button type="button" disabled={act.isPending} onClick={() => act.mutate("start")}>
          Start
        </button>
      ) : (
        <button type="button" disabled={act.isPending || ws.state === "stopping"} onClick={() => act.mutate("stop")}>
          {stopping || ws.state === "stopping" ? "Stopping…" : "Stop"}
        </button>
      )}
      <ConfirmButton label="Delete" question="Delete this workspace? Its files, archive and snapshots are gone for good." confirmLabel="Delete workspace" pending={remove.isPending} onConfirm={() => remove.mutate()} />
      <ErrorNote error={act.error ?? remove.error} />
    </div>
  );
}

type JoinState = "pending" | "approved" | "denied";

/** Someone else's workspace (or none): ask its owner to let me in, then wait for the answer. */
function AskToJoin({ id }: { id: string }) {
  const client = useQueryClient();
  const [answer, setAnswer] = useState<JoinState>();
  const join = useMutation({
    mutationFn: () => api<{ state: JoinState }>("POST", `/workspaces/${id}/join`),
    onSuccess: ({ state }) => setAnswer(state),
    // No longer shared (or running): nothing to wait for.
    onError: () => setAnswer(undefined),
  });
  const { mutate } = join;
  // Asking again is harmless and answers with the decision so far; once approved, the page opens the workspace.
  useEffect(() => {
    if (answer === "approved") void client.invalidateQueries({ queryKey: ["workspace", id] });
    if (answer !== "pending") return;
    const timer = setInterval(() => mutate(), 3_000);
    return () => clearInterval(timer);
  }, [answer, id, client, mutate]);
  const notShared = join.error instanceof ApiError && join.error.status === 404;
  return (
    <section className="narrow">
      <h1>Join a workspace</h1>
      {answer === "denied" ? (
        <p role="alert">Its owner did not let you in.</p>
      ) : answer ? (
        <p role="status">You asked to join. This page opens the workspace once its owner approves.</p>
      ) : (
        <>
          <p>This workspace is not yours, or does not exist. If its owner shares it with you, ask to join: they see your name and decide.</p>
          <button type="button" disabled={join.isPending} onClick={() => join.mutate()}>
            Ask to join
          </button>
          <ErrorNote error={notShared ? new Error("This workspace is not shared, or not running: ask its owner to share it, then try again.") : join.error} />
        </>
      )}
    </section>
  );
}
