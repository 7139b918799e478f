import { posix } from "node:path";
import { parseDockerfile, stagesFor } from "../images/dockerfile.js";
import type { FileSource } from "./files.js";
import type { ImageBuild } from "./model.js";
import { problemAt, type Problem, type SourceLocation } from "./problems.js";

/**
 * An image built from a Dockerfile (a service's, a workspace's): the Dockerfile (in the build
 * context, `Dockerfile` unless named) is read and checked now, so that its mistakes show at their
 * own file:line:col. Its findings are warnings: like the build, they concern only what needs the
 * image (the jobs of the service), not the whole config.
 */
export function checkImageBuild(at: SourceLocation, what: string, build: ImageBuild, files: FileSource, problems: Problem[]): void {
  const path = dockerfilePath(build);
  if (path.startsWith("../")) {
    problems.push(problemAt(at, "outside_repository", `the Dockerfile of ${what} (${path}) is outside the repository`, undefined, "warning"));
    return;
  }
  const read = files.read(path);
  if ("error" in read) {
    const why = { missing: "does not exist", too_large: "is too large", not_a_file: "is not a file", outside: "is a link that leaves the repository" }[read.error];
    problems.push(problemAt(at, "missing_dockerfile", `the Dockerfile of ${what}, ${path}, ${why}`, undefined, "warning"));
    return;
  }
  const dockerfile = parseDockerfile(read.text, path, build.args);
  const problemsOf = [...dockerfile.problems];
  if (build.target !== undefined) {
    const stages = stagesFor(dockerfile, path, build.target);
    if (!Array.isArray(stages)) problemsOf.push(stages as Problem);
  }
  problems.push(...problemsOf.map((p) => ({ ...p, severity: "warning" as const })));
}

/** Where a build's Dockerfile is in the repository: named relative to its context, `Dockerfile` unless named. */
export function dockerfilePath(build: Pick<ImageBuild, "context" | "dockerfile">): string {
  return posix.normalize(posix.join(build.context, build.dockerfile ?? "Dockerfile"));
}
