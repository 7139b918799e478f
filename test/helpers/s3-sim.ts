import { createHash, createHmac, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

// A local server that speaks the part of the S3 API Slipway uses (objects, multipart uploads),
// path-style, checking every request's AWS Signature Version 4 with its own code (not the SDK's).

const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");
const hmac = (key: string | Buffer, data: string) => createHmac("sha256", key).update(data).digest();
/** RFC 3986 percent-encoding, as SigV4 wants it: every byte but A-Z a-z 0-9 - _ . ~. */
const uriEncode = (text: string) => encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

export interface SignedRequest {
  method: string;
  /** The path as sent, already encoded. */
  path: string;
  query: Array<[string, string]>;
  /** Lower-case names → values, of the signed headers. */
  headers: Record<string, string>;
  payloadHash: string;
}

/** The SigV4 signature of a request, as the AWS documentation defines it. */
export function sigV4Signature(req: SignedRequest, secret: string, amzDate: string, region: string, service = "s3"): string {
  const names = Object.keys(req.headers).sort();
  const canonical = [
    req.method,
    req.path,
    req.query
      .map(([k, v]) => [uriEncode(k), uriEncode(v)])
      .sort(([a, x], [b, y]) => (a! < b! ? -1 : a! > b! ? 1 : x! < y! ? -1 : x! > y! ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join("&"),
    names.map((n) => `${n}:${req.headers[n]!.trim().replace(/\s+/g, " ")}\n`).join(""),
    names.join(";"),
    req.payloadHash,
  ].join("\n");
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonical)].join("\n");
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), "aws4_request");
  return createHmac("sha256", key).update(toSign).digest("hex");
}

export interface S3Sim {
  url(accessKeyId?: string, secret?: string, prefix?: string): string;
  objects: Map<string, Buffer>;
  /** Multipart uploads begun and not yet completed or aborted. */
  pending: Map<string, { key: string; parts: Map<number, Buffer> }>;
  /** Every request's method and path with its query, in order. */
  log: string[];
  close(): Promise<void>;
}

const xml = (res: ServerResponse, status: number, body: string) => {
  res.writeHead(status, { "content-type": "application/xml" });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n${body}`);
};
const error = (res: ServerResponse, status: number, code: string, message: string) => xml(res, status, `<Error><Code>${code}</Code><Message>${message}</Message></Error>`);

export async function startS3Sim(opts: { accessKeyId: string; secret: string; bucket: string; region?: string }): Promise<S3Sim> {
  const region = opts.region ?? "us-east-1";
  const objects = new Map<string, Buffer>();
  const pending = new Map<string, { key: string; parts: Map<number, Buffer> }>();
  const log: string[] = [];

  const authentic = (req: IncomingMessage, body: Buffer): string | undefined => {
    const auth = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(req.headers.authorization ?? "");
    if (!auth) return "AccessDenied";
    const [, keyId, , signedRegion, signedHeaders, signature] = auth;
    if (keyId !== opts.accessKeyId) return "InvalidAccessKeyId";
    const payloadHash = String(req.headers["x-amz-content-sha256"] ?? "");
    if (payloadHash !== "UNSIGNED-PAYLOAD" && payloadHash !== sha256(body)) return "XAmzContentSHA256Mismatch";
    const url = new URL(req.url!, "http://sim");
    const headers = Object.fromEntries(signedHeaders!.split(";").map((n) => [n, String(req.headers[n] ?? "")]));
    const expected = sigV4Signature({ method: req.method!, path: url.pathname, query: [...url.searchParams], headers, payloadHash }, opts.secret, String(req.headers["x-amz-date"]), signedRegion!);
    return signedRegion === region && expected === signature ? undefined : "SignatureDoesNotMatch";
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url!, "http://sim");
      log.push(`${req.method} ${url.pathname}${url.search}`);
      const refused = authentic(req, body);
      if (refused) return error(res, 403, refused, "The request signature we calculated does not match the signature you provided.");
      const [, bucket, ...rest] = url.pathname.split("/");
      if (bucket !== opts.bucket) return error(res, 404, "NoSuchBucket", "The specified bucket does not exist");
      const key = rest.map(decodeURIComponent).join("/");
      const uploadId = url.searchParams.get("uploadId");
      const etag = (data: Buffer) => `"${createHash("md5").update(data).digest("hex")}"`;
      if (req.method === "POST" && url.searchParams.has("uploads")) {
        const id = randomBytes(12).toString("hex");
        pending.set(id, { key, parts: new Map() });
        return xml(res, 200, `<InitiateMultipartUploadResult><Bucket>${bucket}</Bucket><Key>${key}</Key><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`);
      }
      if (uploadId !== null) {
        const upload = pending.get(uploadId);
        if (!upload || upload.key !== key) return error(res, 404, "NoSuchUpload", "The specified upload does not exist");
        if (req.method === "PUT") {
          upload.parts.set(Number(url.searchParams.get("partNumber")), body);
          res.writeHead(200, { etag: etag(body) });
          return res.end();
        }
        if (req.method === "DELETE") {
          pending.delete(uploadId);
          res.writeHead(204);
          return res.end();
        }
        if (req.method === "POST") {
          const listed = [...body.toString().matchAll(/<Part>(.*?)<\/Part>/gs)].map((m) => [Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(m[1]!)?.[1]), (/<ETag>([^<]+)<\/ETag>/.exec(m[1]!)?.[1] ?? "").replace(/&quot;/g, '"')] as const);
          const parts = listed.map(([n, tag]) => {
            const part = upload.parts.get(n);
            return part && etag(part) === tag ? part : undefined;
          });
          if (listed.length === 0 || parts.some((p) => !p)) return error(res, 400, "InvalidPart", "One or more of the specified parts could not be found.");
          objects.set(key, Buffer.concat(parts as Buffer[]));
          pending.delete(uploadId);
          return xml(res, 200, `<CompleteMultipartUploadResult><Bucket>${bucket}</Bucket><Key>${key}</Key><ETag>"${listed.length}"</ETag></CompleteMultipartUploadResult>`);
        }
      }
      if (req.method === "PUT") {
        objects.set(key, body);
        res.writeHead(200, { etag: etag(body) });
        return res.end();
      }
      if (req.method === "GET") {
        const object = objects.get(key);
        if (!object) return error(res, 404, "NoSuchKey", "The specified key does not exist.");
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": object.length, etag: etag(object) });
        return res.end(object);
      }
      if (req.method === "DELETE") {
        objects.delete(key);
        res.writeHead(204);
        return res.end();
      }
      error(res, 405, "MethodNotAllowed", "The specified method is not allowed against this resource.");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (accessKeyId = opts.accessKeyId, secret = opts.secret, prefix = "") => `http://${encodeURIComponent(accessKeyId)}:${encodeURIComponent(secret)}@127.0.0.1:${port}/${opts.bucket}${prefix ? `/${prefix}` : ""}?region=${region}`,
    objects,
    pending,
    log,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
