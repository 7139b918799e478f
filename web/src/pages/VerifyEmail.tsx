import { useMutation } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { Link } from "react-router";
import { api } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { fragment } from "../components/Field";

/** The mailed link's landing page: confirms the address with the token from the fragment. */
export default function VerifyEmail() {
  const [token] = useState(() => fragment().get("token"));
  const verify = useMutation({ mutationFn: (t: string) => api("POST", "/signup/verify", { token: t }) });
  const { mutate } = verify;
  useEffect(() => {
    if (token) mutate(token);
  }, [token, mutate]);

  return (
    <section className="narrow">
      <h1>Confirm your email</h1>
      {!token && <p className="error" role="alert">This link has no token: open the whole link from the mail again.</p>}
      {verify.isPending && <p role="status">Confirming…</p>}
      {verify.isSuccess && (
        <p role="status">
          Your address is confirmed. <Link to="/sign-in">Sign in</Link>
        </p>
      )}
      <ErrorNote error={verify.error} />
    </section>
  );
}
