import { useMutation } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { api, ApiError } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { GitHostError } from "../components/GitHostError";
import { Field, formValues, fragment } from "../components/Field";
import { useScmProviders } from "../queries";
import { useSessionStarted } from "../session";
import type { Session } from "../types";

/** Email and password, then the two-factor code when the account has it; or a connected git host account. */
export default function SignIn() {
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const started = useSessionStarted();
  const [hash] = useState(fragment);
  const ticket = hash.get("scm-ticket");
  const [needsCode, setNeedsCode] = useState(Boolean(ticket));
  const providers = useScmProviders();
  // Only a path on this site: a link cannot send someone elsewhere after signing in.
  const next = sameSitePath(params.get("next"));

  const signIn = useMutation({
    mutationFn: (values: Record<string, string>) =>
      ticket ? api<Session>("POST", "/session/scm", { ticket, totp: values.totp }) : api<Session>("POST", "/session", { email: values.email, password: values.password, ...(values.totp && { totp: values.totp }) }),
    onSuccess: (session) => {
      started(session);
      navigate(next, { replace: true });
    },
    onError: (err) => {
      if (err instanceof ApiError && err.code === "totp_required") setNeedsCode(true);
    },
  });
  const viaProvider = useMutation({
    mutationFn: (name: string) => api<{ authorizeUrl: string }>("POST", `/session/scm/${name}`),
    onSuccess: ({ authorizeUrl }) => window.location.assign(authorizeUrl),
  });
  const shownError = signIn.error instanceof ApiError && signIn.error.code === "totp_required" ? null : signIn.error;

  return (
    <section className="narrow">
      <h1>Sign in to Slipway</h1>
      <GitHostError id={hash.get("scm-error")} />
      <form
        onSubmit={(e) => {
          e.preventDefault();
          signIn.mutate(formValues(e.currentTarget));
        }}
      >
        {!ticket && (
          <>
            <Field label="Email" name="email" type="email" autoComplete="username" required autoFocus />
            <Field label="Password" name="password" type="password" autoComplete="current-password" required />
          </>
        )}
        {needsCode && <Field label="Two-factor code" name="totp" inputMode="numeric" autoComplete="one-time-code" required autoFocus hint="The 6-digit code from your authenticator app, or a recovery code." />}
        <ErrorNote error={shownError} />
        <button type="submit" disabled={signIn.isPending}>
          {signIn.isPending ? "Signing in…" : "Sign in"}
        </button>
      </form>
      {!ticket && (providers.data?.length ?? 0) > 0 && (
        <div className="stack">
          <p className="muted">Or, if you connected one to your Slipway account:</p>
          {providers.data!.map((p) => (
            <button key={p.name} type="button" className="secondary" onClick={() => viaProvider.mutate(p.name)} disabled={viaProvider.isPending}>
              Sign in with {p.label}
            </button>
          ))}
          <ErrorNote error={viaProvider.error} />
        </div>
      )}
      <p>
        <Link to="/forgot-password">Forgot your password?</Link> · <Link to="/sign-up">Create an account</Link>
      </p>
    </section>
  );
}

/** Where to go after signing in: only a path on this site, whatever a link put in ?next= (no //evil, /\\evil or tabbed tricks). */
function sameSitePath(next: string | null): string {
  if (!next?.startsWith("/")) return "/";
  const url = new URL(next, window.location.origin);
  return url.origin === window.location.origin ? url.pathname + url.search : "/";
}
