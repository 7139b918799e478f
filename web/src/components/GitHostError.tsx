import { useQuery } from "@tanstack/react-query";
import { get } from "../api";
import { ErrorNote } from "./ErrorNote";

/**
 * Why a git host sign-in or connection failed. The redirect carries only an id, so a crafted link
 * cannot make this page say anything Slipway did not write; the text comes from the server.
 */
export function GitHostError({ id }: { id: string | null }) {
  const note = useQuery({
    queryKey: ["scm-error", id],
    queryFn: () => get<{ message: string }>(`/scm/errors/${encodeURIComponent(id!)}`),
    enabled: id !== null,
    retry: false,
    staleTime: Infinity,
  });
  if (id === null || note.isPending) return null;
  return <ErrorNote error={note.data?.message ?? "signing in with the git host did not work: start again"} />;
}
