import { posix } from "node:path";
import { parseDockerfile } from "../images/dockerfile.js";
import type { FileSource } from "./files.js";
import type { Service } from "./model.js";
import { problemAt, type Problem, type SourceLocation } from "./problems.js";

/**
 * A service built from a Dockerfile: the Dockerfile (in the build context, `Dockerfile` unless
 * named) is read and checked now, so that its mistakes show at their own file:line:col; the build
 * itself waits for a later release, which the warning says. Its findings are warnings: like the
 * build, they concern only the jobs that need the service, not the whole pipeline.
 */
export function checkImageBuild(at: SourceLocation, service: string, build: NonNullable<Service["build"]>, files: FileSource, problems: Problem[]): void {
  problems.push(problemAt(at, "needs_image_build", `service "${service}" is built from a Dockerfile; image builds come in a later Slipway release, so a job that needs this service fails until then`, "use a published image for now", "warning"));
  const path = posix.normalize(posix.join(build.context, build.dockerfile ?? "Dockerfile"));
  if (path.startsWith("../")) {
    problems.push(problemAt(at, "outside_repository", `the Dockerfile of service "${service}" (${path}) is outside the repository`, undefined, "warning"));
    return;
  }
  const read = files.read(path);
  if ("error" in read) {
    const why = { missing: "does not exist", too_large: "is too large", not_a_file: "is not a file", outside: "is a link that leaves the repository" }[read.error];
    problems.push(problemAt(at, "missing_dockerfile", `the Dockerfile of service "${service}", ${path}, ${why}`, undefined, "warning"));
    return;
  }
  problems.push(...parseDockerfile(read.text, path, build.args).problems.map((p) => ({ ...p, severity: "warning" as const })));
}
