import { useMutation } from "@tanstack/react-query";
import { Link } from "react-router";
import { api } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { Field, formValues } from "../components/Field";

export default function ForgotPassword() {
  const ask = useMutation({ mutationFn: (v: Record<string, string>) => api("POST", "/password-reset", { email: v.email }) });
  return (
    <section className="narrow">
      <h1>Reset your password</h1>
      {ask.isSuccess ? (
        <p role="status">If the address has an account, a link to choose a new password is on its way. It works once, for an hour.</p>
      ) : (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            ask.mutate(formValues(e.currentTarget));
          }}
        >
          <Field label="Email" name="email" type="email" autoComplete="email" required />
          <ErrorNote error={ask.error} />
          <button type="submit" disabled={ask.isPending}>
            Send the link
          </button>
        </form>
      )}
      <p>
        <Link to="/sign-in">Back to sign in</Link>
      </p>
    </section>
  );
}
