import { createHash } from "node:crypto";
import { z } from "zod";

/** Host key types OpenSSH knows (ssh-dss is gone from it, so it is refused here too). */
export const HOST_KEY_TYPES = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "ssh-rsa",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
] as const;

const MARKERS = ["@cert-authority", "@revoked"];
export const KNOWN_HOSTS_MAX = 64 * 1024;

export interface HostKeyEntry {
  line: number;
  marker?: string;
  hosts: string[];
  type: string;
  /** The key blob, base64. */
  key: string;
}

/** What is wrong with one line of known_hosts text, or its entry (undefined for blank and comment lines). */
function parseLine(text: string, line: number): HostKeyEntry | string | undefined {
  const fields = text.trim().split(/\s+/);
  if (fields[0] === "" || fields[0]!.startsWith("#")) return undefined;
  const marker = fields[0]!.startsWith("@") ? fields.shift() : undefined;
  if (marker !== undefined && !MARKERS.includes(marker)) return `the marker ${marker} is not one of ${MARKERS.join(", ")}`;
  const [hosts, type, key] = fields;
  if (!hosts || !type || !key) return 'a known_hosts line is "host[,host…] key-type base64-key [comment]", e.g. as `ssh-keyscan host` prints it';
  if (!/^[\x21-\x7e]+$/.test(hosts)) return "the host names have characters a host name does not";
  if (!(HOST_KEY_TYPES as readonly string[]).includes(type)) return `"${type.slice(0, 40)}" is not an SSH host key type (${HOST_KEY_TYPES.join(", ")})`;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key) || key.length % 4 !== 0) return "the key is not base64";
  // The blob starts with its own type, length-prefixed: a key pasted under the wrong type, or cut short, is caught here.
  const blob = Buffer.from(key, "base64");
  const named = blob.length >= 4 ? blob.subarray(4, 4 + blob.readUInt32BE(0)).toString("latin1") : "";
  if (named !== type) return `the key is not a ${type} key`;
  return { line, ...(marker !== undefined && { marker }), hosts: hosts.split(","), type, key };
}

/** The entries of known_hosts text, or the problems of its lines ("line N: …"). */
export function parseKnownHosts(text: string): { entries: HostKeyEntry[]; problems: string[] } {
  const entries: HostKeyEntry[] = [];
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((l, i) => {
    const parsed = parseLine(l, i + 1);
    if (typeof parsed === "string") problems.push(`line ${i + 1}: ${parsed}`);
    else if (parsed) entries.push(parsed);
  });
  if (problems.length === 0 && entries.length === 0) problems.push("no host key in it: give lines as `ssh-keyscan host` prints them");
  return { entries, problems };
}

/** known_hosts text as OpenSSH reads it (a project's pinned git host keys), checked line by line. */
export const knownHostsSchema = z
  .string()
  .max(KNOWN_HOSTS_MAX)
  .superRefine((text, ctx) => {
    for (const message of parseKnownHosts(text).problems.slice(0, 5)) ctx.addIssue({ code: "custom", message });
  });

/** The stored form: the entries only, one a line, comments and blank lines dropped. */
export const normalizeKnownHosts = (text: string): string =>
  parseKnownHosts(text)
    .entries.map((e) => [e.marker, e.hosts.join(","), e.type, e.key].filter(Boolean).join(" "))
    .join("\n") + "\n";

/** `host… type SHA256:…` per entry, as `ssh-keygen -l` names keys: for the audit log. */
export const fingerprints = (text: string): string[] =>
  parseKnownHosts(text).entries.map((e) => `${e.hosts.join(",")} ${e.type} SHA256:${createHash("sha256").update(Buffer.from(e.key, "base64")).digest("base64").replace(/=+$/, "")}`);

/**
 * How known_hosts names the host of an SSH repository URL: `host`, or `[host]:port` off port 22
 * (ssh://[user@]host[:port]/path, or scp-like [user@]host:path).
 */
export function knownHostsName(url: string): string | undefined {
  const m = url.includes("://") ? /^ssh:\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?\//.exec(url) : /^(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+):/.exec(url);
  if (!m) return undefined;
  const host = m[1]!.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  const port = url.startsWith("ssh://") ? m[2] : undefined;
  return port && port !== "22" ? `[${host}]:${port}` : host;
}
