import { spawn } from "node:child_process";
import { apiToken, callApi, CliUsageError, serverUrl } from "./api-client.js";

export const wsHelp = `slipway ws — workspaces on a Slipway server

Usage:
  slipway ws open REPOSITORY [--ref REF] [--push]
                                              # a project's id or repository URL; waits until it runs;
                                              # --push: git in it may push with the project's deploy key
  slipway ws list
  slipway ws stop ID                          # archives /workspace (encrypted), then stops
  slipway ws start ID                         # resumes a stopped workspace
  slipway ws ssh [--server URL] ID [SSH OPTION…] [-- COMMAND…]
  slipway ws snapshot ID [--name NAME]
  slipway ws share ID [--off]                 # others may ask to join; you approve each
  slipway ws share ID --approve USER | --deny USER

The server comes from --server or SLIPWAY_SERVER, the API token (scopes workspaces:read and
workspaces:write) from SLIPWAY_TOKEN or stdin. ssh needs a key registered in your account.

Examples:
  export SLIPWAY_SERVER=https://ci.example.com SLIPWAY_TOKEN=…
  slipway ws open prj_123 --ref main
  slipway ws ssh ws_abc -- make test
  slipway ws ssh ws_abc -L 3000:localhost:3000 -N`;

export interface WsFlags {
  server?: string;
  ref?: string;
  push?: boolean;
  name?: string;
  off?: boolean;
  approve?: string;
  deny?: string;
}

interface Workspace {
  id: string;
  state: string;
  reason: string | null;
  repositoryUrl: string;
  ref: string | null;
  lastActivityAt: string;
}

const NOT_FOUND = "no such workspace of yours; list them with: slipway ws list";
const WAIT_MS = 30 * 60_000;

/** `slipway ws …`; returns the exit code. */
export async function wsCommand(args: string[], flags: WsFlags, write = (text: string) => process.stdout.write(text), progress = (text: string) => process.stderr.write(text)): Promise<number> {
  const [sub, id, ...rest] = args;
  const server = serverUrl(flags.server ?? process.env.SLIPWAY_SERVER);
  const token = await apiToken();
  const api = (route: string, call: Parameters<typeof callApi>[3]) => callApi(server, token, route, call);
  const need = (what: string) => {
    if (!id || rest.length > 0) throw new CliUsageError(`usage: slipway ws ${sub} ${what}`);
    return encodeURIComponent(id);
  };
  switch (sub) {
    case "open": {
      need("REPOSITORY [--ref REF] [--push]");
      const ws = (await api("/workspaces", { body: { repository: id, ...(flags.ref && { ref: flags.ref }), ...(flags.push && { pushAccess: true }) }, what: "open workspaces of that project", notFound: "no project of yours has this repository; name a project by its id (slipway ws open prj_…)" })) as Workspace;
      progress(`${ws.id}: ${ws.state}\n`);
      const done = await follow(api, ws.id, progress);
      if (done.state !== "running") {
        progress(`${ws.id} failed: ${done.reason ?? "no reason given"}\n`);
        return 1;
      }
      const { sshPort } = (await api("/meta", { what: "read the server's facts", notFound: "not a Slipway server" })) as { sshPort: number | null };
      write(`${ws.id}\n`);
      progress(`running. Shell: ${sshPort ? `ssh -p ${sshPort} ${ws.id}@${new URL(server).hostname}` : "open it in the browser"} (or: slipway ws ssh ${ws.id})\n`);
      return 0;
    }
    case "list": {
      if (id) throw new CliUsageError("usage: slipway ws list");
      const { workspaces } = (await api("/workspaces", { what: "list your workspaces", notFound: NOT_FOUND })) as { workspaces: Workspace[] };
      for (const ws of workspaces) write(`${ws.id}\t${ws.state}\t${ws.repositoryUrl}${ws.ref ? `@${ws.ref}` : ""}\tlast used ${ws.lastActivityAt}\n`);
      return 0;
    }
    case "stop": {
      const ws = (await api(`/workspaces/${need("ID")}/stop`, { body: {}, what: "stop it", notFound: NOT_FOUND })) as Workspace;
      progress(`${ws.id}: ${ws.state}\n`);
      return ws.state === "stopped" ? 0 : 1;
    }
    case "start": {
      const ws = (await api(`/workspaces/${need("ID")}/start`, { body: {}, what: "start it", notFound: NOT_FOUND })) as Workspace;
      const done = await follow(api, ws.id, progress);
      if (done.state !== "running") progress(`${ws.id} failed: ${done.reason ?? "no reason given"}\n`);
      return done.state === "running" ? 0 : 1;
    }
    case "snapshot": {
      const snap = (await api(`/workspaces/${need("ID [--name NAME]")}/snapshots`, { body: flags.name ? { name: flags.name } : {}, what: "snapshot it", notFound: NOT_FOUND })) as { id: string };
      write(`${snap.id}\n`);
      progress(`anyone who may open workspaces of the project opens it with: POST /api/v1/snapshots/${snap.id}/open\n`);
      return 0;
    }
    case "share": {
      const ws = need("ID [--off | --approve USER | --deny USER]");
      const user = flags.approve ?? flags.deny;
      if (user) {
        await api(`/workspaces/${ws}/guests/${encodeURIComponent(user)}`, { method: "PUT", body: { approve: flags.approve !== undefined }, what: "decide on guests", notFound: "no such request to join; list them: GET /api/v1/workspaces/<id>/guests" });
        return 0;
      }
      await api(`/workspaces/${ws}/sharing`, { method: "PUT", body: { shared: !flags.off }, what: "share it", notFound: NOT_FOUND });
      progress(flags.off ? "not shared any more; guests are out\n" : `shared: others ask to join with POST ${server}/api/v1/workspaces/${id}/join, and you approve each (slipway ws share ${id} --approve USER)\n`);
      return 0;
    }
    default:
      throw new CliUsageError(`unknown command: slipway ws ${sub ?? ""}\n\n${wsHelp}`);
  }
}

/** Waits for a workspace to settle, a progress line at each change of state. */
async function follow(api: (route: string, call: Parameters<typeof callApi>[3]) => Promise<unknown>, id: string, progress: (text: string) => void): Promise<Workspace> {
  const deadline = Date.now() + WAIT_MS;
  let last = "";
  for (;;) {
    const ws = (await api(`/workspaces/${encodeURIComponent(id)}`, { what: "read it", notFound: NOT_FOUND })) as Workspace;
    if (ws.state !== last) progress(`${id}: ${(last = ws.state)}\n`);
    if (["running", "failed", "stopped"].includes(ws.state)) return ws;
    if (Date.now() > deadline) throw new Error(`${id} is still ${ws.state} after ${WAIT_MS / 60_000} minutes; look at it with: slipway ws list`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * `slipway ws ssh ID [SSH OPTION…] [-- COMMAND…]`: the system's ssh to the server's SSH gateway,
 * with the options given, then the command, if any. Its exit code is ssh's.
 */
export async function wsSsh(argv: string[], server: string | undefined): Promise<number> {
  const [id, ...rest] = argv;
  if (!id || id.startsWith("-")) throw new CliUsageError("usage: slipway ws ssh ID [SSH OPTION…] [-- COMMAND…]");
  const origin = serverUrl(server ?? process.env.SLIPWAY_SERVER);
  const token = await apiToken();
  const { sshPort } = (await callApi(origin, token, "/meta", { what: "read the server's facts", notFound: "not a Slipway server" })) as { sshPort: number | null };
  if (!sshPort) throw new Error("this server runs no SSH gateway (SLIPWAY_SSH_GATEWAY=false); use the browser's terminal");
  const split = rest.indexOf("--");
  const options = split === -1 ? rest : rest.slice(0, split);
  const command = split === -1 ? [] : rest.slice(split + 1);
  const child = spawn("ssh", ["-p", String(sshPort), ...options, `${id}@${new URL(origin).hostname}`, ...command], { stdio: "inherit" });
  return new Promise((resolve, reject) => {
    child.once("error", (err) => reject(new Error(`ssh could not run (${err.message}); install the OpenSSH client`)));
    child.once("close", (code) => resolve(code ?? 255));
  });
}
