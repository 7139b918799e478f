import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, get } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { ErrorNote } from "../components/ErrorNote";
import { Field, submitting } from "../components/Field";
import { Section } from "../components/Section";
import { TableHead } from "../components/TableHead";
import { Time } from "../components/Time";
import type { WorkspaceVariable } from "../types";

const VARIABLES = ["workspace-variables"];

/** The account's variables for its workspaces: names and scopes are shown, values never. */
export function WorkspaceVariables() {
  const client = useQueryClient();
  const variables = useQuery({ queryKey: VARIABLES, queryFn: async () => (await get<{ variables: WorkspaceVariable[] }>("/me/workspace-variables")).variables });
  const refresh = () => client.invalidateQueries({ queryKey: VARIABLES });
  const set = useMutation({ mutationFn: ({ name, ...body }: { name: string; value: string; scope: string }) => api("PUT", `/me/workspace-variables/${encodeURIComponent(name)}`, body), onSuccess: refresh });
  const remove = useMutation({ mutationFn: (v: WorkspaceVariable) => api("DELETE", `/me/workspace-variables/${encodeURIComponent(v.name)}?scope=${encodeURIComponent(v.scope)}`), onSuccess: refresh });
  return (
    <Section title="Workspace variables">
      <p className="muted">
        Set in your workspaces' terminals and tasks, encrypted here and masked in task output. The scope names the repositories: <code>owner/repo</code>, <code>owner/*</code> or <code>*/*</code>; the most specific wins, and yours win over the project's.
      </p>
      <form onSubmit={submitting((v, form) => set.mutate({ name: v.name!, value: v.value!, scope: v.scope || "*/*" }, { onSuccess: () => form.reset() }))}>
        <Field label="Variable name" name="name" required pattern="[A-Za-z_][A-Za-z0-9_]*" maxLength={128} className="mono" />
        <Field label="Value" name="value" type="password" required autoComplete="off" />
        <Field label="Scope" name="scope" placeholder="*/*" className="mono" hint="Left empty: every repository." />
        <ErrorNote error={set.error} />
        <button type="submit" disabled={set.isPending}>
          {set.isPending ? "Saving…" : "Save variable"}
        </button>
      </form>
      <ErrorNote error={variables.error ?? remove.error} />
      {variables.data?.length ? (
        <table>
          <TableHead columns={["Name", "Scope", "Changed", ""]} />
          <tbody>
            {variables.data.map((v) => (
              <tr key={`${v.scope} ${v.name}`}>
                <td className="mono">{v.name}</td>
                <td className="mono">{v.scope}</td>
                <td>
                  <Time at={v.updatedAt} />
                </td>
                <td>
                  <ConfirmButton label="Delete" question={`Delete ${v.name} for ${v.scope}?`} confirmLabel="Delete variable" pending={remove.isPending} onConfirm={() => remove.mutate(v)} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        !variables.isPending && <p className="muted">No variables yet.</p>
      )}
    </Section>
  );
}
