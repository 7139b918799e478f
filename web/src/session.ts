import { useQuery, useQueryClient } from "@tanstack/react-query";
import { ApiError, api, setCsrfToken } from "./api";
import type { Session, User } from "./types";

export const SESSION_KEY = ["session"] as const;

/** Who is signed in (null when nobody is), from GET /session, which also hands out the CSRF token. */
export function useSession(): { user: User | null; loading: boolean } {
  const query = useQuery({
    queryKey: SESSION_KEY,
    queryFn: async () => {
      try {
        const session = await api<Session>("GET", "/session");
        setCsrfToken(session.csrfToken);
        return session.user;
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) return null;
        throw err;
      }
    },
    staleTime: Infinity,
  });
  return { user: query.data ?? null, loading: query.isPending };
}

/** After a sign-in: the new session's user and token, without asking again. */
export function useSessionStarted(): (session: Session) => void {
  const client = useQueryClient();
  return (session) => {
    setCsrfToken(session.csrfToken);
    client.clear();
    client.setQueryData(SESSION_KEY, session.user);
  };
}

/**
 * Signs out and forgets everything the page had loaded for that user. Only the server's word
 * (or a session it no longer knows) counts: after a network error the cookie still works, so the
 * error is thrown for the caller to show rather than pretend the user left.
 */
export function useSignOut(): () => Promise<void> {
  const client = useQueryClient();
  return async () => {
    await api("DELETE", "/session").catch((err: unknown) => {
      if (!(err instanceof ApiError && err.status === 401)) throw err;
    });
    setCsrfToken(null);
    client.clear();
    client.setQueryData(SESSION_KEY, null);
  };
}
