import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { api } from "../api";
import { refOf } from "../components/BuildRow";
import { ErrorNote, LoadError } from "../components/ErrorNote";
import { isLive, Status } from "../components/Status";
import { duration, Time } from "../components/Time";
import { LogView } from "../log/LogView";
import { useJobLog } from "../log/useJobLog";
import { useBuild, useProject } from "../queries";
import type { Build as BuildType, Job } from "../types";

/** A build: what it is of, its jobs and their steps with live status, each job's log, and what can be done to it. */
export default function Build() {
  const { buildId = "" } = useParams();
  const build = useBuild(buildId);
  if (build.error) return <LoadError error={build.error} what="build" />;
  if (!build.data) return <p role="status">Loading the build…</p>;
  return <BuildPage build={build.data} />;
}

function BuildPage({ build }: { build: BuildType }) {
  const project = useProject(build.project);
  const [shownJob, setShownJob] = useState<string | null>(null);
  const job = build.jobs.find((j) => j.id === shownJob) ?? build.jobs[0];
  return (
    <>
      <p className="crumbs">
        <Link to={`/projects/${build.project}`}>{project.data?.name ?? "Project"}</Link> / build #{build.number}
      </p>
      <div className="heading">
        <h1>
          Build #{build.number} <Status status={build.status} />
        </h1>
        <Actions build={build} />
      </div>
      <dl className="facts">
        <dt>Ref</dt>
        <dd>{refOf(build)}</dd>
        <dt>Commit</dt>
        <dd className="mono">{build.commit ?? (isLive(build.status) ? "not checked out yet" : "–")}</dd>
        <dt>Message</dt>
        <dd className="message">{build.message || "–"}</dd>
        <dt>Author</dt>
        <dd>{build.author.name || "–"}</dd>
        <dt>Started</dt>
        <dd>{build.startedAt ? <Time at={build.startedAt} /> : "not yet"}</dd>
        <dt>Duration</dt>
        <dd>{duration(build.startedAt, build.finishedAt)}</dd>
        <dt>Trigger</dt>
        <dd>{build.trigger}</dd>
      </dl>
      {build.reason && <p className={build.status === "success" ? "muted" : "error"}>{build.reason}</p>}
      {build.jobs.length > 1 && (
        <div role="tablist" aria-label="Jobs" className="tabs">
          {build.jobs.map((j) => (
            <button key={j.id} type="button" role="tab" aria-selected={j.id === job?.id} onClick={() => setShownJob(j.id)}>
              {j.name} <Status status={j.status} />
            </button>
          ))}
        </div>
      )}
      {job ? <JobPanel key={job.id} build={build} job={job} /> : <p className="muted">No job has started yet.</p>}
    </>
  );
}

function JobPanel({ build, job }: { build: BuildType; job: Job }) {
  const log = useJobLog(build.id, job.id);
  const [jump, setJump] = useState<{ line: number; at: number }>();
  const lineOf = (offset: number) => {
    let lo = 0;
    let hi = log.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (log.starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  return (
    <div className="job">
      <ol className="steps" aria-label="Steps">
        {job.steps.map((s) => (
          // A step of a group ("3.1") sits under it, one level in per level of nesting.
          <li key={s.id} style={{ marginLeft: `${s.id.split(".").length - 1}rem` }}>
            <button type="button" className="link" onClick={() => setJump({ line: lineOf(s.logOffset), at: Date.now() })}>
              {s.name}
            </button>{" "}
            <Status status={s.status} /> <span className="muted">{duration(s.startedAt, s.finishedAt)}</span>
            {s.reason && <span className="muted"> — {s.reason}</span>}
          </li>
        ))}
      </ol>
      <div className="log-head">
        <span>
          {job.name}: <Status status={job.status} /> {log.ended ? "" : isLive(job.status) ? "(live)" : ""}
        </span>
        <a href={`/api/v1/builds/${build.id}/jobs/${job.id}/log?format=text`} download={`build-${build.number}-${job.name}.log`}>
          Download
        </a>
      </div>
      {log.error && <p className="muted" role="status">{log.error}</p>}
      <LogView id={job.id} lines={log.lines} plain={log.plain} looks={log.looks} jumpTo={jump} />
    </div>
  );
}

function Actions({ build }: { build: BuildType }) {
  const client = useQueryClient();
  const navigate = useNavigate();
  const refresh = (b: BuildType) => client.setQueryData(["build", b.id], b);
  const cancel = useMutation({ mutationFn: () => api<BuildType>("POST", `/builds/${build.id}/cancel`), onSuccess: refresh });
  const approve = useMutation({ mutationFn: (step: string) => api<BuildType>("POST", `/builds/${build.id}/approvals`, { step }), onSuccess: refresh });
  const restart = useMutation({
    mutationFn: () =>
      api<BuildType>("POST", `/projects/${build.project}/builds`, {
        ...(build.tag !== null ? { tag: build.tag } : { branch: build.branch! }),
        ...(build.commit && { commit: build.commit }),
      }),
    onSuccess: (b) => navigate(`/builds/${b.id}`),
  });
  return (
    <div className="actions">
      {build.waitingFor && (
        <button type="button" onClick={() => approve.mutate(build.waitingFor!.id)} disabled={approve.isPending}>
          Approve “{build.waitingFor.name}”
        </button>
      )}
      {isLive(build.status) || build.status === "waiting-for-approval" ? (
        <button type="button" className="danger" onClick={() => cancel.mutate()} disabled={cancel.isPending}>
          Cancel
        </button>
      ) : (
        <button type="button" className="secondary" onClick={() => restart.mutate()} disabled={restart.isPending || build.pullRequest !== null || (build.branch === null && build.tag === null)}>
          Restart
        </button>
      )}
      <ErrorNote error={cancel.error ?? approve.error ?? restart.error} />
    </div>
  );
}
