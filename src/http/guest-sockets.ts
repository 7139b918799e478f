import type { WebSocket } from "ws";
import type { Services } from "../services.js";
import { GUEST_ENDED } from "../workspaces/sharing.js";

/**
 * Ties a WebSocket into a workspace to its user's access as a guest: once the owner stops sharing
 * or sends them away, `cut` runs (from then on, nothing that arrives may pass), the socket says
 * why as it closes, and is cut off a moment later whatever the other side does (a close handshake
 * may take 30 s). Access was checked before the socket opened; a guest sent away in
 * between is caught by a second look once the watch is on. `onlyAsGuest`: the socket was let in
 * as owner or guest alone (terminals), so anyone who is neither now is cut; otherwise (a public
 * port) they stay.
 */
export async function watchGuestAccess(services: Pick<Services, "sharing" | "workspaces">, workspaceId: string, userId: string | undefined, socket: WebSocket, cut: () => void, onlyAsGuest: boolean): Promise<void> {
  if (!userId) return;
  const end = () => {
    cut();
    socket.close(4403, GUEST_ENDED);
    setTimeout(() => socket.terminate(), 1_000).unref();
  };
  const unwatch = services.sharing.onAccessEnded(workspaceId, userId, end);
  socket.once("close", unwatch);
  const owner = (await services.workspaces.ownership(workspaceId))?.ownerId;
  if (owner === userId) return unwatch();
  if (onlyAsGuest && !(await services.sharing.isGuest(workspaceId, userId))) end();
}
