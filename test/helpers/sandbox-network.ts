import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Sandbox } from "../../src/sandbox/backend.js";
import type { RunnerInput, RunnerOutput } from "./netns-runner.js";

// Network helpers for the sandbox network tests. Every packet they cause goes to loopback, to an
// address of this machine's own interfaces, or into network namespaces they create themselves.

export type Target = [host: string, port: number];
/** `banner <text>` when the listener answered, `connected` without an answer, `failed <error>` otherwise. */
export type ProbeResults = Record<string, string>;

const key = ([host, port]: Target) => `${host}:${port}`;

// Connects to each target from inside the sandbox with a 2 s limit, so a silent drop cannot hang a test.
const PROBE = `
import json, socket, sys
out = {}
for host, port in json.loads(sys.argv[1]):
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.settimeout(2)
            data = s.recv(200).decode().strip()
            out[f"{host}:{port}"] = f"banner {data}" if data else "connected"
    except OSError as e:
        out[f"{host}:{port}"] = f"failed {type(e).__name__}"
print(json.dumps(out))
`;

export async function probe(s: Sandbox, targets: Target[]): Promise<ProbeResults> {
  let out = "";
  let err = "";
  const status = await s.exec({ argv: ["python3", "-c", PROBE, JSON.stringify(targets)], timeoutMs: 10_000 + targets.length * 5_000 }, { stdout: (d) => (out += d), stderr: (d) => (err += d) });
  if (status.code !== 0) throw new Error(`probe failed (${status.code}): ${err}`);
  return JSON.parse(out) as ProbeResults;
}

/** Runs a shell script in the sandbox; exit code and combined output. */
export async function sh(s: Sandbox, script: string, timeoutMs = 20_000): Promise<{ code: number | null; out: string }> {
  let out = "";
  const status = await s.exec({ argv: ["/bin/sh", "-c", script], timeoutMs }, { stdout: (d) => (out += d), stderr: (d) => (out += d) });
  return { code: status.code, out };
}

export const reached = (results: ProbeResults, target: Target) => results[key(target)]?.startsWith("banner ") ?? false;

/** A TCP server in this process that greets every connection with `hello <name>` and remembers it. */
export interface BannerServer {
  port: number;
  hits: string[];
  close(): Promise<void>;
}

export async function bannerServer(host: string, name: string): Promise<BannerServer> {
  const hits: string[] = [];
  const server: Server = createServer((c) => {
    hits.push(`${c.remoteAddress}`);
    c.end(`hello ${name}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as { port: number }).port;
  return { port, hits, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** Connects from this process (the host side) and returns the greeting: the control that a listener is up. */
export function greet(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = "";
    const socket = connect({ host, port, timeout: 2_000 });
    socket.on("data", (d: Buffer) => (data += d.toString()));
    socket.on("end", () => resolve(data.trim()));
    socket.on("timeout", () => socket.destroy(new Error("timeout")));
    socket.on("error", reject);
  });
}

/** Host pids of slirp4netns processes. */
export function slirpPids(): number[] {
  return readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").startsWith("slirp4netns\0");
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** True while `pid` is a live (not yet reaped, not zombie) process. */
export function isLive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/**
 * Two network namespaces made for a test, joined by a veth pair and connected to nothing else:
 * `runner` (198.51.100.1, default route into `services`) where a whole runner process runs, and
 * `services` (198.51.100.2) holding listeners on test addresses, among them the metadata address.
 * Whatever a sandbox of that runner sends can only end up in `services` or be dropped.
 */
export interface Lab {
  runner: string;
  services: string;
  runnerAddress: string;
  destroy(): void;
}

export const LAB = { runnerAddress: "198.51.100.1", servicesAddress: "198.51.100.2", allowed: "203.0.113.10", other: "203.0.113.11", dns: "203.0.113.53", metadata: "169.254.169.254" } as const;

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });

export function createLab(): Lab {
  const tag = randomBytes(3).toString("hex");
  const runner = `slw-r-${tag}`;
  const services = `slw-s-${tag}`;
  ip("netns", "add", runner);
  ip("netns", "add", services);
  const lab: Lab = {
    runner,
    services,
    runnerAddress: LAB.runnerAddress,
    destroy() {
      for (const ns of [runner, services]) {
        try {
          ip("netns", "del", ns);
        } catch {
          // never made
        }
      }
    },
  };
  try {
    // The pair is made inside the test namespace, so no interface ever appears in the host's.
    ip("-n", runner, "link", "add", `slw${tag}r`, "type", "veth", "peer", "name", `slw${tag}s`);
    ip("-n", runner, "link", "set", `slw${tag}s`, "netns", services);
    ip("-n", runner, "addr", "add", `${LAB.runnerAddress}/24`, "dev", `slw${tag}r`);
    ip("-n", services, "addr", "add", `${LAB.servicesAddress}/24`, "dev", `slw${tag}s`);
    for (const [ns, dev] of [[runner, `slw${tag}r`], [services, `slw${tag}s`], [runner, "lo"], [services, "lo"]] as const) ip("-n", ns, "link", "set", dev, "up");
    ip("-n", runner, "route", "add", "default", "via", LAB.servicesAddress);
    for (const a of [LAB.allowed, LAB.other, LAB.dns, LAB.metadata]) ip("-n", services, "addr", "add", `${a}/32`, "dev", "lo");
    return lab;
  } catch (err) {
    lab.destroy();
    throw err;
  }
}

/** Servers run in a namespace, in a process of their own; `hits()` lists what they were asked. */
export interface NetnsServers {
  hits(): string[];
  stop(): void;
}

async function startInNetns(netns: string, script: string, arg: unknown): Promise<NetnsServers> {
  const child: ChildProcess = spawn("nsenter", [`--net=/run/netns/${netns}`, "--", process.execPath, "-e", script, JSON.stringify(arg)], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("listening")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`servers in ${netns} exited (${code})`)));
  });
  return {
    hits: () => out.split("\n").filter((l) => l.startsWith("hit ")).map((l) => l.slice(4)),
    stop: () => child.kill("SIGKILL"),
  };
}

const LISTENERS = `
const net = require("node:net");
const targets = JSON.parse(process.argv[1]);
let up = 0;
for (const [host, port] of targets) {
  net.createServer((c) => {
    console.log("hit " + host + ":" + port);
    c.end("hello " + host + ":" + port + "\\n");
  }).listen(port, host, () => { if (++up === targets.length) console.log("listening"); });
}
`;

/** TCP listeners that greet with `hello <host>:<port>`; a hit is `<host>:<port>`. */
export const startListeners = (netns: string, targets: Target[]) => startInNetns(netns, LISTENERS, targets);

// The smallest DNS server that will do: A records for the names it knows, NXDOMAIN for others.
const DNS = `
const dgram = require("node:dgram");
const { address, records } = JSON.parse(process.argv[1]);
const sock = dgram.createSocket("udp4");
sock.on("message", (msg, peer) => {
  const labels = [];
  let i = 12;
  while (msg[i] !== 0) { labels.push(msg.toString("latin1", i + 1, i + 1 + msg[i])); i += msg[i] + 1; }
  const name = labels.join(".").toLowerCase();
  const ip = records[name];
  const answer = ip !== undefined && msg.readUInt16BE(i + 1) === 1;
  const header = Buffer.from(msg.subarray(0, 12));
  header.writeUInt16BE(0x8180 | (ip === undefined ? 3 : 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answer ? 1 : 0, 6);
  header.writeUInt32BE(0, 8);
  const parts = [header, msg.subarray(12, i + 5)];
  if (answer) parts.push(Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...ip.split(".").map(Number)]));
  sock.send(Buffer.concat(parts), peer.port, peer.address);
  console.log("hit " + name);
});
sock.bind(53, address, () => console.log("listening"));
`;

/** A DNS server on `address`:53 answering `records` (name → IPv4); a hit is the name asked. */
export const startDns = (netns: string, address: string, records: Record<string, string>) => startInNetns(netns, DNS, { address, records });

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "../..");
// A plain Node process loading the runner's TypeScript through Vite (as vitest does), so the child is the real backend.
const BOOTSTRAP = `
import { runnerImport } from "vite";
try {
  const { module } = await runnerImport(process.argv[1]);
  const out = await module.main(JSON.parse(process.argv[2]));
  console.log("RESULT " + JSON.stringify(out));
  process.exit(0);
} catch (err) {
  console.error(err);
  process.exit(1);
}
`;

/**
 * Runs a whole runner (BwrapBackend, its sandboxes and their slirp4netns) inside a test namespace.
 * `resolvConf` is the runner's /etc/resolv.conf (bound over the real one in a mount namespace of
 * its own), so that its DNS, and its sandboxes' through slirp, goes to a server in the lab.
 */
export const runInNetns = (netns: string, input: RunnerInput, resolvConf?: string): Promise<RunnerOutput> => runModuleInNetns(netns, path.join(here, "netns-runner.ts"), input, { resolvConf });

/** Runs `main(input)` of a TypeScript module in a process of its own inside a test namespace, and returns its result. */
export function runModuleInNetns<I, O>(netns: string, modulePath: string, input: I, opts: { resolvConf?: string; timeoutMs?: number } = {}): Promise<O> {
  const runner = ["nsenter", `--net=/run/netns/${netns}`, "--", process.execPath, "--input-type=module", "-e", BOOTSTRAP, modulePath, JSON.stringify(input)];
  const [command, ...args] = opts.resolvConf ? ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', opts.resolvConf, ...runner] : runner;
  return new Promise((resolve, reject) => {
    execFile(command!, args, { cwd: repoRoot, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 ** 2 }, (err, stdout, stderr) => {
      const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
      if (err || !line) reject(new Error(`${path.basename(modulePath)} in ${netns} failed: ${err?.message ?? ""}\n${stderr}`));
      else resolve(JSON.parse(line.slice("RESULT ".length)) as O);
    });
  });
}
