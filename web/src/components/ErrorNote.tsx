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
