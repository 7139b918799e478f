import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { isIPv4 } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSettings, SettingsError } from "../src/config/settings.js";
import type { Sandbox } from "../src/sandbox/backend.js";
import { BwrapBackend, type BwrapSandbox } from "../src/sandbox/bwrap-backend.js";
import { hostAddresses, networkPolicySchema, resolveAllowlist, SLIRP, type NetworkPolicy } from "../src/sandbox/network.js";
import { anonymous, startHarness } from "./helpers/harness.js";
import { bannerServer, createLab, greet, isLive, LAB, probe, reached, runInNetns, sh, slirpPids, startListeners, startDns, type Lab, type NetnsServers, type ProbeResults, type Target } from "./helpers/sandbox-network.js";

// Outbound networking of sandboxes (slirp4netns behind an nftables firewall in the sandbox's own
// namespace). Packets in these tests go only to loopback, to this machine's own addresses, or into
// network namespaces the tests make: a sandbox here is never pointed at any other address.

const outbound = (allow?: string[]): NetworkPolicy => ({ mode: "outbound", ...(allow && { allow }) });
const isRoot = process.getuid?.() === 0;

let backend: BwrapBackend;
let runtimeDir: string;
const open: Sandbox[] = [];

beforeAll(() => {
  runtimeDir = mkdtempSync(path.join(tmpdir(), "slipway-sbx-net-test-"));
  backend = new BwrapBackend({ runtimeDir });
});
afterAll(async () => {
  await Promise.all(open.map((s) => s.destroy()));
  rmSync(runtimeDir, { recursive: true, force: true });
});

async function sandbox(network?: NetworkPolicy): Promise<BwrapSandbox> {
  const s = await backend.create({ image: { kind: "host" }, network });
  open.push(s);
  return s;
}

function expectAllFailed(results: ProbeResults): void {
  for (const [target, result] of Object.entries(results)) expect(result, target).toMatch(/^failed /);
}

/** This machine's own IPv4 addresses other than loopback and link-local: connecting to them never leaves it. */
const ownRoutableV4 = () => hostAddresses().filter((a) => isIPv4(a) && !a.startsWith("127.") && !a.startsWith("169.254."));

describe("P08: egress allowlists are validated", () => {
  it("P08: accepts host:port, ip:port, [ipv6]:port, CIDR and CIDR:port; refuses anything else", () => {
    const good = ["git.example.com:22", "registry.npmjs.org", "192.0.2.7:5432", "[2001:db8::1]:443", "2001:db8::1", "203.0.113.0/24", "203.0.113.0/24:443", "2001:db8::/32", "2001:db8::/32:443"];
    for (const entry of good) expect(networkPolicySchema.safeParse(outbound([entry])).success, entry).toBe(true);
    const bad = ["", "host:0", "host:65536", "host:http", "10.0.0.0/33", "2001:db8::/129", "[192.0.2.1]:80", "under_score:80", "a:b:c", "10.0.0.1/8/8", "http://example.com"];
    for (const entry of bad) expect(networkPolicySchema.safeParse(outbound([entry])).success, entry).toBe(false);
    expect(networkPolicySchema.safeParse({ mode: "bridge" }).success).toBe(false);
    expect(networkPolicySchema.safeParse({ mode: "none", allow: ["192.0.2.7:1"] }).success).toBe(false);
  });

  it("P08: a bad policy is refused at creation, before anything starts", async () => {
    const before = slirpPids();
    await expect(backend.create({ image: { kind: "host" }, network: outbound(["192.0.2.7:99999"]) })).rejects.toThrow(/bad network policy/);
    expect(slirpPids().filter((p) => !before.includes(p))).toEqual([]);
  });

  it("P08: host names are resolved when the sandbox is made", async () => {
    // localhost comes from /etc/hosts: resolving it sends nothing anywhere.
    expect(await resolveAllowlist(["localhost:8080", "192.0.2.0/24"])).toEqual(
      expect.arrayContaining([{ cidr: { family: 4, address: "127.0.0.1", prefix: 32 }, port: 8080 }, { cidr: { family: 4, address: "192.0.2.0", prefix: 24 }, port: undefined }]),
    );
  });
});

describe("sandbox networks on this machine", () => {
  it("without a policy a sandbox has loopback only and no slirp4netns; with outbound it has slirp's tap", async () => {
    const before = slirpPids();
    const isolated = await sandbox();
    expect((await sh(isolated, "ip -br addr")).out.trim().split("\n").map((l) => l.split(/\s+/)[0])).toEqual(["lo"]);
    expect(slirpPids().filter((p) => !before.includes(p))).toEqual([]);
    const connected = await sandbox(outbound());
    expect((await sh(connected, "ip -br addr")).out).toContain(`${SLIRP.guest}/24`);
    expect((await sh(connected, "cat /etc/resolv.conf")).out.trim()).toBe(`nameserver ${SLIRP.dns}`);
  });

  it("destroy leaves no slirp4netns process behind", async () => {
    const before = slirpPids();
    const s = await sandbox(outbound());
    const mine = slirpPids().filter((p) => !before.includes(p));
    expect(mine).toHaveLength(1);
    expect(isLive(mine[0]!)).toBe(true);
    await s.destroy();
    expect(mine.filter(isLive)).toEqual([]);
  });

  it("P09: the host's loopback services and the runner's own addresses are unreachable", async () => {
    const server = await bannerServer("0.0.0.0", "host");
    try {
      const own = ownRoutableV4();
      // Control: the service answers on loopback and on every one of this machine's addresses.
      for (const address of ["127.0.0.1", ...own]) expect(await greet(address, server.port)).toBe("hello host");
      const controls = server.hits.length;
      // 127.0.0.1 inside is the sandbox's own loopback; 10.0.2.2 is slirp's way to the host's.
      const targets: Target[] = ["127.0.0.1", SLIRP.gateway, ...own].map((a) => [a, server.port]);
      for (const network of [undefined, outbound(), outbound([`${SLIRP.gateway}:${server.port}`, ...own.map((a) => `${a}:${server.port}`)])]) {
        expectAllFailed(await probe(await sandbox(network), targets));
      }
      expect(server.hits.length).toBe(controls);
    } finally {
      await server.close();
    }
  });

  it("P09: a listener in another sandbox is unreachable by any address a sandbox can name", async () => {
    const [a, b] = await Promise.all([sandbox(outbound()), sandbox(outbound())]);
    const port = 7000;
    const listener = ["import socket", "s = socket.socket()", `s.bind(("0.0.0.0", ${port}))`, "s.listen()", 'print("listening", flush=True)', "while True:", "    c, peer = s.accept()", '    print("hit", peer[0], flush=True)', '    c.sendall(b"hello A\\n")', "    c.close()"].join("\n");
    let log = "";
    const listening = new Promise<void>((resolve) => {
      const collect = (d: Buffer) => {
        log += d.toString();
        if (log.includes("listening")) resolve();
      };
      void a.exec({ argv: ["python3", "-c", listener], timeoutMs: 60_000 }, { stdout: collect });
    });
    await listening;
    const targets: Target[] = ["127.0.0.1", SLIRP.guest, SLIRP.gateway, ...ownRoutableV4()].map((h) => [h, port]);
    // Control: A reaches its own listener by its own addresses.
    const fromA = await probe(a, [["127.0.0.1", port], [SLIRP.guest, port]]);
    expect(Object.values(fromA)).toEqual(["banner hello A", "banner hello A"]);
    expectAllFailed(await probe(b, targets));
    expect(log.split("\n").filter((l) => l.startsWith("hit"))).toHaveLength(2);
    await a.destroy();
  });

  it("P09: the firewall holds the fixed refusals: loopback, slirp's host side, link-local and metadata addresses, this host's addresses", async () => {
    const rules = await (await sandbox(outbound())).firewallRules();
    for (const expected of ["ip daddr 127.0.0.0/8 goto refuse", "ip daddr 10.0.2.0/24 goto refuse", "ip daddr 169.254.0.0/16 goto refuse", "ip daddr 169.254.169.254 goto refuse", "ip6 daddr fe80::/10 goto refuse", "ip6 daddr fd00:ec2::254 goto refuse", "ip6 daddr ::1 goto refuse"]) {
      expect(rules).toContain(expected);
    }
    for (const address of ownRoutableV4()) expect(rules).toContain(`ip daddr ${address} goto refuse`);
    expect(rules).toMatch(/oifname "lo" accept[\s\S]*ip daddr 10\.0\.2\.3 meta l4proto \{ tcp, udp \} th dport 53 accept/);
  });
});

// A whole runner in a network namespace of the test's own, whose only way out leads to a second
// namespace with listeners on test addresses, among them the cloud metadata address.
describe.runIf(isRoot)("P08 / P09: a runner in a test network namespace", () => {
  let lab: Lab;
  let listeners: NetnsServers;
  let dns: NetnsServers;
  let resolvConf: string;
  const allowed8080: Target = [LAB.allowed, 8080];
  const allowed8081: Target = [LAB.allowed, 8081];
  const other8080: Target = [LAB.other, 8080];
  const metadata: Target = [LAB.metadata, 80];
  const hitsOf = (t: Target) => listeners.hits().filter((h) => h === `${t[0]}:${t[1]}`).length;

  beforeAll(async () => {
    lab = createLab();
    listeners = await startListeners(lab.services, [allowed8080, allowed8081, other8080, metadata]);
    dns = await startDns(lab.services, LAB.dns, { "allowed.test": LAB.allowed });
    resolvConf = path.join(runtimeDir, "resolv.conf");
    writeFileSync(resolvConf, `nameserver ${LAB.dns}\n`);
  });
  afterAll(() => {
    listeners?.stop();
    dns?.stop();
    lab?.destroy();
  });

  it("P09: the metadata address is never reached, even when allowlisted, while an allowed address beside it is", async () => {
    const before = hitsOf(allowed8080);
    const { results } = await runInNetns(lab.runner, {
      scenarios: [
        { network: outbound(), probes: [metadata, allowed8080] },
        { network: outbound([`${LAB.metadata}:80`, `${LAB.allowed}:8080`]), probes: [metadata, allowed8080] },
      ],
    });
    for (const { probes } of results) {
      expect(probes[`${LAB.metadata}:80`]).toBe("failed ConnectionRefusedError");
      expect(probes[`${LAB.allowed}:8080`]).toBe(`banner hello ${LAB.allowed}:8080`);
    }
    expect(hitsOf(metadata)).toBe(0);
    expect(hitsOf(allowed8080)).toBe(before + 2);
  });

  it("P09: the runner's loopback, its own address and the operator's denied CIDRs are unreachable", async () => {
    const before = hitsOf(other8080);
    const out = await runInNetns(lab.runner, {
      denyCidrs: [`${LAB.other}/32`],
      hostService: { port: 9090, controls: ["127.0.0.1", LAB.runnerAddress] },
      scenarios: [{ network: outbound(), probes: [["127.0.0.1", 9090], [SLIRP.gateway, 9090], [LAB.runnerAddress, 9090], other8080, allowed8080] }],
    });
    expect(out.hostControls).toEqual({ "127.0.0.1": "hello runner-host", [LAB.runnerAddress]: "hello runner-host" });
    const { [`${LAB.allowed}:8080`]: control, ...refused } = out.results[0]!.probes;
    expect(control).toBe(`banner hello ${LAB.allowed}:8080`);
    expectAllFailed(refused);
    expect(out.hostServiceHitsFromSandboxes).toBe(0);
    expect(hitsOf(other8080)).toBe(before);
  });

  it("P08: with an allowlist only the listed address:port is reachable", async () => {
    const targets = [allowed8080, allowed8081, other8080];
    const { results } = await runInNetns(lab.runner, {
      scenarios: [
        { network: outbound(), probes: targets },
        { network: outbound([`${LAB.allowed}:8080`]), probes: targets },
        { network: outbound([`${LAB.allowed}/31:8081`]), probes: targets },
        { network: outbound(["203.0.113.0/24"]), probes: targets },
      ],
    });
    const reachable = results.map(({ probes }) => targets.map((t) => reached(probes, t)));
    expect(reachable).toEqual([
      [true, true, true], // control: no allowlist
      [true, false, false],
      [false, true, false],
      [true, true, true],
    ]);
    for (const { probes } of results.slice(1, 3)) expect(Object.values(probes).filter((r) => r.startsWith("failed"))).toEqual(["failed ConnectionRefusedError", "failed ConnectionRefusedError"]);
  });

  it("P08: host names in an allowlist resolve when the sandbox is made; steps resolve names through slirp's DNS, which stays open", async () => {
    const byName: Target[] = [["allowed.test", 8080], ["allowed.test", 8081]];
    const { results } = await runInNetns(lab.runner, { scenarios: [{ network: outbound(["allowed.test:8080"]), probes: [...byName, other8080] }] }, resolvConf);
    const probes = results[0]!.probes;
    expect(probes["allowed.test:8080"]).toBe(`banner hello ${LAB.allowed}:8080`);
    // Refused by the firewall, not unresolved: the name did resolve inside the sandbox.
    expect(probes["allowed.test:8081"]).toBe("failed ConnectionRefusedError");
    expect(probes[`${LAB.other}:8080`]).toBe("failed ConnectionRefusedError");
    expect(dns.hits()).toContain("allowed.test");
  });

  it("P09: a step cannot change the firewall or go around it", async () => {
    const step = [
      "nft --version",
      "nft flush ruleset; echo flush=$?",
      "nft add rule inet slipway output accept; echo add=$?",
      "ip route replace default via 10.0.2.2 dev tap0 metric 1; echo route=$?",
      "ip link set tap0 down; echo link=$?",
      // A packet socket would reach slirp's tap below netfilter; raw sockets need CAP_NET_RAW.
      `python3 -c 'import socket\nfor f, p in ((socket.AF_PACKET, socket.htons(3)), (socket.AF_INET, socket.IPPROTO_TCP)):\n  try: socket.socket(f, socket.SOCK_RAW, p); print("socket opened")\n  except OSError as e: print("socket", type(e).__name__)'`,
      "grep CapEff /proc/self/status",
    ].join("\n");
    const { results } = await runInNetns(lab.runner, { scenarios: [{ network: outbound([`${LAB.allowed}:8080`]), probes: [allowed8080, allowed8081], step }] });
    const r = results[0]!;
    // Control: nft itself is there and runs; only the change is refused.
    expect(r.step!.out).toMatch(/^nftables v/);
    for (const attempt of ["flush", "add", "route", "link"]) expect(r.step!.out, attempt).toContain(`${attempt}=`);
    expect(r.step!.out).not.toMatch(/(flush|add|route|link)=0/);
    expect(r.step!.out).toMatch(/Operation not permitted/);
    expect(r.step!.out.match(/^socket PermissionError$/gm)).toHaveLength(2);
    expect(r.step!.out).toMatch(/CapEff:\s+0000000000000000/);
    expect(r.rulesAfter).toBe(r.rules);
    for (const probes of [r.probes, r.probesAfter!]) {
      expect(reached(probes, allowed8080)).toBe(true);
      expect(probes[`${LAB.allowed}:8081`]).toBe("failed ConnectionRefusedError");
    }
  });
});

describe("P08: published egress addresses", () => {
  it("P08: GET /api/v1/meta lists the egress addresses the operator configured", async () => {
    const configured = await startHarness({ egressAddresses: ["203.0.113.7", "2001:db8:1::/48"] });
    const plain = await startHarness();
    try {
      expect((await anonymous(configured).get("/api/v1/meta")).json().egressAddresses).toEqual(["203.0.113.7", "2001:db8:1::/48"]);
      // Control: nothing configured, nothing listed.
      expect((await anonymous(plain).get("/api/v1/meta")).json().egressAddresses).toEqual([]);
    } finally {
      await Promise.all([configured.close(), plain.close()]);
    }
  });

  it("P08: SLIPWAY_EGRESS_ADDRESSES is a comma-separated list of IPs or CIDRs", () => {
    const dataDir = tmpdir();
    expect(loadSettings({ dataDir }, { SLIPWAY_EGRESS_ADDRESSES: "203.0.113.7, 198.51.100.0/24" }).egressAddresses).toEqual(["203.0.113.7", "198.51.100.0/24"]);
    expect(() => loadSettings({ dataDir }, { SLIPWAY_EGRESS_ADDRESSES: "203.0.113.7,egress.example.com" })).toThrow(SettingsError);
    expect(() => loadSettings({ dataDir }, { SLIPWAY_EGRESS_ADDRESSES: "203.0.113.7,egress.example.com" })).toThrow(/SLIPWAY_EGRESS_ADDRESSES/);
  });
});
