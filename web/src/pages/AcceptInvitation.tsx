import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, Navigate } from "react-router";
import { api } from "../api";
import { ErrorNote } from "../components/ErrorNote";
import { fragment } from "../components/Field";
import { useSession } from "../session";
import type { Org } from "../types";

/**
 * The token while its visitor signs in first: kept in this page's memory only, so that it never
 * enters a query string (which the server would log) nor any storage.
 */
let pendingToken: string | null = null;

/** The mailed invitation link's landing page: joins the organization as the signed-in user. */
export default function AcceptInvitation() {
  const { user, loading } = useSession();
  const client = useQueryClient();
  const [token] = useState(() => {
    pendingToken = fragment().get("token") ?? pendingToken;
    return pendingToken;
  });
  const accept = useMutation({
    mutationFn: (t: string) => api<{ organization: Org }>("POST", "/invitations/accept", { token: t }),
    onSuccess: () => {
      pendingToken = null;
      void client.invalidateQueries({ queryKey: ["orgs"] });
    },
  });

  if (loading) return <p role="status">Loading…</p>;
  if (token && !user) return <Navigate to={`/sign-in?next=${encodeURIComponent("/accept-invitation")}`} replace />;
  const joined = accept.data?.organization;
  return (
    <section className="narrow">
      <h1>Join an organization</h1>
      {!token ? (
        <p className="error" role="alert">
          This link has no token: open the whole link from the mail again.
        </p>
      ) : joined ? (
        <p role="status">
          You joined {joined.name} as {joined.role}. <Link to={`/orgs/${joined.id}`}>Go to {joined.name}</Link>
        </p>
      ) : (
        <>
          <p>
            You were invited to an organization on Slipway. You are signed in as <strong>{user?.email}</strong>: the invitation must be for this address.
          </p>
          <button type="button" disabled={accept.isPending} onClick={() => accept.mutate(token)}>
            {accept.isPending ? "Joining…" : "Accept the invitation"}
          </button>
        </>
      )}
      <ErrorNote error={accept.error} />
    </section>
  );
}
