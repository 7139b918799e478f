import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, get } from "../api";
import { CopyButton } from "../components/CopyButton";
import { ErrorNote } from "../components/ErrorNote";
import { Section } from "../components/Section";
import { TableHead } from "../components/TableHead";
import { Time } from "../components/Time";
import type { Guest, Workspace, WorkspaceDetail } from "../types";

/** Sharing a running workspace: on or off, its link, and a decision on each request to join. */
export function Sharing({ ws }: { ws: Workspace }) {
  const client = useQueryClient();
  const running = ws.state === "running";
  const guests = useQuery({
    queryKey: ["guests", ws.id],
    queryFn: async () => (await get<{ guests: Guest[] }>(`/workspaces/${ws.id}/guests`)).guests,
    enabled: ws.shared,
    // Requests arrive while the owner works: asked again every few seconds while shared.
    refetchInterval: ws.shared && running ? 3_000 : false,
  });
  const share = useMutation({
    mutationFn: (shared: boolean) => api<{ shared: boolean }>("PUT", `/workspaces/${ws.id}/sharing`, { shared }),
    onSuccess: ({ shared }) => client.setQueryData<WorkspaceDetail>(["workspace", ws.id], (old) => old && { ...old, shared }),
  });
  const decide = useMutation({
    mutationFn: ({ userId, approve }: { userId: string; approve: boolean }) => api("PUT", `/workspaces/${ws.id}/guests/${userId}`, { approve }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["guests", ws.id] }),
  });
  const link = `${location.origin}/workspaces/${ws.id}`;
  return (
    <Section title="Sharing" className="panel wide">
      <p className="muted">
        {ws.shared
          ? "Shared: someone with the link may ask to join, and you decide on each. An approved guest gets its terminals and private ports until you stop sharing or the workspace stops."
          : "Not shared: nobody but you reaches this workspace."}
      </p>
      <div className="actions">
        <button type="button" className={ws.shared ? "secondary" : ""} disabled={share.isPending || (!running && !ws.shared)} onClick={() => share.mutate(!ws.shared)}>
          {ws.shared ? "Stop sharing" : "Share this workspace"}
        </button>
        {ws.shared && <CopyButton text={link} label="Copy the link" />}
      </div>
      <ErrorNote error={share.error ?? guests.error ?? decide.error} />
      {ws.shared && guests.data?.length ? (
        <table className="list">
          <TableHead columns={["Who", "Asked", "Decision", ""]} />
          <tbody>
            {guests.data.map((g) => (
              <tr key={g.userId}>
                <td>
                  {g.name || g.email} <span className="muted">{g.email}</span>
                </td>
                <td>
                  <Time at={g.requestedAt} />
                </td>
                <td>{g.state === "pending" ? "waiting for you" : g.state}</td>
                <td>
                  {g.state !== "approved" && (
                    <button type="button" disabled={decide.isPending} onClick={() => decide.mutate({ userId: g.userId, approve: true })}>
                      Approve {g.name || g.email}
                    </button>
                  )}{" "}
                  {g.state !== "denied" && (
                    <button type="button" className="secondary" disabled={decide.isPending} onClick={() => decide.mutate({ userId: g.userId, approve: false })}>
                      {g.state === "approved" ? "Remove" : "Deny"} {g.name || g.email}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        ws.shared && <p className="muted">Nobody has asked to join yet.</p>
      )}
    </Section>
  );
}
