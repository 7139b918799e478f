import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * A container registry on 127.0.0.1 over HTTPS, speaking the parts of the OCI distribution API
 * that a pull uses (`/v2/`, manifests by tag or digest, blobs), serving repositories from OCI
 * layouts on this machine, and with `pushDir` the parts a push uses (blob uploads, manifests). Its certificate is self-signed: `certDir` holds
 * it as `ca.crt`, the way skopeo's --cert-dir wants it.
 */
export interface TestRegistry {
  host: string;
  certDir: string;
  /** Paths requested so far, e.g. "GET /v2/team/debian/blobs/sha256:…". */
  requests: string[];
  close(): Promise<void>;
}

interface Index {
  manifests: Array<{ mediaType: string; digest: string; annotations?: Record<string, string> }>;
}

export interface TestRegistryOptions {
  /** Accepts pushes (the upload and manifest parts of the API), kept as OCI layouts in `<pushDir>/<repository>`. */
  pushDir?: string;
  /** Every request needs HTTP Basic credentials; otherwise 401 with a Basic challenge. */
  auth?: { username: string; password: string };
}

export async function startTestRegistry(repositories: Record<string, string>, opts: TestRegistryOptions = {}): Promise<TestRegistry> {
  const certDir = mkdtempSync(path.join(tmpdir(), "slipway-registry-"));
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", path.join(certDir, "key.pem"), "-out", path.join(certDir, "ca.crt")], { stdio: "ignore" });
  const requests: string[] = [];
  const uploads = new Map<string, Buffer[]>();
  const pushed = new Set<string>();
  /** The layout a push writes to: one of pushDir's, never a layout the registry was given to serve. */
  const layoutOf = (name: string): string | undefined => {
    if (pushed.has(name)) return repositories[name];
    if (repositories[name] || !opts.pushDir || !/^[a-z0-9]+([._/-][a-z0-9]+)*$/.test(name)) return undefined;
    const dir = path.join(opts.pushDir, name);
    if (!existsSync(path.join(dir, "index.json"))) {
      mkdirSync(path.join(dir, "blobs", "sha256"), { recursive: true });
      writeFileSync(path.join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
      writeFileSync(path.join(dir, "index.json"), '{"schemaVersion":2,"manifests":[]}');
    }
    pushed.add(name);
    return (repositories[name] = dir);
  };
  const server: Server = createServer({ cert: readFileSync(path.join(certDir, "ca.crt")), key: readFileSync(path.join(certDir, "key.pem")) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => handle(req, res, Buffer.concat(chunks)));
  });
  const handle = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    requests.push(`${req.method} ${req.url}`);
    const send = (status: number, data: Buffer | string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "docker-distribution-api-version": "registry/2.0", "content-length": String(Buffer.byteLength(data)), ...headers });
      res.end(req.method === "HEAD" ? undefined : data);
    };
    const fail = (status: number, code: string, headers: Record<string, string> = {}) => send(status, JSON.stringify({ errors: [{ code, message: code.toLowerCase().replace("_", " ") }] }), { "content-type": "application/json", ...headers });
    if (opts.auth && req.headers.authorization !== `Basic ${Buffer.from(`${opts.auth.username}:${opts.auth.password}`).toString("base64")}`) {
      return fail(401, "UNAUTHORIZED", { "www-authenticate": 'Basic realm="test registry"' });
    }
    const url = new URL(req.url ?? "/", "https://registry");
    if (url.pathname === "/v2/") return send(200, "{}", { "content-type": "application/json" });
    const upload = /^\/v2\/(.+)\/blobs\/uploads\/([a-f0-9]*)$/.exec(url.pathname);
    if (upload && opts.pushDir) {
      const [, name, id] = upload;
      const layout = layoutOf(name!);
      if (!layout) return fail(404, "NAME_INVALID");
      if (req.method === "POST") {
        const uuid = randomBytes(8).toString("hex");
        uploads.set(uuid, []);
        return send(202, "", { location: `/v2/${name}/blobs/uploads/${uuid}`, "docker-upload-uuid": uuid, range: "0-0" });
      }
      const parts = uploads.get(id!);
      if (!parts) return fail(404, "BLOB_UPLOAD_UNKNOWN");
      parts.push(body);
      if (req.method === "PATCH") return send(202, "", { location: `/v2/${name}/blobs/uploads/${id}`, range: `0-${Buffer.concat(parts).length - 1}` });
      const blob = Buffer.concat(parts);
      const digest = url.searchParams.get("digest") ?? "";
      if (`sha256:${createHash("sha256").update(blob).digest("hex")}` !== digest) return fail(400, "DIGEST_INVALID");
      writeFileSync(path.join(layout, "blobs", "sha256", digest.slice(7)), blob);
      uploads.delete(id!);
      return send(201, "", { location: `/v2/${name}/blobs/${digest}`, "docker-content-digest": digest });
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    const layout = m && (req.method === "PUT" ? layoutOf(m[1]!) : repositories[m[1]!]);
    if (!m || !layout) return fail(404, "NAME_UNKNOWN");
    const [, , kind, reference] = m;
    if (req.method === "PUT" && kind === "manifests" && opts.pushDir) {
      const digest = `sha256:${createHash("sha256").update(body).digest("hex")}`;
      writeFileSync(path.join(layout, "blobs", "sha256", digest.slice(7)), body);
      const index = JSON.parse(readFileSync(path.join(layout, "index.json"), "utf8")) as Index;
      index.manifests = index.manifests.filter((d) => d.annotations?.["org.opencontainers.image.ref.name"] !== reference);
      index.manifests.push({ mediaType: req.headers["content-type"] ?? "application/vnd.oci.image.manifest.v1+json", digest, annotations: { "org.opencontainers.image.ref.name": reference! } });
      writeFileSync(path.join(layout, "index.json"), JSON.stringify(index));
      return send(201, "", { location: `/v2/${m[1]}/manifests/${digest}`, "docker-content-digest": digest });
    }
    const index = JSON.parse(readFileSync(path.join(layout, "index.json"), "utf8")) as Index;
    const described = kind === "manifests" ? index.manifests.find((d) => d.digest === reference || d.annotations?.["org.opencontainers.image.ref.name"] === reference) : undefined;
    const digest = kind === "blobs" ? reference! : described?.digest;
    const blob = digest && /^sha256:[0-9a-f]{64}$/.test(digest) ? path.join(layout, "blobs", "sha256", digest.slice(7)) : undefined;
    if (!blob || !existsSync(blob) || (kind === "manifests" && !described)) return fail(404, kind === "manifests" ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN");
    const type = kind === "manifests" ? described!.mediaType : "application/octet-stream";
    send(200, readFileSync(blob), { "content-type": type, "docker-content-digest": digest! });
  };
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    certDir,
    requests,
    close: async () => {
      await new Promise((resolve) => server.close(resolve));
      rmSync(certDir, { recursive: true, force: true });
    },
  };
}
