import { Link } from "react-router";
import { ApiError } from "../api";

/** An error in words, as the server said it (its messages say what to do next). */
export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const message = error instanceof ApiError || error instanceof Error ? error.message : String(error);
  return (
    <p className="error" role="alert">
      {message.charAt(0).toUpperCase() + message.slice(1)}
    </p>
  );
}

/**
 * What a page shows when the thing it is about could not be loaded. A 404 says what to do, as
 * the server's "not found" cannot: it may exist, but not for this account (nothing tells which).
 */
export function LoadError({ error, what }: { error: unknown; what: string }) {
  if (!(error instanceof ApiError && error.status === 404)) return <ErrorNote error={error} />;
  return (
    <section className="narrow">
      <h1>No such {what}</h1>
      <p role="alert">
        This {what} does not exist, or your account cannot see it: ask an owner of its organization if you should. <Link to="/">Go to your projects</Link>
      </p>
    </section>
  );
}
