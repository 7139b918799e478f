import { useMutation } from "@tanstack/react-query";
import { Link, Navigate, NavLink, Outlet, useLocation, useNavigate, useRouteError } from "react-router";
import { useSession, useSignOut } from "../session";
import { hashEntry } from "../workspace/hash-entry";
import { ErrorNote } from "./ErrorNote";

/** The frame of every page: the header with where to go, and the page below it. */
export function Shell() {
  const { user } = useSession();
  const location = useLocation();
  const navigate = useNavigate();
  const signOut = useMutation({ mutationFn: useSignOut(), onSuccess: () => navigate("/sign-in") });
  // Links to /#<repository-url> and /#snapshot/<id> go to their pages first: signing in keeps a path, not a fragment.
  const entry = location.pathname === "/" ? hashEntry(location.hash) : undefined;
  if (entry) return <Navigate to={entry} replace />;
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link to="/" className="brand">
          Slipway
        </Link>
        {user && (
          <nav aria-label="Main">
            <NavLink to="/" end>
              Projects
            </NavLink>
            <NavLink to="/workspaces">Workspaces</NavLink>
            <NavLink to="/orgs">Organizations</NavLink>
            <NavLink to="/account">Account</NavLink>
          </nav>
        )}
        <div className="who">
          {user ? (
            <>
              <span>{user.name || user.email}</span>
              <button
                type="button"
                className="link"
                disabled={signOut.isPending}
                onClick={() => signOut.mutate()}
              >
                Sign out
              </button>
            </>
          ) : (
            <Link to="/sign-in">Sign in</Link>
          )}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <ErrorNote error={signOut.error} />
        <Outlet />
      </main>
    </>
  );
}

/** Pages for signed-in users: anyone else is sent to sign in, and brought back afterwards. */
export function RequireSignIn() {
  const { user, loading } = useSession();
  const location = useLocation();
  if (loading) return <p className="muted" role="status">Loading…</p>;
  if (!user) return <Navigate to={`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`} replace />;
  return <Outlet />;
}

/**
 * What a page that failed to load shows. After a new release, an open tab may ask for a page
 * chunk that no longer exists: loading the app again fetches the new one.
 */
export function PageError() {
  const error = useRouteError();
  const stale = error instanceof Error && /dynamically imported module|Importing a module script failed|Failed to fetch/i.test(error.message);
  return (
    <section className="narrow">
      <h1>{stale ? "Slipway was updated" : "This page failed"}</h1>
      <p role="alert">{stale ? "This tab still runs the previous version." : error instanceof Error ? error.message : "Something went wrong while showing this page."}</p>
      <button type="button" onClick={() => window.location.reload()}>
        Reload the page
      </button>
    </section>
  );
}
