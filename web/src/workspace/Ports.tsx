import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { Section } from "../components/Section";
import { TableHead } from "../components/TableHead";
import { usePorts } from "../queries";
import type { Workspace } from "../types";

/** The ports of a running workspace: whether something listens, who may reach it, and its link. */
export function Ports({ ws, mine }: { ws: Workspace; mine: boolean }) {
  const ports = usePorts(ws.id, true);
  const client = useQueryClient();
  const change = useMutation({
    mutationFn: ({ port, visibility }: { port: number; visibility: "public" | "private" }) => api("PUT", `/workspaces/${ws.id}/ports/${port}`, { visibility }),
    onSuccess: () => client.invalidateQueries({ queryKey: ["ports", ws.id] }),
  });
  return (
    <Section title="Ports" className="panel wide">
      <p className="muted">Something listening in the workspace is reached through Slipway. A private port is for you {mine ? "and the guests you approve" : "and its owner"}; a public one for anyone with its link.</p>
      <ErrorNote error={ports.error ?? change.error} />
      {ports.data?.length ? (
        <table className="list">
          <TableHead columns={["Port", "Name", "Listening", "Visibility", ""]} />
          <tbody>
            {ports.data.map((p) => (
              <tr key={p.port}>
                <td className="mono">{p.port}</td>
                <td>{p.name ?? ""}</td>
                <td>{p.listening ? "yes" : "no"}</td>
                <td>
                  {p.visibility}
                  {mine && (
                    <>
                      {" "}
                      <button type="button" className="secondary" disabled={change.isPending} onClick={() => change.mutate({ port: p.port, visibility: p.visibility === "public" ? "private" : "public" })}>
                        {p.visibility === "public" ? "Make private" : "Make public"}
                      </button>
                    </>
                  )}
                </td>
                <td>
                  {p.listening ? (
                    <a href={p.url} target="_blank" rel="noopener noreferrer">
                      Open port {p.port}
                    </a>
                  ) : (
                    <span className="muted">nothing listens yet</span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        !ports.isPending && <p className="muted">Nothing listens yet. Start a server in a terminal (on 0.0.0.0 or 127.0.0.1), and it shows here.</p>
      )}
    </Section>
  );
}
