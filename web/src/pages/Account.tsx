import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useId, useState, type ReactNode } from "react";
import { useNavigate } from "react-router";
import { api, get } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { CopyButton } from "../components/CopyButton";
import { ErrorNote } from "../components/ErrorNote";
import { GitHostError } from "../components/GitHostError";
import { Field, fragment, submitting } from "../components/Field";
import { Section } from "../components/Section";
import { ShownOnce } from "../components/ShownOnce";
import { TableHead } from "../components/TableHead";
import { Time } from "../components/Time";
import { labelOf, useConnections, useScmProviders } from "../queries";
import { SESSION_KEY } from "../session";
import { SshKeys } from "../workspace/SshKeys";
import { WorkspaceVariables } from "../workspace/WorkspaceVariables";
import type { ApiToken, CreatedToken, Me, User, NewToken, RecoveryCodes, Scope, TwoFactorSetup } from "../types";

const ME = ["me"];
const TOKENS = ["tokens"];

const scopeWords: Record<Scope, string> = {
  "projects:read": "see projects",
  "projects:write": "create, change and delete projects",
  "builds:read": "see builds and their logs",
  "builds:write": "run, cancel and approve builds",
  "secrets:read": "list the names of secrets",
  "secrets:write": "set and delete secrets, decrypt env files",
  "orgs:read": "see organizations and their members",
  "orgs:write": "manage organizations and their members",
  "audit:read": "read organizations' audit logs",
  "workspaces:read": "see your workspaces",
  "workspaces:write": "open, stop, start and delete your workspaces",
};
const allScopes = Object.keys(scopeWords) as Scope[];

const expiries: Array<[days: number, words: string]> = [
  [7, "in 7 days"],
  [30, "in 30 days"],
  [90, "in 90 days"],
  [365, "in a year"],
  [0, "never"],
];


/** The server's QR code as an image: an SVG from the server is never put into the page's own markup. */
const svgImage = (svg: string) => `data:image/svg+xml;base64,${btoa(Array.from(new TextEncoder().encode(svg), (b) => String.fromCharCode(b)).join(""))}`;

/** The signed-in user's own account: profile, password, two-factor, API tokens, SSH keys, workspace variables and connected git hosts. */
export default function Account() {
  const me = useQuery({ queryKey: ME, queryFn: () => get<Me>("/me") });
  const [hash] = useState(fragment);
  const providers = useScmProviders();
  const connected = hash.get("connected");
  const navigate = useNavigate();
  // The git host callback's note is shown once: without it in the address, a reload does not repeat it.
  useEffect(() => {
    if (window.location.hash) navigate("/account", { replace: true });
  }, [navigate]);

  return (
    <div className="account">
      <h1>Account</h1>
      <GitHostError id={hash.get("scm-error")} />
      {connected && providers.data?.some((p) => p.name === connected) && (
        <p className="notice" role="status">
          Your {labelOf(providers.data, connected)} account is connected.
        </p>
      )}
      <ErrorNote error={me.error} />
      {me.isPending && <p role="status">Loading your account…</p>}
      {me.data && (
        <>
          <Profile me={me.data} />
          <Password />
          <TwoFactor me={me.data} />
        </>
      )}
      <Tokens />
      <SshKeys />
      <WorkspaceVariables />
      <GitHosts />
    </div>
  );
}

function Profile({ me }: { me: Me }) {
  const client = useQueryClient();
  const rename = useMutation({
    mutationFn: (name: string) => api<User>("PATCH", "/me", { name }),
    onSuccess: (user) => {
      client.setQueryData(SESSION_KEY, user);
      void client.invalidateQueries({ queryKey: ME });
    },
  });
  return (
    <Section title="Profile">
      <form key={me.user.name} className="inline" onSubmit={submitting((v) => rename.mutate(v.name!))}>
        <Field label="Name" name="name" defaultValue={me.user.name} required maxLength={100} autoComplete="name" hint="What other members see on builds and in member lists." />
        <button type="submit" disabled={rename.isPending}>
          {rename.isPending ? "Saving…" : "Save name"}
        </button>
        <span role="status" className="muted">
          {rename.isSuccess && "Saved."}
        </span>
      </form>
      <ErrorNote error={rename.error} />
      <dl className="facts">
        <dt>Email</dt>
        <dd>{me.user.email}</dd>
        <dt>Member since</dt>
        <dd>
          <Time at={me.user.createdAt} />
        </dd>
        {me.organizations.length > 0 && (
          <>
            <dt>Organizations</dt>
            <dd>{me.organizations.map((o) => `${o.name} (${o.role})`).join(", ")}</dd>
          </>
        )}
      </dl>
    </Section>
  );
}

function Password() {
  const [mismatch, setMismatch] = useState(false);
  const change = useMutation({ mutationFn: (body: { currentPassword: string; newPassword: string }) => api("POST", "/me/password", body) });
  return (
    <Section title="Password">
      <form
        onSubmit={submitting((v, form) => {
          setMismatch(v.newPassword !== v.repeatPassword);
          if (v.newPassword === v.repeatPassword) change.mutate({ currentPassword: v.currentPassword!, newPassword: v.newPassword! }, { onSuccess: () => form.reset() });
        })}
      >
        <Field label="Current password" name="currentPassword" type="password" autoComplete="current-password" required />
        <Field label="New password" name="newPassword" type="password" autoComplete="new-password" required minLength={10} maxLength={256} hint="At least 10 characters." />
        <Field label="New password again" name="repeatPassword" type="password" autoComplete="new-password" required />
        <ErrorNote error={mismatch ? "the two new passwords differ: type the same one twice" : change.error} />
        {change.isSuccess && <p role="status">Your password is changed, and your other sessions are signed out.</p>}
        <button type="submit" disabled={change.isPending}>
          {change.isPending ? "Changing…" : "Change password"}
        </button>
      </form>
    </Section>
  );
}

function TwoFactor({ me }: { me: Me }) {
  const client = useQueryClient();
  const refresh = () => void client.invalidateQueries({ queryKey: ME });
  const begin = useMutation({ mutationFn: (password: string) => api<TwoFactorSetup>("POST", "/me/2fa", { password }) });
  const confirm = useMutation({
    mutationFn: (code: string) => api<RecoveryCodes>("POST", "/me/2fa/confirm", { code }),
    onSuccess: () => {
      begin.reset();
      refresh();
    },
  });
  const disable = useMutation({ mutationFn: (code: string) => api("POST", "/me/2fa/disable", { code }), onSuccess: refresh });

  let body: ReactNode;
  if (confirm.data)
    body = (
      <ShownOnce label="Your recovery codes" value={confirm.data.recoveryCodes.join("\n")} saved={{ text: "I have saved these recovery codes", onDone: () => confirm.reset() }}>
        Two-factor authentication is on. If you lose your authenticator app, each of these codes signs you in once instead of a code from it. Keep them somewhere safe, away from
        that device: they are not shown again.
      </ShownOnce>
    );
  else if (begin.data) body = <TwoFactorSetupSteps setup={begin.data} confirm={confirm} onCancel={() => begin.reset()} />;
  else if (me.user.twoFactor)
    body = (
      <>
        <p>
          Two-factor authentication is <strong>on</strong>. {me.recoveryCodesLeft} unused recovery code{me.recoveryCodesLeft === 1 ? "" : "s"} left.
        </p>
        <form onSubmit={submitting((v) => disable.mutate(v.code!))}>
          <Field label="Code from your app, or a recovery code" name="code" autoComplete="one-time-code" required maxLength={64} />
          <ErrorNote error={disable.error} />
          <button type="submit" className="danger" disabled={disable.isPending}>
            {disable.isPending ? "Turning off…" : "Turn off two-factor"}
          </button>
        </form>
      </>
    );
  else
    body = (
      <>
        <p>
          Two-factor authentication is <strong>off</strong>
          {disable.isSuccess ? " now" : ""}. With it on, signing in also needs a code from an authenticator app on your phone.
        </p>
        <form onSubmit={submitting((v) => begin.mutate(v.password!))}>
          <Field label="Your password" name="password" type="password" autoComplete="current-password" required hint="Setting it up needs your password, so that a session left open cannot add an authenticator." />
          <ErrorNote error={begin.error} />
          <button type="submit" disabled={begin.isPending}>
            {begin.isPending ? "Starting…" : "Set up two-factor"}
          </button>
        </form>
      </>
    );
  return <Section title="Two-factor authentication">{body}</Section>;
}

function TwoFactorSetupSteps({ setup, confirm, onCancel }: { setup: TwoFactorSetup; confirm: { mutate: (code: string) => void; isPending: boolean; error: unknown }; onCancel: () => void }) {
  return (
    <ol className="setup-steps">
      <li>
        <p>Scan this QR code with your authenticator app:</p>
        <img className="qr" src={svgImage(setup.qrSvg)} width={200} height={200} alt="QR code of the setup link below, for an authenticator app" />
      </li>
      <li>
        <p>Or, if you cannot scan it, enter the key by hand (time-based, 6 digits, every 30 seconds), or open the setup link on the device:</p>
        <div className="copyable">
          <Field label="Secret key" className="mono" readOnly value={setup.secret} onFocus={(e) => e.currentTarget.select()} />
          <CopyButton text={setup.secret} label="Copy key" />
        </div>
        <div className="copyable">
          <Field label="Setup link" className="mono" readOnly value={setup.otpauthUri} onFocus={(e) => e.currentTarget.select()} />
          <CopyButton text={setup.otpauthUri} label="Copy link" />
        </div>
      </li>
      <li>
        <form onSubmit={submitting((v) => confirm.mutate(v.code!))}>
          <Field label="Code the app shows" name="code" inputMode="numeric" autoComplete="one-time-code" pattern="\d{6}" maxLength={6} required hint="6 digits." />
          <ErrorNote error={confirm.error} />
          <div className="actions">
            <button type="submit" disabled={confirm.isPending}>
              {confirm.isPending ? "Checking…" : "Turn on two-factor"}
            </button>
            <button type="button" className="secondary" onClick={onCancel}>
              Cancel
            </button>
          </div>
        </form>
      </li>
    </ol>
  );
}

function Tokens() {
  const client = useQueryClient();
  const tokens = useQuery({ queryKey: TOKENS, queryFn: async () => (await get<{ tokens: ApiToken[] }>("/tokens")).tokens });
  const refresh = () => void client.invalidateQueries({ queryKey: TOKENS });
  const create = useMutation({ mutationFn: (body: NewToken) => api<CreatedToken>("POST", "/tokens", body), onSuccess: refresh });
  const revoke = useMutation({ mutationFn: (id: string) => api("DELETE", `/tokens/${id}`), onSuccess: refresh });
  return (
    <Section title="API tokens">
      <p className="muted">
        For scripts and other programs: send one as <code>Authorization: Bearer …</code>. A token does only what its scopes allow, and never more than you may.
      </p>
      {create.data ? (
        <ShownOnce label="Your new API token" value={create.data.token} saved={{ text: "I have saved this token", onDone: () => create.reset() }}>
          Copy it now: Slipway keeps only a hash of it and cannot show it again.
        </ShownOnce>
      ) : (
        <TokenForm onCreate={(body) => create.mutate(body)} pending={create.isPending} error={create.error} />
      )}
      <h3>Your tokens</h3>
      <ErrorNote error={tokens.error ?? revoke.error} />
      {tokens.isPending ? (
        <p role="status">Loading tokens…</p>
      ) : tokens.data?.length ? (
        <table>
          <TableHead columns={["Name", "Scopes", "Created", "Expires", "Last used", "State"]} />
          <tbody>
            {tokens.data.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td className="mono">{t.scopes.join(", ")}</td>
                <td>
                  <Time at={t.createdAt} />
                </td>
                <td>{t.expiresAt ? <Time at={t.expiresAt} /> : "never"}</td>
                <td>{t.lastUsedAt ? <Time at={t.lastUsedAt} /> : "never"}</td>
                <td>
                  {t.revokedAt ? (
                    <span className="muted">
                      revoked <Time at={t.revokedAt} />
                    </span>
                  ) : t.expiresAt && Date.parse(t.expiresAt) <= Date.now() ? (
                    <span className="muted">expired</span>
                  ) : (
                    <ConfirmButton label="Revoke" question={`Revoke “${t.name}”? Programs using it stop working at once.`} confirmLabel="Revoke token" pending={revoke.isPending} onConfirm={() => revoke.mutate(t.id)} />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="muted">No tokens yet.</p>
      )}
    </Section>
  );
}

function TokenForm({ onCreate, pending, error }: { onCreate: (body: NewToken) => void; pending: boolean; error: unknown }) {
  const [noScope, setNoScope] = useState(false);
  const expiryId = useId();
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        const data = new FormData(e.currentTarget);
        const chosen = data.getAll("scopes");
        const scopes = allScopes.filter((s) => chosen.includes(s));
        const days = Number(data.get("expiry"));
        setNoScope(scopes.length === 0);
        if (scopes.length) onCreate({ name: String(data.get("name")), scopes, ...(days > 0 && { expiresAt: new Date(Date.now() + days * 86_400_000).toISOString() }) });
      }}
    >
      <Field label="Token name" name="name" required maxLength={100} hint="What it is for, e.g. “deploy script”." />
      <fieldset className="scopes">
        <legend>Scopes</legend>
        {allScopes.map((scope) => (
          <label key={scope} className="check">
            <input type="checkbox" name="scopes" value={scope} /> <code>{scope}</code> <span className="muted">{scopeWords[scope]}</span>
          </label>
        ))}
      </fieldset>
      <div className="field">
        <label htmlFor={expiryId}>Expires</label>
        <select id={expiryId} name="expiry" defaultValue="30">
          {expiries.map(([days, words]) => (
            <option key={days} value={days}>
              {words}
            </option>
          ))}
        </select>
      </div>
      <ErrorNote error={noScope ? "pick at least one scope: a token without any can do nothing" : error} />
      <button type="submit" disabled={pending}>
        {pending ? "Creating…" : "Create token"}
      </button>
    </form>
  );
}

function GitHosts() {
  const client = useQueryClient();
  const providers = useScmProviders();
  const connections = useConnections();
  const connect = useMutation({ mutationFn: (name: string) => api<{ authorizeUrl: string }>("POST", `/me/connections/${name}`), onSuccess: ({ authorizeUrl }) => window.location.assign(authorizeUrl) });
  const disconnect = useMutation({
    mutationFn: (name: string) => api<{ revoked: boolean; manual: string | null }>("DELETE", `/me/connections/${name}`),
    onSuccess: () => void client.invalidateQueries({ queryKey: ["connections"] }),
  });
  const label = (name: string) => labelOf(providers.data, name);
  // A connection stays listed even when the server no longer offers its host: it can still be removed.
  const names = [...new Set([...(providers.data ?? []).map((p) => p.name), ...(connections.data ?? []).map((c) => c.provider)])];

  return (
    <Section title="Connected git hosts">
      <p className="muted">A connected account lets you create projects from its repositories and sign in with it. Slipway keeps its token sealed and never shows it.</p>
      {disconnect.data && (
        <p className="notice" role="status">
          Your {label(disconnect.variables!)} account is disconnected. {disconnect.data.manual ?? "Slipway's access to it is revoked there too."}
        </p>
      )}
      <ErrorNote error={providers.error ?? connections.error ?? connect.error ?? disconnect.error} />
      {providers.isPending || connections.isPending ? (
        <p role="status">Loading git hosts…</p>
      ) : names.length === 0 ? (
        <p className="muted">This server is not set up to connect to any git host.</p>
      ) : (
        <ul className="hosts">
          {names.map((name) => {
            const c = connections.data?.find((x) => x.provider === name);
            const asked = providers.data?.find((p) => p.name === name)?.scopes;
            return (
              <li key={name}>
                <h3>{label(name)}</h3>
                {c ? (
                  <>
                    <dl className="facts">
                      <dt>Account</dt>
                      <dd>
                        <strong>{c.login}</strong>
                        {c.name && ` (${c.name})`}
                      </dd>
                      <dt>Connected</dt>
                      <dd>
                        <Time at={c.connectedAt} />
                      </dd>
                      <dt>Scopes granted</dt>
                      <dd className="mono">{c.scopes.join(", ") || "none"}</dd>
                    </dl>
                    <ErrorNote error={c.problem} />
                    <div className="actions">
                      {c.problem && asked && (
                        <button type="button" disabled={connect.isPending} onClick={() => connect.mutate(name)}>
                          Reconnect {label(name)}
                        </button>
                      )}
                      <ConfirmButton label={`Disconnect ${label(name)}`} question={`Disconnect ${c.login} at ${label(name)}?`} confirmLabel="Disconnect" pending={disconnect.isPending} onConfirm={() => disconnect.mutate(name)} />
                    </div>
                  </>
                ) : (
                  <>
                    <p className="muted">Not connected. Slipway will ask for: {asked?.join(", ") || "nothing beyond your profile"}.</p>
                    <button type="button" disabled={connect.isPending} onClick={() => connect.mutate(name)}>
                      {connect.isPending && connect.variables === name ? `Going to ${label(name)}…` : `Connect ${label(name)}`}
                    </button>
                  </>
                )}
              </li>
            );
          })}
        </ul>
      )}
    </Section>
  );
}
