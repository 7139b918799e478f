import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import type { ReactNode } from "react";
import { Link, useNavigate } from "react-router";
import { api, get } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { ErrorNote } from "../components/ErrorNote";
import { Field, formValues } from "../components/Field";
import { ShownOnce } from "../components/ShownOnce";
import { Status } from "../components/Status";
import { TableHead } from "../components/TableHead";
import { Time } from "../components/Time";
import { useOrgs } from "../queries";
import { useSession } from "../session";
import type { OrgInfo, Runner } from "../types";

/** The organizations I belong to, a form to create one, and for instance administrators the runners. */
export default function Orgs() {
  const orgs = useOrgs();
  const { user } = useSession();
  return (
    <div className="orgs">
      <h1>Organizations</h1>
      <ErrorNote error={orgs.error} />
      {orgs.isPending ? (
        <p role="status">Loading your organizations…</p>
      ) : orgs.data?.length ? (
        <table className="list">
          <TableHead columns={["Name", "Your role", "Two-factor", "Created"]} />
          <tbody>
            {orgs.data.map((o) => (
              <tr key={o.id}>
                <td>
                  <Link to={`/orgs/${o.id}`}>{o.name}</Link>
                </td>
                <td>{o.role}</td>
                <td>{o.require2fa ? "required" : "optional"}</td>
                <td>
                  <Time at={o.createdAt} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        orgs.data && <p className="muted">You belong to no organization yet: create one, or accept an invitation from the mail you were sent.</p>
      )}
      <CreateOrg />
      {user?.isAdmin && <Runners />}
    </div>
  );
}

function CreateOrg() {
  const client = useQueryClient();
  const navigate = useNavigate();
  const create = useMutation({
    mutationFn: (name: string) => api<OrgInfo>("POST", "/orgs", { name }),
    onSuccess: (org) => {
      void client.invalidateQueries({ queryKey: ["orgs"] });
      navigate(`/orgs/${org.id}`);
    },
  });
  return (
    <section aria-labelledby="create-org">
      <h2 id="create-org">Create an organization</h2>
      <NameForm label="Organization name" submit={create.isPending ? "Creating…" : "Create organization"} pending={create.isPending} onSubmit={(v) => create.mutate(v.name!)} />
      <ErrorNote error={create.error} />
    </section>
  );
}

/** The instance's runners: shared by every organization, registered and removed by instance administrators. */
function Runners() {
  const client = useQueryClient();
  // Asked again now and then, so that "online" stays true to what the server saw.
  const runners = useQuery({ queryKey: ["runners"], queryFn: async () => (await get<{ runners: Runner[] }>("/runners")).runners, refetchInterval: 15_000 });
  const refresh = () => client.invalidateQueries({ queryKey: ["runners"] });
  // The token (and the password sent for it) live only in this mutation, dropped as soon as nothing shows it.
  const register = useMutation({
    mutationFn: (body: { name: string; currentPassword: string }) => api<{ runner: Runner; token: string }>("POST", "/runners", body),
    onSuccess: refresh,
    gcTime: 0,
  });
  const remove = useMutation({ mutationFn: (id: string) => api("DELETE", `/runners/${id}`), onSuccess: refresh });

  return (
    <section aria-labelledby="runners">
      <h2 id="runners">Runners</h2>
      <p className="muted">
        Runners take the builds of every organization on this server. Only instance administrators see and manage them; registering one asks for your password again, as its token
        reads every organization's secrets.
      </p>
      <ErrorNote error={runners.error ?? remove.error} />
      {runners.isPending ? (
        <p role="status">Loading the runners…</p>
      ) : runners.data?.length ? (
        <table className="list">
          <TableHead columns={["Name", "State", "Last seen", "Registered", "Actions"]} />
          <tbody>
            {runners.data.map((r) => (
              <tr key={r.id}>
                <td>{r.name}</td>
                <td>
                  <Status status={r.online ? "online" : "offline"} />
                </td>
                <td>{r.lastSeenAt ? <Time at={r.lastSeenAt} /> : "never"}</td>
                <td>
                  <Time at={r.createdAt} />
                </td>
                <td>
                  <ConfirmButton label="Remove" question={`Remove “${r.name}”? Its token stops working at once.`} confirmLabel="Remove runner" pending={remove.isPending} onConfirm={() => remove.mutate(r.id)} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        runners.data && <p className="muted">No runner is registered: builds wait in the queue until one is.</p>
      )}
      {/* The form gives way to the token once registered, so the password typed into it goes with it. */}
      {register.data ? (
        <ShownOnce label={`Token of the runner “${register.data.runner.name}”`} value={register.data.token} saved={{ text: "I have saved this token", onDone: () => register.reset() }}>
          It is shown only now: Slipway keeps only a hash of it. Start the runner on its machine with the token in its environment (never in its arguments):{" "}
          <code>SLIPWAY_RUNNER_TOKEN=… slipway runner --server {window.location.origin}</code>
        </ShownOnce>
      ) : (
        <NameForm
          label="Runner name"
          submit={register.isPending ? "Registering…" : "Register runner"}
          pending={register.isPending}
          onSubmit={(v) => register.mutate({ name: v.name!, currentPassword: v.currentPassword! })}
        >
          <Field label="Your password" name="currentPassword" type="password" autoComplete="current-password" required maxLength={256} />
        </NameForm>
      )}
      <ErrorNote error={register.error} />
    </section>
  );
}

/** A form that names something new (both names here are at most 100 characters), with any further fields it needs. */
function NameForm({ label, submit, pending, onSubmit, children }: { label: string; submit: string; pending: boolean; onSubmit: (values: Record<string, string>) => void; children?: ReactNode }) {
  return (
    <form
      className="inline"
      onSubmit={(e) => {
        e.preventDefault();
        onSubmit(formValues(e.currentTarget));
      }}
    >
      <Field label={label} name="name" required maxLength={100} />
      {children}
      <button type="submit" disabled={pending}>
        {submit}
      </button>
    </form>
  );
}
