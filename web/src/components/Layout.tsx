import { Link, Navigate, NavLink, Outlet, useLocation, useNavigate } from "react-router";
import { useSession, useSignOut } from "../session";

/** The frame of every page: the header with where to go, and the page below it. */
export function Shell() {
  const { user } = useSession();
  const signOut = useSignOut();
  const navigate = useNavigate();
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
                onClick={async () => {
                  await signOut();
                  navigate("/sign-in");
                }}
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
