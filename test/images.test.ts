import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImageStore } from "../src/images/image-store.js";
import { ImageError, parseImageReference } from "../src/images/reference.js";
import { selectSteps } from "../src/pipeline/index.js";
import { PipelineRunner, type StepResult } from "../src/runner/pipeline-runner.js";
import type { Sandbox } from "../src/sandbox/backend.js";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { startTestRegistry, type TestRegistry } from "./helpers/oci-registry.js";
import { lines, validPipeline } from "./helpers/pipeline.js";
import { testImageLayout, testLayoutsDir } from "./helpers/test-image.js";
import { sh } from "./helpers/sandbox-shell.js";

let backend: BwrapBackend;
let layouts: string;
let cacheDir: string;
let store: ImageStore;
const open: Sandbox[] = [];
const scratch: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(path.join(tmpdir(), "slipway-img-cache-"));
  scratch.push(dir);
  return dir;
};

beforeAll(() => {
  backend = new BwrapBackend({ runtimeDir: mkdtempSync(path.join(tmpdir(), "slipway-img-sbx-")) });
  layouts = testLayoutsDir();
  cacheDir = mkdtempSync(path.join(tmpdir(), "slipway-img-cache-"));
  store = new ImageStore({ cacheDir, layoutsDir: layouts });
});
afterAll(async () => {
  await Promise.all(open.map((s) => s.destroy()));
  for (const dir of [layouts, cacheDir, ...scratch]) rmSync(dir, { recursive: true, force: true });
});

async function sandboxOf(ref: string): Promise<Sandbox> {
  const image = await store.resolve(ref);
  const s = await backend.create({ image: { kind: "rootfs", path: image.rootfs }, env: image.env });
  open.push(s);
  return s;
}


/** The manifest digest the layout's index gives for a tag, read independently of the store. */
function indexDigest(layout: string, tag: string): string {
  const index = JSON.parse(readFileSync(path.join(layout, "index.json"), "utf8")) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  return index.manifests.find((m) => m.annotations?.["org.opencontainers.image.ref.name"] === tag)!.digest;
}

/** A copy of the test layout, under another name in the layouts folder, for tests that damage it. */
function copyOfLayout(name: string): string {
  const copy = path.join(layouts, name);
  cpSync(testImageLayout(), copy, { recursive: true, dereference: true });
  return copy;
}

describe("image references", () => {
  it("parses registry, name, tag and digest", () => {
    const digest = `sha256:${"a".repeat(64)}`;
    expect(parseImageReference("debian:bookworm")).toMatchObject({ name: "debian", tag: "bookworm" });
    expect(parseImageReference(`registry.example.com:5000/team/app:1.2@${digest}`)).toMatchObject({ registry: "registry.example.com:5000", name: "team/app", tag: "1.2", digest });
    expect(parseImageReference("localhost/app")).toMatchObject({ registry: "localhost", name: "app" });
  });

  it("refuses references that could name a path outside the layouts folder, or are malformed", () => {
    for (const bad of ["../etc", "debian/../../x", "./debian", "Debian", "debian:", "debian@sha256:abc", "/abs/path", "a//b", "x".repeat(600), "debian:bad tag"]) {
      expect(() => parseImageReference(bad), bad).toThrow(ImageError);
    }
  });
});

describe("the image store", () => {
  it("unpacks a local OCI layout once, into a folder named by the manifest digest", async () => {
    const progress: string[] = [];
    const first = await store.resolve("debian:bookworm", (m) => progress.push(m));
    const digest = indexDigest(testImageLayout(), "bookworm");
    expect(first.digest).toBe(digest);
    expect(first.rootfs).toBe(path.join(cacheDir, digest.replace(":", "-"), "rootfs"));
    expect(readFileSync(path.join(first.rootfs, "etc/debian_version"), "utf8")).toMatch(/^12\./);
    expect(first.env.PATH).toContain("/usr/bin");
    expect(progress.join("")).toMatch(/pulling image debian:bookworm[\s\S]*unpacking/);

    const again: string[] = [];
    const second = await store.resolve("debian:bookworm", (m) => again.push(m));
    expect(second).toEqual(first);
    expect(again).toEqual([]);
    // Unpacked images keep setuid programs and device nodes: only the runner's own uid may reach them.
    expect(statSync(cacheDir).mode & 0o777).toBe(0o700);
    expect(statSync(path.dirname(first.rootfs)).mode & 0o777).toBe(0o700);
  });

  it("pulls an image once when many jobs ask for it at the same time", async () => {
    const fresh = new ImageStore({ cacheDir: tempDir(), layoutsDir: layouts });
    const pulls: string[] = [];
    const images = await Promise.all(Array.from({ length: 4 }, () => fresh.resolve("debian:bookworm", (m) => pulls.push(m))));
    expect(new Set(images.map((i) => i.rootfs)).size).toBe(1);
    expect(pulls.filter((m) => m.startsWith("pulling"))).toHaveLength(1);
  });

  it("takes an image pinned by its digest, and refuses one whose digest is not the pinned one", async () => {
    const digest = indexDigest(testImageLayout(), "bookworm");
    await expect(store.resolve(`debian:bookworm@${digest}`)).resolves.toMatchObject({ digest });
    const other = `sha256:${createHash("sha256").update("another image").digest("hex")}`;
    await expect(store.resolve(`debian:bookworm@${other}`)).rejects.toThrow(/found digest sha256:[0-9a-f]{64}, not the one the config pins/);
  });

  it("refuses a layout whose layer does not match its digest, and caches nothing of it", async () => {
    const copy = copyOfLayout("tampered");
    const manifest = JSON.parse(readFileSync(path.join(copy, "blobs/sha256", indexDigest(copy, "bookworm").slice(7)), "utf8")) as { layers: Array<{ digest: string }> };
    const layer = path.join(copy, "blobs/sha256", manifest.layers[0]!.digest.slice(7));
    const bytes = readFileSync(layer);
    const middle = bytes.length >> 1;
    bytes[middle] = bytes[middle]! ^ 0xff;
    writeFileSync(layer, bytes);
    const fresh = tempDir();
    await expect(new ImageStore({ cacheDir: fresh, layoutsDir: layouts }).resolve("tampered:bookworm")).rejects.toThrow(/image tampered:bookworm could not be pulled: .*[Dd]igest did not match/);
    expect(readdirSync(fresh)).toEqual([]);
    // The control: the same layout before the damage is accepted (the test above).
  });

  it("says clearly when an image or a tag does not exist", async () => {
    await expect(store.resolve("debian:trixie")).rejects.toThrow(/image debian:trixie does not exist: the local layout debian has no tag trixie/);
  });
});

describe("images from a registry", () => {
  let registry: TestRegistry;
  beforeAll(async () => {
    registry = await startTestRegistry({ "team/debian": testImageLayout() });
  });
  afterAll(() => registry.close());

  it("pulls over HTTPS from a registry whose certificate chains to the configured CA, once per digest", async () => {
    const fromRegistry = new ImageStore({ cacheDir: tempDir(), registryCertDir: registry.certDir });
    const ref = `${registry.host}/team/debian:bookworm`;
    const image = await fromRegistry.resolve(ref);
    expect(image.digest).toBe(indexDigest(testImageLayout(), "bookworm"));
    expect(readFileSync(path.join(image.rootfs, "etc/debian_version"), "utf8")).toMatch(/^12\./);
    expect(registry.requests.some((r) => r.startsWith("GET /v2/team/debian/blobs/"))).toBe(true);
    // Again: the manifest is looked up (the tag may have moved), no blob is fetched.
    const blobsBefore = registry.requests.filter((r) => r.includes("/blobs/")).length;
    expect(await fromRegistry.resolve(ref)).toEqual(image);
    expect(registry.requests.filter((r) => r.includes("/blobs/")).length).toBe(blobsBefore);
    // Pinned by a digest already here, the same image, without asking the registry anything.
    const asked = registry.requests.length;
    await expect(fromRegistry.resolve(`${ref}@${image.digest}`)).resolves.toEqual(image);
    expect(registry.requests.length).toBe(asked);
    // A digest the registry does not have is an image that does not exist.
    const absent = `sha256:${createHash("sha256").update("absent").digest("hex")}`;
    await expect(fromRegistry.resolve(`${registry.host}/team/debian@${absent}`)).rejects.toThrow(/does not exist or is not accessible: .*manifest unknown/i);
    await expect(fromRegistry.resolve(`${registry.host}/team/nothing:1`)).rejects.toThrow(/does not exist or is not accessible/);
  });

  it("P04: refuses a registry whose TLS certificate does not verify", async () => {
    const untrusting = new ImageStore({ cacheDir: tempDir() });
    const before = registry.requests.length;
    await expect(untrusting.resolve(`${registry.host}/team/debian:bookworm`)).rejects.toThrow(/could not be pulled: .*certificate/);
    // Nothing was asked of the registry beyond the handshake: no manifest, no blob.
    expect(registry.requests.slice(before)).toEqual([]);
  });
});

describe("a sandbox on an image", () => {
  it("runs in the image's root filesystem, not the host's", async () => {
    const s = await sandboxOf("debian:bookworm");
    // The minimal image has no Node.js, which the host running this test has.
    expect(existsSync("/usr/bin/node")).toBe(true);
    expect(await sh(s, "test -e /usr/bin/node && echo host || cat /etc/debian_version")).toMatchObject({ code: 0, out: expect.stringMatching(/^12\.\d+\n$/) });
  });

  it("lets steps write to /usr; the writes stay in the sandbox's memory and vanish with it", async () => {
    const image = await store.resolve("debian:bookworm");
    const before = statSync(path.join(image.rootfs, "usr"));
    const s = await sandboxOf("debian:bookworm");
    const written = await sh(s, "echo marker > /usr/local/bin/written && echo more >> /etc/debian_version && cat /usr/local/bin/written && id -u");
    expect(written).toMatchObject({ code: 0, out: "marker\n1000\n" });
    expect(existsSync(path.join(image.rootfs, "usr/local/bin/written"))).toBe(false);
    expect(readFileSync(path.join(image.rootfs, "etc/debian_version"), "utf8")).not.toContain("more");
    const after = statSync(path.join(image.rootfs, "usr"));
    expect([after.uid, after.mtimeMs]).toEqual([before.uid, before.mtimeMs]);

    const next = await sandboxOf("debian:bookworm");
    expect(await sh(next, "test -e /usr/local/bin/written; echo $?")).toMatchObject({ code: 0, out: "1\n" });
  });

  it.runIf(process.getuid?.() === 0)("keeps no mount of the image that the sandbox could remount writable: only the overlay holds it", async () => {
    const s = (await sandboxOf("debian:bookworm")) as Sandbox & { hostUid: number };
    const mountsOfSandbox = readdirSync("/proc")
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return statSync(`/proc/${p}`).uid === s.hostUid;
        } catch {
          return false;
        }
      })
      .flatMap((p) => {
        try {
          return readFileSync(`/proc/${p}/mountinfo`, "utf8").split("\n");
        } catch {
          return [];
        }
      });
    expect(mountsOfSandbox.some((l) => l.includes(`${s.id}/root `) && l.includes(" overlay "))).toBe(true);
    expect(mountsOfSandbox.filter((l) => l.includes(`${s.id}/lower `))).toEqual([]);
    expect((await sh(s, "cat /etc/debian_version")).code).toBe(0);
  });
});

describe("steps with images", () => {
  it("runs each step in its image; steps of one image share a sandbox, another image starts afresh", async () => {
    const pipeline = validPipeline({
      ".slipway.yml": lines(
        "image: debian:bookworm",
        "steps:",
        "  - name: in-debian",
        "    command: test ! -e /usr/bin/node && cat /etc/debian_version > /workspace/seen",
        "  - name: same-image",
        "    command: cat /workspace/seen /workspace/checked-out",
        "  - name: on-host",
        "    image: host",
        "    command: test -e /usr/bin/node && test ! -e /workspace/seen && cat /workspace/checked-out",
        // A registry on a closed loopback port: the test never leaves this machine.
        "  - name: missing-image",
        "    image: 127.0.0.1:9/nothing-here:1",
        "    command: 'true'",
      ),
    });
    let output = "";
    const result = await new PipelineRunner({
      backend,
      images: store,
      pipeline,
      nodes: selectSteps(pipeline, { branch: "main" }),
      checkout: (sandbox) => sandbox.writeFile("/workspace/checked-out", "checkout\n"),
      env: {},
      secrets: [],
      onEvent: (e) => {
        if (e.type === "output") output += e.data.toString();
      },
    }).run();
    const status = (name: string) => result.steps.find((r: StepResult) => r.name === name);
    expect(status("in-debian")).toMatchObject({ status: "success" });
    expect(status("same-image")).toMatchObject({ status: "success" });
    expect(output).toMatch(/^12\.\d+\ncheckout\n/m);
    expect(status("on-host")).toMatchObject({ status: "success" });
    expect(status("missing-image")).toMatchObject({ status: "error", reason: expect.stringMatching(/^image 127\.0\.0\.1:9\/nothing-here:1 could not be pulled: pinging container registry 127\.0\.0\.1:9: .*connection refused; check the name/) });
    expect(result.status).toBe("failed");
  });
});
