import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { api, ApiError, get } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { CopyButton } from "../components/CopyButton";
import { DeployKeyView } from "../components/DeployKeyView";
import { ErrorNote, LoadError } from "../components/ErrorNote";
import { Field, submitting } from "../components/Field";
import { Section } from "../components/Section";
import { ShownOnce } from "../components/ShownOnce";
import { TableHead } from "../components/TableHead";
import { TextArea } from "../components/TextArea";
import { Time } from "../components/Time";
import { useConnections, useOrgMembers, useOrgs, useProject } from "../queries";
import type { BadgeLink, DeployKey, Leftover, Project, RepositoryLink, SecretName, WebhookSecret } from "../types";

/** What PATCH /projects/:id takes: the project's own fields, plus the two that are commands rather than state. */
type ProjectPatch = Partial<Pick<Project, "name" | "repositoryUrl" | "egressAllowlist" | "knownHosts" | "forkBuilds">> & {
  confirmHostKeys?: string[];
  pollIntervalSeconds?: NonNullable<Project["polling"]>["intervalSeconds"] | null;
};

interface Deletion {
  name: string;
  leftovers: Leftover[];
}

/** A project's settings, section by section; owners and admins change them, others see what is set. */
export default function ProjectSettings() {
  const { projectId = "" } = useParams();
  const [deleted, setDeleted] = useState<Deletion | null>(null);
  const client = useQueryClient();
  const navigate = useNavigate();
  useEffect(() => {
    if (!deleted) return;
    // Only once no section is left to ask again: every cached piece of the project would now be a 404.
    client.removeQueries({ predicate: (q) => q.queryKey[1] === projectId });
    void client.invalidateQueries({ queryKey: ["projects"] });
    if (!deleted.leftovers.length) navigate("/", { replace: true });
  }, [deleted, projectId, client, navigate]);

  if (deleted) return deleted.leftovers.length ? <Deleted {...deleted} /> : null;
  return <Settings projectId={projectId} onDeleted={setDeleted} />;
}

function Settings({ projectId, onDeleted }: { projectId: string; onDeleted: (d: Deletion) => void }) {
  const project = useProject(projectId);
  const orgs = useOrgs();
  if (project.error) return <LoadError error={project.error} what="project" />;
  if (orgs.error) return <ErrorNote error={orgs.error} />;
  if (project.isPending || orgs.isPending) return <p role="status">Loading the settings…</p>;
  const p = project.data;
  const role = orgs.data.find((o) => o.id === p.organization)?.role;
  const manage = role === "owner" || role === "admin";
  const builds = manage || role === "member" || role === "contractor";
  return (
    <div className="settings">
      <p className="crumbs">
        <Link to={`/projects/${p.id}`}>{p.name}</Link> / settings
      </p>
      <h1>Project settings</h1>
      {!manage && <p className="muted">Only the organization's owners and admins change these settings{builds ? "; you can set the project's secrets" : ""}.</p>}
      <General project={p} manage={manage} />
      <RepositoryLinkSection project={p} manage={manage} />
      <DeployKeySection project={p} manage={manage} />
      {manage && <WebhookSection project={p} />}
      <HostKeys project={p} manage={manage} />
      {builds && <Secrets projectId={p.id} />}
      <BuildPolicy project={p} manage={manage} />
      <Badge projectId={p.id} manage={manage} />
      {manage && <Members project={p} />}
      {manage && <DeleteProject project={p} onDeleted={onDeleted} />}
    </div>
  );
}

/** A PATCH of the project, each form with its own so that errors and "Saved" stay with it. */
function usePatchProject(id: string) {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (patch: ProjectPatch) => api<Project>("PATCH", `/projects/${id}`, patch),
    onSuccess: (project) => {
      client.setQueryData(["project", id], project);
      void client.invalidateQueries({ queryKey: ["projects"] });
    },
  });
}

/** A form's submit button, disabled while its request runs, with the request's error and outcome. */
function Submit({ state, label, busy = "Saving…", done = "Saved." }: { state: { isPending: boolean; isSuccess: boolean; error: unknown }; label: string; busy?: string; done?: string }) {
  return (
    <>
      <ErrorNote error={state.error} />
      <div className="actions">
        <button type="submit" disabled={state.isPending}>
          {state.isPending ? busy : label}
        </button>
        <span role="status" className="muted">
          {state.isSuccess && done}
        </span>
      </div>
    </>
  );
}

/** Non-empty trimmed lines of a textarea. */
const lines = (text = "") =>
  text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);

function General({ project, manage }: { project: Project; manage: boolean }) {
  const rename = usePatchProject(project.id);
  const url = usePatchProject(project.id);
  if (!manage)
    return (
      <Section title="General">
        <dl className="facts">
          <dt>Name</dt>
          <dd>{project.name}</dd>
          <dt>Repository</dt>
          <dd className="mono">{project.repositoryUrl ?? "none"}</dd>
        </dl>
      </Section>
    );
  return (
    <Section title="General">
      <form key={project.name} onSubmit={submitting((v) => rename.mutate({ name: v.name }))}>
        <Field label="Project name" name="name" required pattern="[A-Za-z0-9][A-Za-z0-9._\-]*" maxLength={100} defaultValue={project.name} />
        <Submit state={rename} label="Rename" />
      </form>
      <form key={project.repositoryUrl} onSubmit={submitting((v) => url.mutate({ repositoryUrl: v.repositoryUrl?.trim() || null }))}>
        <Field
          label="Repository URL"
          name="repositoryUrl"
          defaultValue={project.repositoryUrl ?? ""}
          placeholder="ssh://git@git.example.com/team/app.git"
          hint="An ssh://, git@host:path or https:// URL of a plain git server, without a password in it; linking a repository below sets it for you."
        />
        <Submit state={url} label="Save URL" />
      </form>
    </Section>
  );
}

/** The project's link to a repository at a connected git host; none (a 404) is an answer, not an error. */
const useRepositoryLink = (projectId: string) =>
  useQuery({
    queryKey: ["repository-link", projectId],
    queryFn: async () => {
      try {
        return await get<RepositoryLink>(`/projects/${projectId}/repository-link`);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) return null;
        throw err;
      }
    },
  });

function RepositoryLinkSection({ project, manage }: { project: Project; manage: boolean }) {
  const client = useQueryClient();
  const link = useRepositoryLink(project.id);
  const [leftovers, setLeftovers] = useState<Leftover[] | null>(null);
  // Linking and unlinking change the repository URL, the webhook secret and (unlinking) the deploy key.
  const changed = (next: RepositoryLink | null) => {
    client.setQueryData(["repository-link", project.id], next);
    void client.invalidateQueries({ queryKey: ["project", project.id] });
    void client.invalidateQueries({ queryKey: ["deploy-key", project.id] });
  };
  const unlink = useMutation({
    mutationFn: () => api<{ leftovers: Leftover[] }>("DELETE", `/projects/${project.id}/repository-link`),
    onSuccess: (res) => {
      setLeftovers(res.leftovers);
      changed(null);
    },
  });

  return (
    <Section title="Repository link">
      {link.isPending && <p role="status">Loading the link…</p>}
      <ErrorNote error={link.error} />
      {link.data && (
        <>
          <dl className="facts">
            <dt>Git host</dt>
            <dd>{link.data.provider}</dd>
            <dt>Repository</dt>
            <dd className="mono">{link.data.repo}</dd>
            <dt>Linked</dt>
            <dd>
              <Time at={link.data.linkedAt} />
            </dd>
          </dl>
          {link.data.problem && (
            <p className="error">
              {link.data.provider} refused Slipway: {link.data.problem}
            </p>
          )}
          {manage && (
            <ConfirmButton
              label="Unlink"
              question={`Remove Slipway's deploy key and webhook from ${link.data.repo}, and replace this project's deploy key and webhook secret?`}
              confirmLabel={unlink.isPending ? "Unlinking…" : "Unlink"}
              pending={unlink.isPending}
              onConfirm={() => unlink.mutate()}
            />
          )}
        </>
      )}
      <ErrorNote error={unlink.error} />
      {leftovers &&
        (leftovers.length ? (
          <Leftovers items={leftovers} />
        ) : (
          <p role="status">Unlinked: Slipway removed its deploy key and webhook from the repository.</p>
        ))}
      {link.data === null && <p className="muted">Not linked to a repository at a git host: builds start from the signed webhook or polling.</p>}
      {link.data === null && manage && <LinkForm projectId={project.id} onLinked={changed} />}
    </Section>
  );
}

function LinkForm({ projectId, onLinked }: { projectId: string; onLinked: (link: RepositoryLink) => void }) {
  const connections = useConnections();
  const link = useMutation({
    mutationFn: (v: Record<string, string>) => api<RepositoryLink>("PUT", `/projects/${projectId}/repository-link`, { provider: v.provider, repo: v.repo?.trim() }),
    onSuccess: onLinked,
  });
  const usable = (connections.data ?? []).filter((c) => !c.problem);
  if (connections.isPending) return <p role="status">Loading your connected accounts…</p>;
  if (connections.error) return <ErrorNote error={connections.error} />;
  if (!usable.length)
    return (
      <p className="muted">
        To link one, first connect your account at the git host in <Link to="/account">your account</Link>.
      </p>
    );
  return (
    <form onSubmit={submitting((v) => link.mutate(v))}>
      <div className="field">
        <label htmlFor="link-provider">Account</label>
        <select id="link-provider" name="provider">
          {usable.map((c) => (
            <option key={c.provider} value={c.provider}>
              {c.provider} ({c.login})
            </option>
          ))}
        </select>
      </div>
      <Field label="Repository" name="repo" required placeholder="owner/name" hint="GitLab: group/subgroup/name. You need admin rights on it: Slipway adds its deploy key and a webhook." />
      <Submit state={link} label="Link" busy="Linking…" done="Linked." />
    </form>
  );
}

/** What Slipway installed at a git host and could not remove, with why: for the user to remove by hand. */
function Leftovers({ items }: { items: Leftover[] }) {
  return (
    <div className="leftovers" role="status">
      <p>Slipway could not remove these at the git host; remove them there by hand:</p>
      <ul>
        {items.map((l) => (
          <li key={`${l.provider}/${l.repo}/${l.what}/${l.id}`}>
            The {l.what} <span className="mono">{l.id}</span> of <span className="mono">{l.repo}</span> at {l.provider}: {l.reason}
          </li>
        ))}
      </ul>
    </div>
  );
}

function DeployKeySection({ project, manage }: { project: Project; manage: boolean }) {
  const client = useQueryClient();
  const regenerate = useMutation({
    mutationFn: () => api<DeployKey>("POST", `/projects/${project.id}/deploy-key`),
    onSuccess: (next) => client.setQueryData(["deploy-key", project.id], next),
  });
  return (
    <Section title="Deploy key">
      <p>Builds clone with this key: add it as a read-only deploy key at the git server (linking a repository adds it there for you).</p>
      <DeployKeyView projectId={project.id}>
        {(key) =>
          manage && (
            <ConfirmButton
              key={key.fingerprint}
              label="Regenerate key"
              question="The current key stops working at once: builds cannot clone until the new key is added at the git server (remove the old one there too). Make a new key?"
              confirmLabel={regenerate.isPending ? "Making a new key…" : "Make a new key"}
              pending={regenerate.isPending}
              onConfirm={() => regenerate.mutate()}
            />
          )
        }
      </DeployKeyView>
      <ErrorNote error={regenerate.error} />
      {regenerate.isSuccess && <p role="status">A new key is in place: add it at the git server now.</p>}
    </Section>
  );
}

/** The status badge's link (with its token: projects are private) to paste into a README, and a way to replace it. */
function Badge({ projectId, manage }: { projectId: string; manage: boolean }) {
  const client = useQueryClient();
  const link = useQuery({ queryKey: ["badge", projectId], queryFn: () => get<BadgeLink>(`/projects/${projectId}/badge`) });
  const regenerate = useMutation({
    mutationFn: () => api<BadgeLink>("POST", `/projects/${projectId}/badge`),
    onSuccess: (next) => client.setQueryData(["badge", projectId], next),
  });
  return (
    <Section title="Status badge">
      <p>Shows the latest build's status in a README. Anyone with the link sees that status, and nothing else of the project.</p>
      {link.isPending && <p role="status">Loading the badge…</p>}
      <ErrorNote error={link.error ?? regenerate.error} />
      {link.data && (
        <>
          <img src={link.data.imageUrl} alt="The project's build status badge" />
          <pre className="key" aria-label="Badge Markdown">
            {link.data.markdown}
          </pre>
          <div className="actions">
            <CopyButton text={link.data.markdown} label="Copy Markdown" />
            {manage && (
              <ConfirmButton
                key={link.data.imageUrl}
                label="Replace the link"
                question="Every badge using the current link stops working. Make a new link?"
                confirmLabel={regenerate.isPending ? "Replacing…" : "Make a new link"}
                pending={regenerate.isPending}
                onConfirm={() => regenerate.mutate()}
              />
            )}
          </div>
        </>
      )}
    </Section>
  );
}

/** The README's post-receive hook for a plain git server, with this project's URL (and its secret, while shown). */
const postReceiveHook = (url: string, secret = "swh_…") => String.raw`#!/bin/sh
URL=${url}  SECRET=${secret}
while read -r old new ref; do
  case $new in *[!0]*) ;; *) continue ;; esac   # a deleted ref: nothing to build
  body=$(printf '{"ref":"%s","commit":"%s","message":%s}' "$ref" "$new" \
    "$(git log -1 --format=%s "$new" | jq -Rs .)")   # jq only to quote the message
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1)
  curl -fsS -H 'Content-Type: application/json' -H "X-Slipway-Signature: sha256=$sig" \
    -H "X-Slipway-Delivery: $(cat /proc/sys/kernel/random/uuid)" --data-binary "$body" "$URL"
done
`;

function WebhookSection({ project }: { project: Project }) {
  const link = useRepositoryLink(project.id);
  // The secret lives only in this mutation while it is shown (mutations are dropped once nothing shows them).
  const secret = useMutation({ mutationFn: () => api<WebhookSecret>("POST", `/projects/${project.id}/webhook-secret`) });
  const url = secret.data?.url ?? `${window.location.origin}/api/v1/hooks/${project.id}`;
  return (
    <Section title="Webhook">
      <p>A push reaches Slipway as a delivery signed with the project's webhook secret. Slipway shows the secret only once, right after making it; a new one stops the old one at once.</p>
      <dl className="facts">
        <dt>URL</dt>
        <dd className="mono">{url}</dd>
      </dl>
      {secret.data ? (
        <ShownOnce label="Webhook secret" value={secret.data.secret} saved={{ text: "I have put the secret where the git server signs with it", onDone: () => secret.reset() }}>
          This is the only time it is shown.
        </ShownOnce>
      ) : (
        <ConfirmButton
          label="Make a new secret"
          question={
            link.data
              ? `The webhook the link installed in ${link.data.repo} signs with the current secret and stops working: unlink and link again instead, unless you set the new secret there yourself. Make a new secret?`
              : "The current secret stops working at once: every hook that signs with it needs the new one. Make a new secret?"
          }
          confirmLabel={secret.isPending ? "Making a secret…" : "Make a new secret"}
          pending={secret.isPending}
          onConfirm={() => secret.mutate()}
        />
      )}
      <ErrorNote error={secret.error} />
      <details>
        <summary>A post-receive hook for a plain git server</summary>
        <pre className="key">{postReceiveHook(url, secret.data?.secret)}</pre>
        <CopyButton text={postReceiveHook(url, secret.data?.secret)} label="Copy hook" />
        <p className="muted">
          Put it in the bare repository's <span className="mono">hooks/post-receive</span> (executable). The README's “Deploy keys and webhooks” section describes the payload. GitHub,
          GitLab, Bitbucket, Gitea and Forgejo sign deliveries their own way: give them <span className="mono">{url}/github</span> (or <span className="mono">gitlab</span>,{" "}
          <span className="mono">bitbucket</span>, <span className="mono">gitea</span>) with the secret.
        </p>
      </details>
    </Section>
  );
}

function HostKeys({ project, manage }: { project: Project; manage: boolean }) {
  const confirm = usePatchProject(project.id);
  const pin = usePatchProject(project.id);
  const unpin = usePatchProject(project.id);
  const pinned = project.knownHosts !== null;
  return (
    <Section title="Git host keys">
      {pinned ? (
        <>
          <ul className="plain mono" aria-label="Pinned host keys">
            {project.hostKeyFingerprints.map((f) => (
              <li key={f}>{f}</li>
            ))}
          </ul>
          <p>
            {project.knownHostsConfirmed ? (
              <span className="badge ok">Confirmed</span>
            ) : (
              <>
                <span className="badge warn">Not confirmed</span> The first clone or poll trusted these keys as it saw them: compare them with the git server's own (
                <span className="mono">ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub</span> there).
              </>
            )}
          </p>
        </>
      ) : (
        <p>No key is pinned: the next clone or poll pins the key it sees (trust on first use), and its fingerprint shows here to confirm.</p>
      )}
      {manage && pinned && !project.knownHostsConfirmed && (
        <form
          onSubmit={submitting((v) => {
            // Whatever surrounds them (ssh-keygen prints bits, comment and type too) is left out.
            const found = v.fingerprints?.match(/SHA256:[A-Za-z0-9+/]{43}/g);
            confirm.mutate({ confirmHostKeys: found ?? lines(v.fingerprints) });
          })}
        >
          <TextArea label="Fingerprints from the git server's operator" name="fingerprints" rows={3} required hint="As ssh-keygen -lf prints them, one key a line; every pinned key must be named." />
          <Submit state={confirm} label="Confirm host keys" busy="Confirming…" done="Confirmed." />
        </form>
      )}
      {manage && (
        <form key={project.knownHosts} onSubmit={submitting((v) => pin.mutate({ knownHosts: v.knownHosts ?? "" }))}>
          <TextArea
            label="Pin keys (known_hosts)"
            name="knownHosts"
            rows={4}
            required
            className="mono"
            defaultValue={project.knownHosts ?? ""}
            hint="As ssh-keyscan prints them; clones then refuse any other key."
          />
          <Submit state={pin} label="Pin these keys" busy="Pinning…" done="Pinned." />
        </form>
      )}
      {manage && pinned && (
        <>
          <ConfirmButton
            label="Trust the next key seen"
            question="Forget the pinned keys? The next clone then trusts whatever key it sees, as on first use."
            confirmLabel={unpin.isPending ? "Forgetting…" : "Forget the keys"}
            pending={unpin.isPending}
            onConfirm={() => unpin.mutate({ knownHosts: null })}
          />
          <ErrorNote error={unpin.error} />
        </>
      )}
    </Section>
  );
}

function Secrets({ projectId }: { projectId: string }) {
  const client = useQueryClient();
  const key = ["secrets", projectId];
  const list = useQuery({ queryKey: key, queryFn: async () => (await get<{ secrets: SecretName[] }>(`/projects/${projectId}/secrets`)).secrets });
  const [saved, setSaved] = useState<string | null>(null);
  // The reset below: the value leaves the page's memory as soon as it is stored.
  const set = useMutation({
    mutationFn: ({ name, value }: { name: string; value: string; form: HTMLFormElement }) => api("PUT", `/projects/${projectId}/secrets/${encodeURIComponent(name)}`, { value }),
    onSuccess: (_, { name, form }) => {
      form.reset();
      set.reset();
      setSaved(name);
      void client.invalidateQueries({ queryKey: key });
    },
  });
  const remove = useMutation({
    mutationFn: (name: string) => api("DELETE", `/projects/${projectId}/secrets/${encodeURIComponent(name)}`),
    onSuccess: () => void client.invalidateQueries({ queryKey: key }),
  });
  return (
    <Section title="Secrets">
      <p>
        Builds get them as environment variables, masked in their logs. Values are write-only: nobody sees them again, here or in the API. A value has at least 4 characters;
        setting a name again replaces its value.
      </p>
      {list.isPending && <p role="status">Loading the secrets…</p>}
      <ErrorNote error={list.error} />
      {list.data &&
        (list.data.length ? (
          <table className="list">
            <TableHead columns={["Name", "Updated", "Actions"]} />
            <tbody>
              {list.data.map((s) => (
                <tr key={s.name}>
                  <td className="mono">{s.name}</td>
                  <td>
                    <Time at={s.updatedAt} />
                  </td>
                  <td>
                    <ConfirmButton
                      label={`Delete ${s.name}`}
                      question={`Delete ${s.name}? Builds no longer get it.`}
                      confirmLabel="Delete"
                      pending={remove.isPending}
                      onConfirm={() => remove.mutate(s.name)}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p className="muted">No secrets yet.</p>
        ))}
      <ErrorNote error={remove.error} />
      <form
        className="inline"
        onSubmit={submitting((v, form) => {
          setSaved(null);
          set.mutate({ name: v.name ?? "", value: v.value ?? "", form });
        })}
      >
        <Field label="Name" name="name" required maxLength={128} pattern="[A-Za-z_][A-Za-z0-9_]*" placeholder="NPM_TOKEN" autoComplete="off" />
        <Field label="Value" name="value" type="password" required minLength={4} autoComplete="new-password" />
        <Submit state={{ ...set, isSuccess: saved !== null }} label="Save secret" done={`Saved ${saved}.`} />
      </form>
    </Section>
  );
}

function BuildPolicy({ project, manage }: { project: Project; manage: boolean }) {
  const egress = usePatchProject(project.id);
  const fork = usePatchProject(project.id);
  const poll = usePatchProject(project.id);
  const { polling } = project;
  return (
    <Section title="Builds">
      <form key={`egress:${project.egressAllowlist?.join()}`} onSubmit={submitting((v) => egress.mutate({ egressAllowlist: lines(v.egress).length ? lines(v.egress) : null }))}>
        <TextArea
          label="Egress allowlist"
          name="egress"
          rows={4}
          className="mono"
          disabled={!manage}
          defaultValue={project.egressAllowlist?.join("\n") ?? ""}
          placeholder="git.example.com:22"
          hint="What builds may reach (and DNS): one host:port, ip:port, [ipv6]:port, CIDR or CIDR:port a line. Include the git host: the clone goes through it too. Empty: the runner's default."
        />
        {manage && <Submit state={egress} label="Save allowlist" />}
      </form>
      <form key={`fork:${project.forkBuilds}`} onSubmit={submitting((v) => fork.mutate({ forkBuilds: v.forkBuilds === "approve" ? "approve" : "run" }))}>
        <fieldset className="choices" disabled={!manage}>
          <legend>Pull requests from forks</legend>
          <label>
            <input type="radio" name="forkBuilds" value="run" defaultChecked={project.forkBuilds === "run"} /> Run them at once, without secrets
          </label>
          <label>
            <input type="radio" name="forkBuilds" value="approve" defaultChecked={project.forkBuilds === "approve"} /> Wait for an owner's or admin's approval
          </label>
        </fieldset>
        <p className="muted">
          A fork's pull request is a stranger's code on your runners, with the network your builds reach; with approval nothing of it runs, not even its pipeline file, until
          someone has read it, so it cannot go looking for your secrets and credentials.
        </p>
        {manage && <Submit state={fork} label="Save policy" />}
      </form>
      <form key={`poll:${polling?.intervalSeconds}`} onSubmit={submitting((v) => poll.mutate({ pollIntervalSeconds: v.interval ? Number(v.interval) : null }))}>
        <Field
          label="Poll the repository every (seconds)"
          name="interval"
          type="number"
          min={60}
          max={86400}
          disabled={!manage}
          defaultValue={polling?.intervalSeconds ?? ""}
          hint="For a git server that cannot call Slipway: a runner lists its heads and tags and builds those that moved. 60 to 86400; empty: no polling."
        />
        {polling && (
          <p>
            {polling.polledAt ? (
              <>
                Last polled <Time at={polling.polledAt} />.
              </>
            ) : (
              "Not polled yet."
            )}
          </p>
        )}
        {polling?.problem && <p className="error">The last poll failed: {polling.problem}</p>}
        {manage && <Submit state={poll} label="Save polling" />}
      </form>
    </Section>
  );
}

function Members({ project }: { project: Project }) {
  const client = useQueryClient();
  const members = useOrgMembers(project.organization);
  const key = ["assignments", project.id];
  const assigned = useQuery({ queryKey: key, queryFn: async () => (await get<{ userIds: string[] }>(`/projects/${project.id}/assignments`)).userIds });
  const refresh = () => void client.invalidateQueries({ queryKey: key });
  const assign = useMutation({ mutationFn: (userId: string) => api("PUT", `/projects/${project.id}/assignments/${encodeURIComponent(userId)}`), onSuccess: refresh });
  const remove = useMutation({ mutationFn: (userId: string) => api("DELETE", `/projects/${project.id}/assignments/${encodeURIComponent(userId)}`), onSuccess: refresh });
  const byId = new Map((members.data ?? []).map((m) => [m.userId, m]));
  const nameOf = (id: string) => byId.get(id)?.name || byId.get(id)?.email || id;
  const who = (id: string) => [nameOf(id), byId.get(id)?.email].filter(Boolean).join(" · ");
  const free = (members.data ?? []).filter((m) => m.role === "contractor" && !assigned.data?.includes(m.userId));
  return (
    <Section title="Contractors">
      <p>Every other member of the organization sees every project; contractors see only the projects they are assigned to, and there only builds and secrets.</p>
      {(members.isPending || assigned.isPending) && <p role="status">Loading the members…</p>}
      <ErrorNote error={members.error ?? assigned.error} />
      {assigned.data &&
        (assigned.data.length ? (
          <ul className="plain rows" aria-label="Assigned contractors">
            {assigned.data.map((id) => (
              <li key={id}>
                <span>{who(id)}</span>
                <button type="button" className="secondary" disabled={remove.isPending} onClick={() => remove.mutate(id)}>
                  Remove {nameOf(id)}
                </button>
              </li>
            ))}
          </ul>
        ) : (
          <p className="muted">No contractor is assigned.</p>
        ))}
      <ErrorNote error={remove.error} />
      {members.data &&
        (free.length ? (
          <form className="inline" onSubmit={submitting((v) => v.userId && assign.mutate(v.userId))}>
            <div className="field">
              <label htmlFor="assign-contractor">Contractor</label>
              <select id="assign-contractor" name="userId">
                {free.map((m) => (
                  <option key={m.userId} value={m.userId}>
                    {who(m.userId)}
                  </option>
                ))}
              </select>
            </div>
            <Submit state={assign} label="Assign" busy="Assigning…" done="" />
          </form>
        ) : (
          <p className="muted">No other contractor is in the organization: invite someone with the contractor role first.</p>
        ))}
    </Section>
  );
}

function DeleteProject({ project, onDeleted }: { project: Project; onDeleted: (d: Deletion) => void }) {
  const [typed, setTyped] = useState("");
  const del = useMutation({
    mutationFn: () => api<{ leftovers: Leftover[] } | undefined>("DELETE", `/projects/${project.id}`),
    onSuccess: (res) => onDeleted({ name: project.name, leftovers: res?.leftovers ?? [] }),
  });
  return (
    <Section title="Delete the project" className="panel danger-zone">
      <p>
        Deleting <strong>{project.name}</strong> destroys its data key: its secrets, deploy key, webhook secret and build logs become unreadable at once and for good
        (crypto-shredding), and there is no undo. A linked repository's deploy key and webhook are removed at the git host first.
      </p>
      <form onSubmit={submitting(() => del.mutate())}>
        <Field label={`Type ${project.name} to confirm`} value={typed} onChange={(e) => setTyped(e.target.value)} autoComplete="off" spellCheck={false} />
        <ErrorNote error={del.error} />
        <div className="actions">
          <button type="submit" className="danger" disabled={typed !== project.name || del.isPending}>
            {del.isPending ? "Deleting…" : "Delete this project"}
          </button>
        </div>
      </form>
    </Section>
  );
}

function Deleted({ name, leftovers }: Deletion) {
  return (
    <section className="narrow settings">
      <h1>{name} is deleted</h1>
      <p>Its secrets, keys and build logs are unreadable now.</p>
      <Leftovers items={leftovers} />
      <Link className="button" to="/">
        Go to the dashboard
      </Link>
    </section>
  );
}
