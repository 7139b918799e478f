/**
 * Image references as Docker and OCI tools write them: `[registry/]name[:tag][@sha256:digest]`.
 * Parsing is strict so that a name can be used as a path below the local layouts folder: no
 * component can be empty, `.` or `..`.
 */
export interface ImageReference {
  /** As written in the config. */
  text: string;
  /** The registry host (with port), when the reference names one. */
  registry?: string;
  /** The repository path without the registry, e.g. `library/debian` or `team/app`. */
  name: string;
  tag?: string;
  digest?: string;
}

export class ImageError extends Error {}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const REGISTRY = /^(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+|\[[0-9a-fA-F:]+\])(?::\d{1,5})?$|^[A-Za-z0-9-]+:\d{1,5}$/;

export function parseImageReference(text: string): ImageReference {
  const bad = (why: string) => new ImageError(`image "${text}" is not a valid reference (${why}); write it as name[:tag][@sha256:digest], e.g. debian:bookworm`);
  if (text.length > 512) throw bad("too long");
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad("a digest is sha256: and 64 hex digits");
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad("bad tag");
  }
  const parts = rest.split("/");
  let registry: string | undefined;
  if (parts.length > 1 && /[.:]|^localhost$/.test(parts[0]!)) {
    registry = parts.shift()!;
    if (!REGISTRY.test(registry)) throw bad("bad registry host");
  }
  if (parts.length === 0 || !parts.every((p) => COMPONENT.test(p))) throw bad("names are lower-case letters, digits and . _ - between them, separated by /");
  return { text, ...(registry && { registry }), name: parts.join("/"), ...(tag && { tag }), ...(digest && { digest }) };
}

/** The reference as skopeo's `docker://` transport takes it. */
export function registryLocation(ref: ImageReference): string {
  const tagOrDigest = ref.digest ? `@${ref.digest}` : `:${ref.tag ?? "latest"}`;
  return `docker://${ref.registry ? `${ref.registry}/` : ""}${ref.name}${tagOrDigest}`;
}
