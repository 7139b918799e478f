import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { memoryDir, removeMemoryDir } from "./memory-dir.js";
import { ImageError, parseImageReference } from "./reference.js";

export interface PushTarget {
  /** Repository as Codeship's `image_name`: `acme/app` (Docker Hub) or `registry.example.com/acme/app`. */
  imageName: string;
  tag: string;
  /** A docker config JSON (`{"auths": {"<registry>": {"auth": "<base64 user:password>"}}}`), from the project secret DOCKERCFG. */
  dockercfg?: string;
  /** CA certificates (`*.crt`) the registry's certificate may chain to, beside the system's. */
  certDir?: string;
}

const dockercfgSchema = z.object({ auths: z.record(z.string(), z.object({ auth: z.string().optional(), username: z.string().optional(), password: z.string().optional() })) });
const PUSH_TIMEOUT_MS = 30 * 60_000;

/**
 * Publishes an image (an OCI layout tagged `image`) with skopeo, which uploads only the blobs the
 * registry lacks. The credentials go to skopeo in a file in memory (/dev/shm), readable by the
 * runner alone and removed at once, never on a command line; without them the push is anonymous,
 * never with credentials the runner's own user may have lying around. Returns where it went.
 */
export async function pushImage(layout: string, target: PushTarget): Promise<string> {
  const ref = parseImageReference(target.imageName);
  if (ref.tag !== undefined || ref.digest !== undefined) throw new ImageError(`image_name ${target.imageName} names a tag or digest: give the repository only, and the tag as image_tag`);
  const destination = `${ref.registry ? `${ref.registry}/` : ""}${ref.name}:${target.tag}`;
  let auth: string | undefined;
  if (target.dockercfg !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(target.dockercfg);
    } catch {
      parsed = undefined;
    }
    if (!dockercfgSchema.safeParse(parsed).success) throw new ImageError('the project secret DOCKERCFG is not a docker config: it should be JSON like {"auths": {"registry.example.com": {"auth": "<base64 of user:password>"}}}');
    auth = memoryDir("slipway-push");
    writeFileSync(path.join(auth, "auth.json"), target.dockercfg, { mode: 0o600 });
  }
  try {
    await new Promise<void>((resolve, reject) => {
      const args = ["copy", "--quiet", "--retry-times", "2", ...(auth ? ["--dest-authfile", path.join(auth, "auth.json")] : ["--dest-no-creds"]), ...(target.certDir ? ["--dest-cert-dir", target.certDir] : []), `oci:${layout}:image`, `docker://${destination}`];
      execFile("skopeo", args, { timeout: PUSH_TIMEOUT_MS, env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/nonexistent" } }, (err, _stdout, stderr) => {
        if (!err) return resolve();
        const last = stderr.trim().split("\n").pop() ?? err.message;
        const unauthorized = /unauthorized|authentication required|denied/i.test(last);
        reject(new ImageError(`could not push to ${destination}: ${last.replace(/^time="[^"]*" level=\w+ msg=/, "")}${unauthorized ? "; check the registry credentials in the project secret DOCKERCFG" : ""}`));
      });
    });
  } finally {
    if (auth) removeMemoryDir(auth);
  }
  return destination;
}
