import { posix } from "node:path";
import { z } from "zod";
import { readCommand, readEnvMap, readRepoPath } from "./common.js";
import type { FileSource } from "./files.js";
import { checkImageBuild } from "./image-builds.js";
import type { Command, ImageBuild } from "./model.js";
import { problemAt, type Problem } from "./problems.js";
import type { ParsedFile, Path } from "./source.js";
import type { WorkspaceImage, WorkspacePort } from "./workspace-model.js";

/** What the three workspace formats share. */

export const portValueSchema = z.union([z.number().int(), z.string().min(1)], { error: 'expected a port number or a range like "3000-3010"' });

/** `git config --global` entries: `section.key` (or `section.sub.key`) to a value on one line. */
export const gitConfigSchema = z.record(z.string().regex(/^[A-Za-z][A-Za-z0-9-]*(\.[^\s=\0]+)+$/, { error: "a git config key like user.name" }), z.string().regex(/^[^\n\0]*$/, { error: "a value on one line" }));

/** Ranges wider than this are refused: the proxy watches each port of a range. */
export const MAX_PORT_RANGE = 1000;

/** `3000`, `"3000"` or `"3000-3010"`. */
export function readPortRange(value: number | string, file: ParsedFile, path: Path, problems: Problem[]): { from: number; to: number } | undefined {
  const m = typeof value === "number" ? [String(value), String(value), undefined] : /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(value);
  const from = m ? Number(m[1]) : NaN;
  const to = m?.[2] !== undefined ? Number(m[2]) : from;
  const valid = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
  if (!valid(from) || !valid(to) || to < from) {
    problems.push(problemAt(file.at(path), "invalid_port", `${JSON.stringify(value)} is not a port (1-65535) or a range of ports like "3000-3010"`));
    return undefined;
  }
  if (to - from >= MAX_PORT_RANGE) {
    problems.push(problemAt(file.at(path), "invalid_port", `the range ${from}-${to} has more than ${MAX_PORT_RANGE} ports`, "name the ports the project uses"));
    return undefined;
  }
  return { from, to };
}

type PortAttributes = Partial<Pick<WorkspacePort, "name" | "description" | "visibility" | "onOpen" | "protocol">>;

/** A port with the attributes given; the rest as Gitpod's defaults (private, notify, http). */
export function portWith(range: { from: number; to: number }, attributes: PortAttributes = {}): WorkspacePort {
  const given = Object.fromEntries(Object.entries(attributes).filter(([, v]) => v !== undefined));
  return { visibility: "private", onOpen: "notify", protocol: "http", ...given, from: range.from, to: range.to };
}

export function readTaskCommand(value: string | string[] | undefined, file: ParsedFile, path: Path, problems: Problem[]): Command | undefined {
  return value === undefined ? undefined : readCommand(value, file, path, problems, "shell");
}

/**
 * A workspace image built from a Dockerfile. Both paths are relative to `base` (the repository
 * root, or the folder of devcontainer.json) and must stay inside the repository.
 */
export function readWorkspaceBuild(
  raw: { dockerfile: string; context?: string; args?: Record<string, string | number | boolean>; target?: string },
  base: string,
  at: { dockerfile: Path; context: Path; args: Path },
  file: ParsedFile,
  files: FileSource,
  problems: Problem[],
): WorkspaceImage | undefined {
  const inRepo = (value: string, path: Path) => {
    const joined = posix.normalize(posix.join(base, value));
    return readRepoPath(joined === "." ? "." : joined, file, path, problems) && joined;
  };
  const dockerfile = inRepo(raw.dockerfile, at.dockerfile);
  const context = inRepo(raw.context ?? ".", at.context);
  if (!dockerfile || !context) return undefined;
  const build: ImageBuild = { context, dockerfile: posix.relative(context, dockerfile), args: readEnvMap(raw.args, file, at.args, problems), encryptedArgsFile: [], ...(raw.target !== undefined && { target: raw.target }) };
  checkImageBuild(file.at(at.dockerfile), "the workspace image", build, files, problems);
  return { kind: "build", build };
}

/** Keys a format defines that Slipway does not act on: a warning each, then they are dropped before the strict check. */
export function dropUnsupported(value: unknown, unsupported: Record<string, string>, file: ParsedFile, path: Path, problems: Problem[]): unknown {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  const kept: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const why = Object.hasOwn(unsupported, key) ? unsupported[key] : undefined;
    if (why === undefined) kept[key] = v;
    else problems.push(problemAt(file.at([...path, key], "key"), "unsupported_key", `"${key}" is not supported and is ignored`, why || undefined, "warning"));
  }
  return kept;
}
