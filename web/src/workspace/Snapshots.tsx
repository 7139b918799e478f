import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, get } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { CopyButton } from "../components/CopyButton";
import { ErrorNote } from "../components/ErrorNote";
import { Field, submitting } from "../components/Field";
import { Section } from "../components/Section";
import { TableHead } from "../components/TableHead";
import { Time } from "../components/Time";
import type { Snapshot, Workspace } from "../types";

export const snapshotLink = (id: string) => `${location.origin}/#snapshot/${id}`;

const size = (bytes: number) => (bytes < 1024 * 1024 ? `${Math.ceil(bytes / 1024)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`);

/** A workspace's snapshots: take one, pass its link on, revoke it. */
export function Snapshots({ ws }: { ws: Workspace }) {
  const key = ["snapshots", ws.id];
  const client = useQueryClient();
  const snapshots = useQuery({ queryKey: key, queryFn: async () => (await get<{ snapshots: Snapshot[] }>(`/workspaces/${ws.id}/snapshots`)).snapshots });
  const refresh = () => client.invalidateQueries({ queryKey: key });
  const take = useMutation({ mutationFn: (name: string) => api<Snapshot>("POST", `/workspaces/${ws.id}/snapshots`, name ? { name } : {}), onSuccess: refresh });
  const revoke = useMutation({ mutationFn: (id: string) => api("DELETE", `/workspaces/${ws.id}/snapshots/${id}`), onSuccess: refresh });
  return (
    <Section title="Snapshots" className="panel wide">
      <p className="muted">A snapshot is a copy of /workspace as it is now, encrypted. Whoever may open workspaces of this project can open its link as a workspace of their own; deleting it revokes the link.</p>
      <form className="inline" onSubmit={submitting((v, form) => take.mutate(v.name ?? "", { onSuccess: () => form.reset() }))}>
        <Field label="Snapshot name" name="name" maxLength={100} placeholder="snapshot" />
        <button type="submit" disabled={take.isPending}>
          {take.isPending ? "Taking the snapshot…" : "Take a snapshot"}
        </button>
      </form>
      <ErrorNote error={snapshots.error ?? take.error ?? revoke.error} />
      {snapshots.data?.length ? (
        <table className="list">
          <TableHead columns={["Name", "Size", "Taken", "Link", ""]} />
          <tbody>
            {snapshots.data.map((s) => (
              <tr key={s.id}>
                <td>{s.name}</td>
                <td>{size(s.bytes)}</td>
                <td>
                  <Time at={s.createdAt} />
                </td>
                <td>
                  <code>{snapshotLink(s.id)}</code> <CopyButton text={snapshotLink(s.id)} label="Copy link" />
                </td>
                <td>
                  <ConfirmButton label="Delete" question={`Delete “${s.name}”? Its link stops working.`} confirmLabel="Delete snapshot" pending={revoke.isPending} onConfirm={() => revoke.mutate(s.id)} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        !snapshots.isPending && <p className="muted">No snapshots yet.</p>
      )}
    </Section>
  );
}
