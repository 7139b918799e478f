import { useMutation } from "@tanstack/react-query";
import { Link } from "react-router";
import { api } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { Field, formValues } from "../components/Field";
import { useMeta } from "../meta";

/** A new account, when the operator allows sign-up; the address is confirmed by a mailed link. */
export default function SignUp() {
  const meta = useMeta();
  const signUp = useMutation({ mutationFn: (v: Record<string, string>) => api<{ message: string }>("POST", "/signup", { email: v.email, password: v.password, ...(v.name && { name: v.name }) }) });

  if (meta.data && !meta.data.signup) {
    return (
      <section className="narrow">
        <h1>Create an account</h1>
        <p>Sign-up is turned off on this server: ask its operator for an account.</p>
      </section>
    );
  }
  return (
    <section className="narrow">
      <h1>Create an account</h1>
      {signUp.isSuccess ? (
        <p role="status">Check your email: we sent a link to confirm your address. It works once, for 24 hours.</p>
      ) : (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            signUp.mutate(formValues(e.currentTarget));
          }}
        >
          <Field label="Name" name="name" autoComplete="name" />
          <Field label="Email" name="email" type="email" autoComplete="email" required />
          <Field label="Password" name="password" type="password" autoComplete="new-password" minLength={10} required hint="At least 10 characters." />
          <ErrorNote error={signUp.error} />
          <button type="submit" disabled={signUp.isPending}>
            {signUp.isPending ? "Creating…" : "Create account"}
          </button>
        </form>
      )}
      <p>
        Have an account? <Link to="/sign-in">Sign in</Link>
      </p>
    </section>
  );
}
