import { useQueryClient } from "@tanstack/react-query";
import { useEffect } from "react";
import { isResting } from "../queries";
import type { Workspace, WorkspaceDetail } from "../types";

/**
 * Follows a workspace's state over the API's Server-Sent Events while it is on its way somewhere,
 * into the query the page shows. The stream ends when the workspace rests; the source is closed
 * then, or the browser would open it again.
 */
export function useWorkspaceEvents(id: string, following: boolean): void {
  const client = useQueryClient();
  useEffect(() => {
    if (!following) return;
    const source = new EventSource(`/api/v1/workspaces/${encodeURIComponent(id)}/events`);
    let state: string | undefined;
    source.addEventListener("workspace", (e) => {
      const ws = JSON.parse((e as MessageEvent<string>).data) as Workspace;
      client.setQueryData<WorkspaceDetail>(["workspace", id], (old) => old && { ...old, ...ws });
      // A new state is a new transition, with its time: the page's list of them is asked for again.
      if (ws.state !== state) void client.invalidateQueries({ queryKey: ["workspace", id] });
      state = ws.state;
      if (isResting(ws.state)) source.close();
    });
    return () => source.close();
  }, [id, following, client]);
}
