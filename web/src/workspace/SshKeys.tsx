import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, get } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { ErrorNote } from "../components/ErrorNote";
import { Field, submitting } from "../components/Field";
import { Section } from "../components/Section";
import { TableHead } from "../components/TableHead";
import { TextArea } from "../components/TextArea";
import { Time } from "../components/Time";
import type { SshKey } from "../types";

const KEYS = ["ssh-keys"];

/** The account's SSH public keys: what lets its owner into their workspaces over SSH. */
export function SshKeys() {
  const client = useQueryClient();
  const keys = useQuery({ queryKey: KEYS, queryFn: async () => (await get<{ keys: SshKey[] }>("/me/ssh-keys")).keys });
  const refresh = () => client.invalidateQueries({ queryKey: KEYS });
  const add = useMutation({ mutationFn: (body: { name: string; publicKey: string }) => api<SshKey>("POST", "/me/ssh-keys", body), onSuccess: refresh });
  const remove = useMutation({ mutationFn: (id: string) => api("DELETE", `/me/ssh-keys/${id}`), onSuccess: refresh });
  return (
    <Section title="SSH keys">
      <p className="muted">
        A key here lets you into your workspaces (and those you join) with <code>ssh</code>, <code>scp</code>, <code>sftp</code> or an editor's remote SSH.
      </p>
      <form onSubmit={submitting((v, form) => add.mutate({ name: v.name!, publicKey: v.publicKey! }, { onSuccess: () => form.reset() }))}>
        <Field label="Key name" name="name" required maxLength={100} hint="Which computer it is on, e.g. “laptop”." />
        <TextArea label="Public key" name="publicKey" required rows={3} className="mono" hint="One line of your .pub file, e.g. ~/.ssh/id_ed25519.pub: ssh-ed25519, ECDSA, or RSA of 2048 bits or more." />
        <ErrorNote error={add.error} />
        <button type="submit" disabled={add.isPending}>
          {add.isPending ? "Adding…" : "Add key"}
        </button>
      </form>
      <h3>Your keys</h3>
      <ErrorNote error={keys.error ?? remove.error} />
      {keys.data?.length ? (
        <table>
          <TableHead columns={["Name", "Fingerprint", "Added", "Last used", ""]} />
          <tbody>
            {keys.data.map((k) => (
              <tr key={k.id}>
                <td>{k.name}</td>
                <td className="mono">{k.fingerprint}</td>
                <td>
                  <Time at={k.createdAt} />
                </td>
                <td>{k.lastUsedAt ? <Time at={k.lastUsedAt} /> : "never"}</td>
                <td>
                  <ConfirmButton label="Remove" question={`Remove “${k.name}”? It no longer gets into your workspaces.`} confirmLabel="Remove key" pending={remove.isPending} onConfirm={() => remove.mutate(k.id)} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        !keys.isPending && <p className="muted">No keys yet.</p>
      )}
    </Section>
  );
}
