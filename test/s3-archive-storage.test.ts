import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BwrapBackend } from "../src/sandbox/bwrap-backend.js";
import { archiveName, restoreWorkspace, saveWorkspace } from "../src/workspaces/archive.js";
import { parseS3Url, S3ArchiveStorage } from "../src/workspaces/s3-archive-storage.js";
import { sigV4Signature, startS3Sim, type S3Sim } from "./helpers/s3-sim.js";

// Workspace archives in S3-compatible object storage, against a local server speaking the S3 API
// (path-style objects and multipart uploads) that checks each request's SigV4 signature.

const isRoot = process.getuid?.() === 0;
const MIB = 1024 * 1024;
const EMPTY = createHash("sha256").update("").digest("hex");

describe("the simulator's signature check", () => {
  it("gives the AWS documentation's example signature (GET Object with a Range)", () => {
    const headers = { host: "examplebucket.s3.amazonaws.com", range: "bytes=0-9", "x-amz-content-sha256": EMPTY, "x-amz-date": "20130524T000000Z" };
    expect(sigV4Signature({ method: "GET", path: "/test.txt", query: [], headers, payloadHash: EMPTY }, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524T000000Z", "us-east-1")).toBe("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  });
});

describe("workspace archives in S3-compatible object storage", () => {
  let sim: S3Sim;
  const secret = randomBytes(20).toString("base64");
  beforeAll(async () => {
    sim = await startS3Sim({ accessKeyId: "slipway-test", secret, bucket: "archives", region: "eu-test-1" });
  });
  afterAll(() => sim?.close());

  const storage = (url = sim.url("slipway-test", secret, "slipway/ws")) => new S3ArchiveStorage(parseS3Url(url));
  const chunks = (bytes: Buffer) => Readable.from(Array.from({ length: Math.ceil(bytes.length / MIB) }, (_, i) => bytes.subarray(i * MIB, (i + 1) * MIB)));
  const read = async (stream: Readable) => {
    const parts: Buffer[] = [];
    for await (const c of stream) parts.push(c as Buffer);
    return Buffer.concat(parts);
  };

  it("stores a stream in parts as it comes, reads it back whole, deletes it", async () => {
    const data = randomBytes(20 * MIB);
    const s = storage();
    sim.log.length = 0;
    expect(await s.put("ws_a.archive", chunks(data))).toBe(data.length);
    expect([...sim.objects.keys()]).toEqual(["slipway/ws/ws_a.archive"]);
    expect(sim.objects.get("slipway/ws/ws_a.archive")!.equals(data)).toBe(true);
    expect(sim.log.filter((l) => /^PUT .*partNumber=/.test(l))).toHaveLength(3);
    expect((await read(s.get("ws_a.archive"))).equals(data)).toBe(true);
    await s.delete("ws_a.archive");
    expect(sim.objects.size).toBe(0);
    await expect(read(s.get("ws_a.archive"))).rejects.toThrow(/could not read ws_a\.archive: NoSuchKey \(HTTP 404\)/);
  });

  it("a wrong secret is refused: the put fails saying what to check, without the secret, and stores nothing", async () => {
    const wrong = randomBytes(20).toString("base64");
    // Small enough for one request, and large enough for parts: either way, the reason is told.
    for (const size of [1000, 12 * MIB]) {
      const err = await storage(sim.url("slipway-test", wrong)).put("ws_b.archive", chunks(randomBytes(size))).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/could not store ws_b\.archive: SignatureDoesNotMatch \(HTTP 403\); check SLIPWAY_WORKSPACE_S3_URL/);
      expect((err as Error).message).not.toContain(wrong);
    }
    expect(sim.objects.size).toBe(0);
  });

  it("a source that fails half-way fails the put; the upload is aborted, leaving no object and no part", async () => {
    async function* failing() {
      yield randomBytes(10 * MIB);
      throw new Error("the archiver died");
    }
    await expect(storage().put("ws_c.archive", Readable.from(failing()))).rejects.toThrow("the archiver died");
    await new Promise((r) => setTimeout(r, 200));
    expect(sim.objects.size).toBe(0);
    expect(sim.pending.size).toBe(0);
  });

  it("refuses names that are not an archive's, and URLs without a key or a bucket", async () => {
    await expect(storage().put("../escape", Readable.from([Buffer.from("x")]))).rejects.toThrow(/not an archive name/);
    expect(() => parseS3Url("https://s3.example.com/bucket")).toThrow(/needs the access key/);
    expect(() => parseS3Url("https://id:secret@s3.example.com/")).toThrow(/and a bucket/);
    expect(() => parseS3Url("ftp://id:secret@s3.example.com/b")).toThrow(/https:\/\//);
    expect(parseS3Url("https://id%2F1:s%2Bcret@s3.example.com:9000/bucket/a/b?region=eu-west-3")).toEqual({ endpoint: "https://s3.example.com:9000", region: "eu-west-3", bucket: "bucket", prefix: "a/b/", accessKeyId: "id/1", secretAccessKey: "s+cret" });
  });

  describe.runIf(isRoot)("with a workspace", () => {
    const backend = new BwrapBackend();

    it("P16: a stopped workspace reaches the object storage sealed (no plaintext there), comes back whole, and a flipped byte fails the restore", async () => {
      const key = randomBytes(32);
      const s = storage();
      const source = await backend.create({ image: { kind: "host" }, profile: "workspace" });
      const secretFile = randomBytes(256 * 1024).toString("base64");
      await source.writeFile("/workspace/secret.txt", secretFile);
      const name = archiveName("ws_p16");
      await saveWorkspace(source, key, s, name);
      await source.destroy();
      const stored = sim.objects.get(`slipway/ws/${name}`)!;
      const needles = [secretFile.slice(1000, 1064), secretFile.slice(200_000, 200_064)];
      expect(needles.filter((n) => stored.includes(n))).toEqual([]);
      // Control: the same search finds the needles in the clear.
      expect(needles.filter((n) => Buffer.from(secretFile).includes(n))).toHaveLength(2);

      const target = await backend.create({ image: { kind: "host" }, profile: "workspace" });
      await restoreWorkspace(target, key, s, name);
      let digest = "";
      await target.exec({ argv: ["sha256sum", "/workspace/secret.txt"] }, { stdout: (d) => (digest += d.toString()) });
      expect(digest.split(" ")[0]).toBe(createHash("sha256").update(secretFile).digest("hex"));
      await target.destroy();

      stored[Math.floor(stored.length / 2)]! ^= 0x01;
      const again = await backend.create({ image: { kind: "host" }, profile: "workspace" });
      await expect(restoreWorkspace(again, key, s, name)).rejects.toThrow();
      await again.destroy();
      await s.delete(name);
    });
  });
});
