import { classifyEncryptedFile, reencryptHint } from "./encrypted.js";
import type { FileSource } from "./files.js";
import type { Service } from "./model.js";
import { problemAt, type Problem, type SourceLocation } from "./problems.js";
import type { ParsedFile, Path } from "./source.js";

/** Unknown `depends_on` targets, and cycles, each named once with the place that closes it. */
export function checkDependencies(services: Record<string, Service>, locate: (service: string, index: number) => SourceLocation, problems: Problem[]): void {
  for (const s of Object.values(services)) {
    s.dependsOn.forEach((dep, i) => {
      if (!Object.hasOwn(services, dep)) problems.push(problemAt(locate(s.name, i), "unknown_service", `service "${s.name}" depends on unknown service "${dep}"`));
    });
  }
  const state = new Map<string, "visiting" | "done">();
  const stack: string[] = [];
  const visit = (name: string): void => {
    state.set(name, "visiting");
    stack.push(name);
    const deps = services[name]!.dependsOn;
    deps.forEach((dep, i) => {
      if (!Object.hasOwn(services, dep)) return;
      if (state.get(dep) === "visiting") {
        const cycle = [...stack.slice(stack.indexOf(dep)), dep];
        problems.push(problemAt(locate(name, i), "dependency_cycle", `depends_on cycle: ${cycle.join(" → ")}`, "a service cannot wait for itself; remove one of these depends_on entries"));
      } else if (!state.has(dep)) visit(dep);
    });
    stack.pop();
    state.set(name, "done");
  };
  for (const name of Object.keys(services)) if (!state.has(name)) visit(name);
}

/** An env file named by a service must exist; an encrypted one must be in Slipway's format. */
export function checkEnvFile(relPath: string, encrypted: boolean, files: FileSource, file: ParsedFile, path: Path, problems: Problem[]): void {
  const at = file.at(path);
  const read = files.read(relPath);
  if ("error" in read) {
    const why = { missing: "does not exist", too_large: "is too large", not_a_file: "is not a file", outside: "resolves outside the repository" }[read.error];
    problems.push(problemAt(at, "missing_file", `${relPath} ${why}`));
    return;
  }
  if (!encrypted) return;
  const kind = classifyEncryptedFile(read.text);
  if (kind === "codeship") {
    problems.push(problemAt(at, "codeship_encrypted", `${relPath} is encrypted with Codeship's key, which Slipway cannot open`, `decrypt it with "jet decrypt", then ${reencryptHint(relPath)}`));
  } else if (kind !== "slipway") {
    problems.push(problemAt(at, "not_encrypted", `${relPath} is not encrypted in Slipway's format`, `${reencryptHint(relPath)}, and never commit the plain file`));
  }
}
