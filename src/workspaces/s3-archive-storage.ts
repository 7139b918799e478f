import { DeleteObjectCommand, GetObjectCommand, S3Client, S3ServiceException } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { PassThrough, Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { objectName, type ArchiveStorage } from "./archive-storage.js";

/** Parts of a multipart upload: buffered in memory, two at a time, never on disk. */
const PART_BYTES = 8 * 1024 * 1024;

/** Where archives go in S3-compatible object storage, from one URL. */
export interface S3Location {
  endpoint: string;
  region: string;
  bucket: string;
  /** Put before every object name ("" or ending in "/"). */
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * `https://<access key id>:<secret access key>@<host>[:port]/<bucket>[/<prefix>]?region=<region>`
 * (the key's parts URL-encoded). Objects are addressed path-style, which S3-compatible servers
 * (MinIO, Ceph, Garage, R2) and AWS accept alike.
 */
export function parseS3Url(text: string): S3Location {
  const url = new URL(text);
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("the object storage URL is https://<key id>:<secret>@<host>/<bucket>[/<prefix>]?region=<region>");
  const [bucket, ...rest] = url.pathname.split("/").filter(Boolean);
  if (!bucket || !url.username || !url.password) throw new Error("the object storage URL needs the access key (https://<key id>:<secret>@host/…) and a bucket (…/<bucket>)");
  return {
    endpoint: url.origin,
    region: url.searchParams.get("region") ?? "us-east-1",
    bucket,
    prefix: rest.length ? `${rest.join("/")}/` : "",
    accessKeyId: decodeURIComponent(url.username),
    secretAccessKey: decodeURIComponent(url.password),
  };
}

/** What the object storage said, in words that do not repeat the request (nor its credentials). */
function storageError(action: string, err: unknown): Error {
  const what = err instanceof S3ServiceException ? `${err.name} (HTTP ${err.$metadata.httpStatusCode ?? "?"})` : (err as Error).message;
  return new Error(`object storage could not ${action}: ${what}; check SLIPWAY_WORKSPACE_S3_URL (endpoint, bucket, key) and that the bucket exists`);
}

/**
 * Archives in S3-compatible object storage. What arrives is sealed already (the workspace's key
 * never leaves Slipway): stored in parts as it streams, so an archive of any size needs no
 * temporary file; an upload that fails is aborted, leaving no object and no parts.
 */
export class S3ArchiveStorage implements ArchiveStorage {
  private readonly client: S3Client;

  constructor(private readonly location: S3Location) {
    this.client = new S3Client({
      endpoint: location.endpoint,
      region: location.region,
      forcePathStyle: true,
      credentials: { accessKeyId: location.accessKeyId, secretAccessKey: location.secretAccessKey },
      // Checksums only where the API needs them: not every S3-compatible server takes the newer ones.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: 3,
    });
  }

  private key(name: string): { Bucket: string; Key: string } {
    return { Bucket: this.location.bucket, Key: `${this.location.prefix}${objectName(name)}` };
  }

  async put(name: string, data: Readable): Promise<number> {
    let bytes = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    const upload = new Upload({ client: this.client, params: { ...this.key(name), Body: counted }, partSize: PART_BYTES, queueSize: 2, leavePartsOnError: false });
    const fed = pipeline(data, counted);
    try {
      await Promise.all([upload.done(), fed]);
    } catch (err) {
      // Whichever failed, no object and no part stays. The source's own failure is the reason to
      // give; its "premature close" only echoes the upload's.
      await upload.abort().catch(() => undefined);
      const source = await fed.then(() => undefined, (e: unknown) => e as NodeJS.ErrnoException);
      throw source && source.code !== "ERR_STREAM_PREMATURE_CLOSE" ? source : storageError(`store ${name}`, err);
    }
    return bytes;
  }

  get(name: string): Readable {
    const out = new PassThrough();
    this.client.send(new GetObjectCommand(this.key(name))).then(
      (answer) => pipeline(answer.Body as Readable, out).catch((err: unknown) => out.destroy(storageError(`read ${name}`, err))),
      (err: unknown) => out.destroy(storageError(`read ${name}`, err)),
    );
    return out;
  }

  async delete(name: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand(this.key(name))).catch((err: unknown) => {
      throw storageError(`delete ${name}`, err);
    });
  }
}
