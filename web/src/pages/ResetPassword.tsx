import { useMutation } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router";
import { api } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { Field, formValues, fragment } from "../components/Field";

/** The mailed reset link's page: a new password, which also signs out every session and revokes API tokens. */
export default function ResetPassword() {
  const [token] = useState(() => fragment().get("token"));
  const reset = useMutation({ mutationFn: (v: Record<string, string>) => api("POST", "/password-reset/confirm", { token, password: v.password }) });
  return (
    <section className="narrow">
      <h1>Choose a new password</h1>
      {!token && <p className="error" role="alert">This link has no token: open the whole link from the mail again.</p>}
      {reset.isSuccess ? (
        <p role="status">
          Your password is changed; every session was signed out and your API tokens were revoked. <Link to="/sign-in">Sign in</Link>
        </p>
      ) : (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            reset.mutate(formValues(e.currentTarget));
          }}
        >
          <Field label="New password" name="password" type="password" autoComplete="new-password" minLength={10} required hint="At least 10 characters." />
          <ErrorNote error={reset.error} />
          <button type="submit" disabled={reset.isPending || !token}>
            Set password
          </button>
        </form>
      )}
    </section>
  );
}
