import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { generateEd25519KeyPair } from "../crypto/ssh-keys.js";
import type { Services } from "../services.js";
import { SshGateway } from "./ssh-gateway.js";

/**
 * Starts the SSH gateway of `slipway serve` with its host key (made on first start, kept sealed
 * in the secret box, so that clients see the same key after a restart).
 */
export async function startSshGateway(services: Services, port: number, host: string, log: Logger): Promise<{ gateway: SshGateway; address: AddressInfo }> {
  const slot = services.secrets.systemSlot("ssh-host-key");
  let hostKey = await slot.get();
  if (!hostKey) {
    hostKey = generateEd25519KeyPair("slipway-ssh-gateway").privateKey;
    await slot.put(hostKey);
  }
  const { projects, store } = services;
  const gateway = new SshGateway({
    workspaces: services.workspaces,
    host: services.workspaceHost,
    keys: services.sshKeys,
    audit: services.audit,
    hostKey,
    log,
    mayUse: services.mayOpenWorkspaces,
    sharing: services.sharing,
    orgOf: async (projectId) => (await projects.find(store.db, projectId))?.orgId ?? null,
  });
  const address = await gateway.listen(port, host);
  services.setSshPort(address.port);
  return { gateway, address };
}
