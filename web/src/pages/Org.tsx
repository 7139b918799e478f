import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useId, useState } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import { api, get } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { ErrorNote, LoadError } from "../components/ErrorNote";
import { Field, formValues } from "../components/Field";
import { TableHead } from "../components/TableHead";
import { Time } from "../components/Time";
import { useOrg, useOrgMembers, useOrgs } from "../queries";
import { useSession } from "../session";
import type { AuditAction, AuditChain, AuditEntry, OrgInfo, OrgMember, Role } from "../types";

/** What each role may do, as the invitation form offers them (README, "Roles"). */
const ROLES: Record<Role, string> = {
  owner: "everything, including the owner role",
  admin: "members, settings, projects and the audit log",
  member: "every project and its secrets",
  contractor: "only the projects they are assigned to",
  support: "records, but no secrets, logs or code",
};

/** Actions an organization's log can hold: typed against the server's list, so a new one cannot be left out. */
type OrgAuditAction = Exclude<AuditAction, `auth.${string}` | `token.${string}` | `scm.${string}` | `runner.${string}` | "user.created" | "crypto.master_key_rotated">;
const ORG_ACTIONS = Object.keys({
  "org.created": true, "org.updated": true, "org.member_invited": true, "org.member_added": true, "org.role_changed": true, "org.member_removed": true,
  "project.created": true, "project.updated": true, "project.deleted": true, "project.assignment_added": true, "project.assignment_removed": true,
  "project.deploy_key_regenerated": true, "project.known_hosts_changed": true, "project.known_hosts_pinned": true, "project.known_hosts_confirmed": true,
  "project.badge_regenerated": true, "project.env_file_decrypted": true, "project.webhook_secret_regenerated": true, "project.repository_linked": true,
  "project.repository_unlinked": true, "project.polling_changed": true, "webhook.accepted": true, "webhook.rejected": true, "build.step_approved": true,
  "secret.set": true, "secret.deleted": true, "workspace.opened": true, "workspace.deleted": true,
  "workspace.ssh_session": true, "workspace.snapshot_created": true, "workspace.snapshot_deleted": true, "workspace.sharing_changed": true, "workspace.join_requested": true,
  "workspace.guest_approved": true, "workspace.guest_denied": true,
} satisfies Record<OrgAuditAction, true>).sort();

const AUDIT_PAGE = 50;

const nameOf = (m: OrgMember) => m.name || m.email || m.userId;

/** An organization: its members and invitations, and for owners and admins its settings and audit log. */
export default function Org() {
  const { orgId = "" } = useParams();
  const org = useOrg(orgId);
  const role = useOrgs().data?.find((o) => o.id === orgId)?.role;
  // Only what the role can use is offered; the API decides every request all the same.
  const manages = role === "owner" || role === "admin";

  if (org.error) return <LoadError error={org.error} what="organization" />;
  return (
    <div className="org">
      <p className="crumbs">
        <Link to="/orgs">Organizations</Link>
      </p>
      <div className="heading">
        <h1>{org.data?.name ?? "Organization"}</h1>
        {role && <span className="muted">Your role: {role}</span>}
      </div>
      {org.isPending && <p role="status">Loading the organization…</p>}
      <Members orgId={orgId} manages={manages} />
      {org.data && <Settings org={org.data} manages={manages} />}
      {/* Keyed: another organization's log starts on its first page, with no filter. */}
      {manages && <AuditLog key={orgId} orgId={orgId} />}
    </div>
  );
}

function Members({ orgId, manages }: { orgId: string; manages: boolean }) {
  const client = useQueryClient();
  const { user } = useSession();
  const members = useOrgMembers(orgId);
  const changed = () => {
    void client.invalidateQueries({ queryKey: ["org-members", orgId] });
    void client.invalidateQueries({ queryKey: ["audit", orgId] });
    // The caller's own role may be what changed: what they may do here follows it.
    void client.invalidateQueries({ queryKey: ["orgs"] });
  };
  const changeRole = useMutation({ mutationFn: ({ userId, role }: { userId: string; role: Role }) => api("PATCH", `/orgs/${orgId}/members/${userId}`, { role }), onSuccess: changed });
  const remove = useMutation({ mutationFn: (userId: string) => api("DELETE", `/orgs/${orgId}/members/${userId}`), onSuccess: changed });

  return (
    <section aria-labelledby="members">
      <h2 id="members">Members</h2>
      <ErrorNote error={members.error ?? changeRole.error ?? remove.error} />
      {members.isPending && <p role="status">Loading the members…</p>}
      {members.data && (
        <table className="list" aria-labelledby="members">
          <TableHead columns={["Name", "Email", "Role", "Member since", ...(manages ? ["Actions"] : [])]} />
          <tbody>
            {members.data.map((m) => (
              <tr key={m.userId}>
                <td>
                  {m.name || "–"}
                  {m.userId === user?.id && <span className="muted"> (you)</span>}
                </td>
                <td>{m.email ?? <span className="muted">hidden</span>}</td>
                <td>{manages ? <RoleForm member={m} pending={changeRole.isPending} onChange={(role) => changeRole.mutate({ userId: m.userId, role })} /> : m.role}</td>
                <td>
                  <Time at={m.since} />
                </td>
                {manages && (
                  <td>
                    <ConfirmButton label="Remove" question={`Remove ${nameOf(m)} from the organization?`} confirmLabel="Remove member" pending={remove.isPending} onConfirm={() => remove.mutate(m.userId)} />
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {manages && <Invite orgId={orgId} />}
    </section>
  );
}

/** A member's role, changed with an explicit button: a select that acted on every arrow key would change it by accident. */
function RoleForm({ member, pending, onChange }: { member: OrgMember; pending: boolean; onChange: (role: Role) => void }) {
  const [role, setRole] = useState<Role>(member.role);
  return (
    <form
      className="inline role"
      onSubmit={(e) => {
        e.preventDefault();
        onChange(role);
      }}
    >
      <select aria-label={`Role of ${nameOf(member)}`} value={role} onChange={(e) => setRole(e.target.value as Role)}>
        {Object.keys(ROLES).map((r) => (
          <option key={r}>{r}</option>
        ))}
      </select>
      <button type="submit" className="secondary" disabled={pending || role === member.role}>
        Change role
      </button>
    </form>
  );
}

function Invite({ orgId }: { orgId: string }) {
  const client = useQueryClient();
  const roleId = useId();
  const invite = useMutation({
    mutationFn: (v: { email: string; role: Role }) => api<{ expiresAt: string }>("POST", `/orgs/${orgId}/invitations`, v),
    onSuccess: () => void client.invalidateQueries({ queryKey: ["audit", orgId] }),
  });
  return (
    <>
      <h3>Invite someone</h3>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          const v = formValues(form);
          invite.mutate({ email: v.email!, role: v.role as Role }, { onSuccess: () => form.reset() });
        }}
      >
        <Field label="Email" name="email" type="email" required autoComplete="off" />
        <div className="field">
          <label htmlFor={roleId}>Role</label>
          <select id={roleId} name="role" defaultValue="member">
            {Object.entries(ROLES).map(([r, can]) => (
              <option key={r} value={r}>
                {r}: {can}
              </option>
            ))}
          </select>
        </div>
        <button type="submit" disabled={invite.isPending}>
          {invite.isPending ? "Sending…" : "Send invitation"}
        </button>
      </form>
      {invite.isSuccess && (
        <p role="status">
          Invitation sent to {invite.variables.email} as {invite.variables.role}. The link in the mail works once, until <Time at={invite.data.expiresAt} />.
        </p>
      )}
      <ErrorNote error={invite.error} />
    </>
  );
}

function Settings({ org, manages }: { org: OrgInfo; manages: boolean }) {
  const client = useQueryClient();
  const [unchanged, setUnchanged] = useState(false);
  const save = useMutation({
    mutationFn: (patch: { name?: string; require2fa?: boolean }) => api<OrgInfo>("PATCH", `/orgs/${org.id}`, patch),
    onSuccess: (updated) => {
      client.setQueryData(["org", org.id], updated);
      void client.invalidateQueries({ queryKey: ["orgs"] });
      void client.invalidateQueries({ queryKey: ["audit", org.id] });
    },
  });
  if (!manages) {
    return (
      <section aria-labelledby="settings">
        <h2 id="settings">Settings</h2>
        <p>Two-factor authentication is {org.require2fa ? "required of every member" : "up to each member"}.</p>
      </section>
    );
  }
  return (
    <section aria-labelledby="settings">
      <h2 id="settings">Settings</h2>
      <form
        // A new form when the saved values change, so that its fields start from them.
        key={`${org.name}|${org.require2fa}`}
        onSubmit={(e) => {
          e.preventDefault();
          const form = e.currentTarget;
          const name = formValues(form).name!.trim();
          const require2fa = (form.elements.namedItem("require2fa") as HTMLInputElement).checked;
          const patch = { ...(name !== org.name && { name }), ...(require2fa !== org.require2fa && { require2fa }) };
          setUnchanged(Object.keys(patch).length === 0);
          if (Object.keys(patch).length > 0) save.mutate(patch);
        }}
      >
        <Field label="Organization name" name="name" required maxLength={100} defaultValue={org.name} />
        <label className="check">
          <input type="checkbox" name="require2fa" defaultChecked={org.require2fa} /> Require two-factor authentication of every member
        </label>
        <p className="muted">Members without it are refused everything in the organization until they turn it on. Turn it on for your own account first.</p>
        <button type="submit" disabled={save.isPending}>
          {save.isPending ? "Saving…" : "Save settings"}
        </button>
      </form>
      {unchanged ? <p role="status">Nothing was changed.</p> : save.isSuccess && <p role="status">Settings saved.</p>}
      <ErrorNote error={save.error} />
    </section>
  );
}

/** A datetime-local value (local time, no zone) as the API's ISO time. */
const isoOf = (local: string) => new Date(local).toISOString();

function AuditLog({ orgId }: { orgId: string }) {
  const members = useOrgMembers(orgId);
  const [params, setParams] = useSearchParams();
  const filter = { actor: params.get("actor") ?? "", action: params.get("action") ?? "", since: params.get("since") ?? "", until: params.get("until") ?? "" };
  // Pages go back in time: each starts before the oldest entry of the one before.
  const [before, setBefore] = useState<number[]>([]);
  const entries = useQuery({
    queryKey: ["audit", orgId, filter, before.at(-1)],
    queryFn: () => {
      const q = new URLSearchParams({ limit: String(AUDIT_PAGE) });
      if (before.length) q.set("before", String(before.at(-1)));
      if (filter.actor) q.set("actor", filter.actor);
      if (filter.action) q.set("action", filter.action);
      if (filter.since) q.set("since", isoOf(filter.since));
      if (filter.until) q.set("until", isoOf(filter.until));
      return get<{ entries: AuditEntry[]; nextBefore: number | null }>(`/orgs/${orgId}/audit?${q}`);
    },
  });
  const setFilter = (name: string, value: string) => {
    setBefore([]);
    setParams(
      (p) => {
        if (value) p.set(name, value);
        else p.delete(name);
        return p;
      },
      { replace: true },
    );
  };
  const byId = new Map((members.data ?? []).map((m) => [m.userId, m]));
  const targetOf = (target: string | null) => {
    const member = target ? byId.get(target) : undefined;
    return member ? `${nameOf(member)} (${target})` : (target ?? "–");
  };

  return (
    <section aria-labelledby="audit">
      <h2 id="audit">Audit log</h2>
      <ChainStatus orgId={orgId} />
      <div className="filters">
        <div className="field">
          <label htmlFor="audit-actor">Actor</label>
          <select id="audit-actor" value={filter.actor} onChange={(e) => setFilter("actor", e.target.value)}>
            <option value="">anyone</option>
            {(members.data ?? []).map((m) => (
              <option key={m.userId} value={m.userId}>
                {nameOf(m)}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="audit-action">Action</label>
          <select id="audit-action" value={filter.action} onChange={(e) => setFilter("action", e.target.value)}>
            <option value="">any</option>
            {ORG_ACTIONS.map((a) => (
              <option key={a}>{a}</option>
            ))}
          </select>
        </div>
        <Field label="From" type="datetime-local" value={filter.since} onChange={(e) => setFilter("since", e.target.value)} />
        <Field label="Until" type="datetime-local" value={filter.until} onChange={(e) => setFilter("until", e.target.value)} />
      </div>
      <ErrorNote error={entries.error} />
      {entries.isPending ? (
        <p role="status">Loading the audit log…</p>
      ) : entries.data?.entries.length ? (
        <table className="list audit" aria-labelledby="audit">
          <TableHead columns={["Time", "Actor", "Action", "Target", "Details", "Address"]} />
          <tbody>
            {entries.data.entries.map((e) => (
              <tr key={e.seq}>
                <td>
                  <Time at={e.at} />
                </td>
                <td>{e.actor}</td>
                <td className="mono">{e.action}</td>
                <td>{targetOf(e.target)}</td>
                <td className="details">{detailsText(e.details)}</td>
                <td className="mono">{e.ip ?? "–"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        entries.data && <p className="muted">{Object.values(filter).some(Boolean) ? "No entry matches." : "Nothing recorded yet."}</p>
      )}
      <nav className="pager" aria-label="Audit log pages">
        <button type="button" className="secondary" disabled={!before.length} onClick={() => setBefore((b) => b.slice(0, -1))}>
          Newer
        </button>
        <button type="button" className="secondary" disabled={!entries.data?.nextBefore} onClick={() => setBefore((b) => [...b, entries.data!.nextBefore!])}>
          Older
        </button>
      </nav>
    </section>
  );
}

/** An entry's details as one line of text: `key: value`, values that are not text as JSON. */
const detailsText = (details: Record<string, unknown>) =>
  Object.entries(details)
    .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(", ") || "–";

/** Whether the audit log's hash chain holds: checked on demand, as it walks the whole instance's log. */
function ChainStatus({ orgId }: { orgId: string }) {
  const chain = useQuery({ queryKey: ["audit-chain", orgId], queryFn: () => get<AuditChain>(`/orgs/${orgId}/audit/verify`), staleTime: 60_000 });
  return (
    <div className="chain">
      {chain.isPending ? (
        <p role="status">Verifying the audit log's hash chain…</p>
      ) : chain.data?.verified ? (
        <p className="chain-ok" role="status">
          <strong>Chain verified:</strong> no entry was changed, removed or reordered since it was written (checked <Time at={chain.data.checkedAt} />).
        </p>
      ) : (
        chain.data && (
          <p className="error" role="alert">
            <strong>Chain broken</strong> (checked <Time at={chain.data.checkedAt} />). {chain.data.problem}
          </p>
        )
      )}
      <ErrorNote error={chain.error} />
      <button type="button" className="secondary" disabled={chain.isFetching} onClick={() => void chain.refetch()}>
        {chain.isFetching ? "Checking…" : "Check again"}
      </button>
    </div>
  );
}
