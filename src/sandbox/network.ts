import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { z } from "zod";

/**
 * The network of a sandbox. `none`: loopback only. `outbound`: user-mode networking (slirp4netns)
 * behind a firewall inside the sandbox's namespace that refuses the host, its loopback, the
 * control plane, link-local and metadata addresses; with `allow`, everything else not listed too.
 */
export type NetworkPolicy = { mode: "none" } | { mode: "outbound"; allow?: string[] };

/** slirp4netns's fixed addresses (its defaults with `--configure`). */
export const SLIRP = { network: "10.0.2.0/24", gateway: "10.0.2.2", dns: "10.0.2.3", guest: "10.0.2.100" } as const;

export interface Cidr {
  family: 4 | 6;
  address: string;
  prefix: number;
}

/** A parsed allowlist entry: a host name still to resolve, or a CIDR; a port or all ports. */
export type AllowEntry = { host: string; port?: number } | { cidr: Cidr; port?: number };

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

function parsePort(text: string | undefined): number | undefined | Error {
  if (text === undefined) return undefined;
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  return port >= 1 && port <= 65535 ? port : new Error(`"${text}" is not a port (1-65535)`);
}

/** `1.2.3.4`, `1.2.3.0/24`, `2001:db8::/32`: an address with an optional prefix length. */
export function parseCidr(text: string): Cidr | Error {
  const [address = "", prefixText, ...extra] = text.split("/");
  const family = isIP(address);
  if (family === 0 || extra.length > 0) return new Error(`"${text}" is not an IP address or CIDR`);
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return new Error(`"${text}" has a bad prefix length (0-${max})`);
  return { family: family as 4 | 6, address, prefix };
}

/**
 * One allowlist entry: `host:port`, `ip:port`, `[ipv6]:port`, `CIDR`, `CIDR:port`, or a bare IP or
 * host name (every port).
 */
export function parseAllowEntry(text: string): AllowEntry | Error {
  const bad = new Error(`"${text}" is not host:port, ip:port, [ipv6]:port, CIDR or CIDR:port`);
  const match =
    /^\[([^\]]+)\](?::(.*))?$/.exec(text) ?? // [ipv6]:port
    (isIP(text) === 6 ? [text, text] : null) ?? // bare ipv6
    /^([^/]+\/[^:]*)(?::(.*))?$/.exec(text) ?? // CIDR, CIDR:port
    /^([^:/]+)(?::(.*))?$/.exec(text); // host, host:port, ipv4, ipv4:port
  if (!match) return bad;
  const [target, portText] = [match[1]!, match[2]];
  if (text.startsWith("[") && isIP(target) !== 6) return bad;
  const port = parsePort(portText);
  if (port instanceof Error) return port;
  if (isIP(target) !== 0 || target.includes("/")) {
    const cidr = parseCidr(target);
    return cidr instanceof Error ? cidr : { cidr, port };
  }
  if (!HOSTNAME.test(target)) return bad;
  return { host: target.toLowerCase(), port };
}

export const allowEntrySchema = z.string().max(300).superRefine((text, ctx) => {
  const parsed = parseAllowEntry(text);
  if (parsed instanceof Error) ctx.addIssue({ code: "custom", message: parsed.message });
});

export const cidrSchema = z.string().superRefine((text, ctx) => {
  const parsed = parseCidr(text);
  if (parsed instanceof Error) ctx.addIssue({ code: "custom", message: parsed.message });
});

export const networkPolicySchema = z.discriminatedUnion("mode", [
  z.object({ mode: z.literal("none") }).strict(),
  z.object({ mode: z.literal("outbound"), allow: z.array(allowEntrySchema).max(256).optional() }).strict(),
]) satisfies z.ZodType<NetworkPolicy>;

/** An allowlist with its host names resolved (now, at sandbox creation) to addresses. */
export async function resolveAllowlist(entries: string[]): Promise<Array<{ cidr: Cidr; port?: number }>> {
  const resolved: Array<{ cidr: Cidr; port?: number }> = [];
  for (const text of entries) {
    const entry = parseAllowEntry(text);
    if (entry instanceof Error) throw entry;
    if ("cidr" in entry) {
      resolved.push({ cidr: entry.cidr, port: entry.port });
      continue;
    }
    const addresses = await lookup(entry.host, { all: true, verbatim: true });
    if (addresses.length === 0) throw new Error(`${entry.host} has no address`);
    for (const a of addresses) resolved.push({ cidr: { family: a.family as 4 | 6, address: a.address, prefix: a.family === 4 ? 32 : 128 }, port: entry.port });
  }
  return resolved;
}

/**
 * Destinations no sandbox may reach, whatever its allowlist says: loopback other than its own,
 * slirp's gateway (which is the host), link-local and metadata addresses.
 */
export const ALWAYS_DENIED: readonly string[] = [
  "0.0.0.0/8",
  "127.0.0.0/8",
  SLIRP.network,
  "169.254.0.0/16",
  // Cloud metadata services (inside the link-local ranges, listed so that the intent is explicit).
  "169.254.169.254/32",
  "::/128",
  "::1/128",
  "fe80::/10",
  "fd00:ec2::254/128",
];

/** Every address of this machine's interfaces now: a sandbox's traffic leaves from here, so these are the host itself. */
export function hostAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((i) => i.address.split("%")[0]!)
    .filter((a) => isIP(a) !== 0);
}

const nftAddress = (c: Cidr) => `${c.family === 4 ? "ip" : "ip6"} daddr ${c.address}/${c.prefix}`;

/**
 * The nftables ruleset loaded into an outbound sandbox's network namespace (by its supervisor,
 * before slirp4netns attaches). Refusals answer with a TCP reset or an ICMP error so that tools
 * fail at once instead of hanging. Every value in it was parsed as an address or port first.
 */
export function egressRuleset(opts: { denied: Cidr[]; allow?: Array<{ cidr: Cidr; port?: number }> }): string {
  const lines = [
    `oifname "lo" accept`,
    `ip daddr ${SLIRP.dns} meta l4proto { tcp, udp } th dport 53 accept`,
    ...opts.denied.map((c) => `${nftAddress(c)} goto refuse`),
  ];
  if (opts.allow) {
    for (const { cidr, port } of opts.allow) lines.push(port === undefined ? `${nftAddress(cidr)} accept` : `${nftAddress(cidr)} meta l4proto { tcp, udp } th dport ${port} accept`);
    lines.push("goto refuse");
  }
  return [
    "table inet slipway {",
    "  chain output {",
    "    type filter hook output priority filter; policy accept;",
    ...lines.map((l) => `    ${l}`),
    "  }",
    "  chain refuse {",
    "    meta l4proto tcp reject with tcp reset",
    "    reject with icmpx type admin-prohibited",
    "  }",
    "}",
    "",
  ].join("\n");
}

/** The CIDRs refused to every sandbox: the fixed ones, the host's own addresses, and the operator's. */
export function deniedCidrs(operatorDenied: readonly string[] = []): Cidr[] {
  return [...new Set([...ALWAYS_DENIED, ...hostAddresses(), ...operatorDenied])].map((text) => {
    const cidr = parseCidr(text);
    if (cidr instanceof Error) throw cidr;
    return cidr;
  });
}
