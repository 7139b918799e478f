import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

/**
 * A read-only container registry on 127.0.0.1 over HTTPS, speaking the parts of the OCI
 * distribution API that a pull uses (`/v2/`, manifests by tag or digest, blobs), serving
 * repositories from OCI layouts on this machine. Its certificate is self-signed: `certDir` holds
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

export async function startTestRegistry(repositories: Record<string, string>): Promise<TestRegistry> {
  const certDir = mkdtempSync(path.join(tmpdir(), "slipway-registry-"));
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", path.join(certDir, "key.pem"), "-out", path.join(certDir, "ca.crt")], { stdio: "ignore" });
  const requests: string[] = [];
  const server: Server = createServer({ cert: readFileSync(path.join(certDir, "ca.crt")), key: readFileSync(path.join(certDir, "key.pem")) }, (req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const send = (status: number, body: Buffer | string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "docker-distribution-api-version": "registry/2.0", "content-length": String(Buffer.byteLength(body)), ...headers });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    const unknown = (code: string) => send(404, JSON.stringify({ errors: [{ code, message: code.toLowerCase().replace("_", " ") }] }), { "content-type": "application/json" });
    if (req.url === "/v2/") return send(200, "{}", { "content-type": "application/json" });
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(req.url ?? "");
    const layout = m && repositories[m[1]!];
    if (!m || !layout) return unknown("NAME_UNKNOWN");
    const [, , kind, reference] = m;
    const index = JSON.parse(readFileSync(path.join(layout, "index.json"), "utf8")) as Index;
    const described = kind === "manifests" ? index.manifests.find((d) => d.digest === reference || d.annotations?.["org.opencontainers.image.ref.name"] === reference) : undefined;
    const digest = kind === "blobs" ? reference! : described?.digest;
    const blob = digest && /^sha256:[0-9a-f]{64}$/.test(digest) ? path.join(layout, "blobs", "sha256", digest.slice(7)) : undefined;
    if (!blob || !existsSync(blob) || (kind === "manifests" && !described)) return unknown(kind === "manifests" ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN");
    const type = kind === "manifests" ? described!.mediaType : "application/octet-stream";
    send(200, readFileSync(blob), { "content-type": type, "docker-content-digest": digest! });
  });
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
