import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { api } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { Section } from "../components/Section";
import { Status } from "../components/Status";
import { useTerminals } from "../queries";
import type { Workspace, WorkspaceTerminal } from "../types";
import { TerminalView } from "./TerminalView";

/** A running workspace's terminals: one per task, and the shells opened in it, one shown at a time. */
export function Terminals({ ws }: { ws: Workspace }) {
  const terminals = useTerminals(ws.id, true);
  const client = useQueryClient();
  const [shown, setShown] = useState<string | null>(null);
  const key = ["terminals", ws.id];
  const open = useMutation({
    mutationFn: () => api<WorkspaceTerminal>("POST", `/workspaces/${ws.id}/terminals`, {}),
    onSuccess: (t) => {
      client.setQueryData<WorkspaceTerminal[]>(key, (old = []) => [...old, t]);
      setShown(t.id);
    },
  });
  const close = useMutation({
    mutationFn: (id: string) => api("DELETE", `/workspaces/${ws.id}/terminals/${id}`),
    onSuccess: (_, id) => {
      client.setQueryData<WorkspaceTerminal[]>(key, (old = []) => old.filter((t) => t.id !== id));
      setShown(null);
    },
  });
  const list = terminals.data ?? [];
  const current = list.find((t) => t.id === shown) ?? list[0];
  const taskOf = (t: WorkspaceTerminal) => ws.tasks.find((task) => task.terminal === t.id);
  return (
    <Section title="Terminals" className="panel wide">
      <div className="terminal-bar">
        <div role="tablist" aria-label="Terminals" className="tabs">
          {list.map((t) => {
            const task = taskOf(t);
            return (
              <button key={t.id} type="button" role="tab" aria-selected={t.id === current?.id} onClick={() => setShown(t.id)}>
                {t.name} {task ? <Status status={task.state} /> : t.state === "exited" && <Status status="exited" />}
              </button>
            );
          })}
        </div>
        <button type="button" className="secondary" disabled={open.isPending} onClick={() => open.mutate()}>
          New terminal
        </button>
        {current?.kind === "shell" && (
          <button type="button" className="secondary" disabled={close.isPending} onClick={() => close.mutate(current.id)}>
            Close this terminal
          </button>
        )}
      </div>
      <ErrorNote error={terminals.error ?? open.error ?? close.error} />
      {current ? (
        <>
          {taskOf(current)?.state === "failed" && (
            <p className="error" role="alert">
              The task “{current.name}” failed (exit code {taskOf(current)!.exitCode}); the workspace still runs. Its output is below.
            </p>
          )}
          <TerminalView key={current.id} workspaceId={ws.id} terminalId={current.id} label={current.name} />
        </>
      ) : (
        !terminals.isPending && <p className="muted">No terminal yet: open one.</p>
      )}
    </Section>
  );
}
