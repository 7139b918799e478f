import { posix } from "node:path";
import { limits, problemAt, type Problem } from "../pipeline/problems.js";
import { ImageError, parseImageReference } from "./reference.js";

/**
 * Dockerfiles as Slipway builds them: the instructions of the three config families' builds
 * (Codeship `build`, Gitpod `image.file`, dev containers' `build`), read into stages before any
 * sandbox starts, so that a mistake is reported at its file:line:col rather than halfway through
 * a build. Parsing never throws: every finding is a Problem.
 */

export interface Position {
  line: number;
  col: number;
}

/** A command as written: exec form (JSON array, no shell) or shell form (run by /bin/sh -c). */
export type Command = { exec: string[] } | { shell: string };

/** A build secret a RUN step reads (`--mount=type=secret`): in a tmpfs file for that step only, never in a layer. */
export interface SecretMount {
  id: string;
  target: string;
  required: boolean;
}

export type Instruction = { at: Position } & (
  | { kind: "ARG"; name: string; value?: string }
  | { kind: "RUN"; command: Command; secrets: SecretMount[] }
  | { kind: "COPY" | "ADD"; sources: string[]; dest: string; from?: string; chown?: string; chmod?: string }
  | { kind: "ENV"; vars: Array<[string, string]> }
  | { kind: "LABEL"; labels: Array<[string, string]> }
  | { kind: "WORKDIR"; path: string }
  | { kind: "USER"; user: string }
  | { kind: "ENTRYPOINT" | "CMD"; command: Command }
  | { kind: "EXPOSE"; ports: string[] }
);

export type StageBase = { kind: "scratch" } | { kind: "stage"; index: number } | { kind: "image"; ref: string };

export interface Stage {
  index: number;
  name?: string;
  base: StageBase;
  at: Position;
  instructions: Instruction[];
}

export interface Dockerfile {
  stages: Stage[];
  problems: Problem[];
}

const SUPPORTED = ["FROM", "ARG", "RUN", "COPY", "ADD", "ENV", "LABEL", "WORKDIR", "USER", "ENTRYPOINT", "CMD", "EXPOSE"];
const MAX_INSTRUCTIONS = 2_000;
const STAGE_NAME = /^[a-z][a-z0-9._-]{0,127}$/;
const VARIABLE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** One instruction, its continuation lines joined, with where each of its characters was written. */
interface Logical {
  text: string;
  at: Position[];
}

/** Where character `i` of a logical line was written (its end, past the last character). */
const posOf = (l: Logical, i: number): Position => l.at[Math.min(i, l.at.length - 1)] ?? { line: 1, col: 1 };

/**
 * Parses a Dockerfile. `buildArgs` are the build's `--build-arg` values (Codeship `args`,
 * devcontainer `build.args`); they fill ARGs the file declares, as Docker does.
 */
export function parseDockerfile(text: string, file: string, buildArgs: Record<string, string> = {}): Dockerfile {
  const problems: Problem[] = [];
  const err = (at: Position, code: string, message: string, hint?: string) => problems.push(problemAt({ file, ...at }, code, message, hint));
  if (Buffer.byteLength(text) > limits.fileBytes) {
    err({ line: 0, col: 0 }, "too_large", `the Dockerfile is larger than ${limits.fileBytes} bytes`);
    return { stages: [], problems };
  }
  const stages: Stage[] = [];
  const globalArgs = new Map<string, string | undefined>();
  let vars = new Map<string, string>();
  let count = 0;

  for (const logical of logicalLines(text, err)) {
    if (++count > MAX_INSTRUCTIONS) {
      err(posOf(logical, 0), "too_many", `more than ${MAX_INSTRUCTIONS} instructions; split the build`);
      break;
    }
    // A line that was only a continuation mark leaves its instruction starting on the next line.
    const m = /^\s*(\S+)(\s*)/.exec(logical.text);
    if (!m) continue;
    const keyword = m[1]!.toUpperCase();
    const at = posOf(logical, m[0].length - m[1]!.length - m[2]!.length);
    const body = { text: logical.text.slice(m[0].length), at: logical.at.slice(m[0].length) };
    if (!SUPPORTED.includes(keyword)) {
      err(at, "unsupported_instruction", `${m[1]} is not an instruction Slipway builds`, `use ${SUPPORTED.join(", ")}`);
      continue;
    }
    const stage = stages.at(-1);
    if (keyword === "FROM") {
      const next = fromInstruction(body, at, stages, (name) => globalArgs.get(name) ?? buildArgs[name], err);
      if (next) {
        stages.push(next);
        // Each stage starts with no variables but the global ARGs it declares again.
        vars = new Map();
      }
      continue;
    }
    if (!stage && keyword !== "ARG") {
      err(at, "before_from", `${keyword} comes before any FROM`, "start the Dockerfile with FROM (only ARG may come before it)");
      continue;
    }
    const env = (name: string) => vars.get(name) ?? (stage ? undefined : globalArgs.get(name));
    const instruction = parseInstruction(keyword, body, at, env, err);
    if (!instruction) continue;
    if (instruction.kind === "ARG") {
      if (!stage) globalArgs.set(instruction.name, buildArgs[instruction.name] ?? instruction.value);
      else {
        const value = buildArgs[instruction.name] ?? instruction.value ?? globalArgs.get(instruction.name);
        if (value !== undefined) vars.set(instruction.name, value);
      }
    }
    if (instruction.kind === "ENV") for (const [k, v] of instruction.vars) vars.set(k, v);
    stage?.instructions.push(instruction);
  }
  if (!stages.length && !problems.length) err({ line: 0, col: 0 }, "no_from", "the Dockerfile has no FROM", "start it with FROM <image> (or FROM scratch)");
  return { stages, problems };
}

/** The stages a build of `target` (default: the last) runs, in order: that stage and those it builds on or copies from. */
export function stagesFor(dockerfile: Dockerfile, file: string, target?: string): Stage[] | Problem {
  const { stages } = dockerfile;
  const last = target === undefined ? stages.at(-1) : stages.find((s) => s.name === target.toLowerCase());
  if (!last) return problemAt({ file, line: 0, col: 0 }, "unknown_target", `the Dockerfile has no stage named "${target}"`, `name one of: ${stages.flatMap((s) => (s.name ? [s.name] : [])).join(", ") || "(none is named: add AS <name> to a FROM)"}`);
  const needed = new Set<number>();
  const visit = (stage: Stage) => {
    if (needed.has(stage.index)) return;
    needed.add(stage.index);
    if (stage.base.kind === "stage") visit(stages[stage.base.index]!);
    for (const i of stage.instructions) {
      const from = (i.kind === "COPY" || i.kind === "ADD") && i.from !== undefined ? stageNamed(stages.slice(0, stage.index), i.from) : undefined;
      if (from) visit(from);
    }
  };
  visit(last);
  return stages.filter((s) => needed.has(s.index));
}

const stageNamed = (earlier: Stage[], name: string) => earlier.find((s) => s.name === name.toLowerCase()) ?? (/^\d+$/.test(name) ? earlier[Number(name)] : undefined);

type Report = (at: Position, code: string, message: string, hint?: string) => void;

/** Joins continuation lines, drops comments and blank lines, and reads the parser directives at the top. */
function* logicalLines(text: string, err: Report): Generator<Logical> {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  let escape = "\\";
  let directives = true;
  let current: Logical | undefined;
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n]!;
    const trimmed = raw.trim();
    if (directives) {
      const d = /^#\s*([a-zA-Z]+)\s*=\s*(.*?)\s*$/.exec(trimmed);
      if (d && d[1]!.toLowerCase() === "escape") {
        if (d[2] === "\\" || d[2] === "`") escape = d[2];
        else err({ line: n + 1, col: raw.indexOf(d[2]!) + 1 }, "invalid_directive", `the escape directive takes \\ or \`, not "${d[2]}"`);
        continue;
      }
      if (d) continue;
      directives = false;
    }
    if (!current && (trimmed === "" || trimmed.startsWith("#"))) continue;
    // Inside an instruction, comment lines and blank lines are skipped, as Docker does.
    if (current && (trimmed === "" || trimmed.startsWith("#"))) continue;
    const start = current ? 0 : raw.length - raw.trimStart().length;
    let end = raw.trimEnd().length;
    const continues = end > start && raw[end - 1] === escape;
    if (continues) end--;
    current ??= { text: "", at: [] };
    for (let i = start; i < end; i++) {
      current.text += raw[i];
      current.at.push({ line: n + 1, col: i + 1 });
    }
    if (continues) continue;
    current.at.push({ line: n + 1, col: end + 1 });
    yield current;
    current = undefined;
  }
  if (current) {
    current.at.push(current.at.at(-1) ?? { line: lines.length, col: 1 });
    yield current;
  }
}

/** `--name=value` flags at the start of an instruction's arguments, then the rest. */
function takeFlags(body: Logical): { flags: Array<{ name: string; value: string; at: Position }>; rest: Logical } {
  const flags: Array<{ name: string; value: string; at: Position }> = [];
  let offset = 0;
  for (;;) {
    const m = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(body.text.slice(offset));
    if (!m) break;
    flags.push({ name: m[1]!, value: m[2] ?? "", at: posOf(body, offset) });
    offset += m[0].length;
  }
  return { flags, rest: { text: body.text.slice(offset), at: body.at.slice(offset) } };
}

function fromInstruction(body: Logical, at: Position, stages: Stage[], arg: (name: string) => string | undefined, err: Report): Stage | undefined {
  const { flags, rest } = takeFlags(body);
  for (const f of flags) if (f.name !== "platform") err(f.at, "unsupported_flag", `FROM --${f.name} is not supported`);
  const words = rest.text.split(/\s+/).filter(Boolean);
  if (words.length !== 1 && !(words.length === 3 && words[1]!.toUpperCase() === "AS")) {
    err(at, "invalid_from", "FROM takes an image and, for a stage of a multi-stage build, AS <name>", "e.g. FROM debian:bookworm AS build");
    return undefined;
  }
  const name = words[2]?.toLowerCase();
  if (name !== undefined) {
    const nameAt = posOf(rest, rest.text.lastIndexOf(words[2]!));
    if (!STAGE_NAME.test(name)) err(nameAt, "invalid_stage_name", `"${words[2]}" is not a stage name`, "use lowercase letters, digits, '.', '_' and '-', starting with a letter");
    else if (stages.some((s) => s.name === name)) err(nameAt, "duplicate_stage", `a stage named "${name}" comes earlier`);
  }
  const image = substitute(words[0]!, arg);
  const index = stages.length;
  const base = baseOf(image, stages, posOf(rest, 0), err);
  return base && { index, ...(name !== undefined && STAGE_NAME.test(name) && { name }), base, at, instructions: [] };
}

function baseOf(image: string, stages: Stage[], at: Position, err: Report): StageBase | undefined {
  if (image.toLowerCase() === "scratch") return { kind: "scratch" };
  const earlier = stages.find((s) => s.name === image.toLowerCase());
  if (earlier) return { kind: "stage", index: earlier.index };
  try {
    parseImageReference(image);
    return { kind: "image", ref: image };
  } catch (e) {
    if (!(e instanceof ImageError)) throw e;
    err(at, "invalid_image", e.message);
    return undefined;
  }
}

function parseInstruction(keyword: string, body: Logical, at: Position, env: (name: string) => string | undefined, err: Report): Instruction | undefined {
  const allowed: Record<string, string[]> = { RUN: ["mount"], COPY: ["from", "chown", "chmod"], ADD: ["chown", "chmod"] };
  // Only these take flags; elsewhere (CMD --help) a leading -- is part of the arguments.
  const { flags, rest } = allowed[keyword] ? takeFlags(body) : { flags: [], rest: body };
  for (const f of flags) if (!allowed[keyword]!.includes(f.name)) err(f.at, "unsupported_flag", `${keyword} --${f.name} is not supported`);
  const flag = (name: string) => flags.find((f) => f.name === name);
  const args = rest.text;
  const argsAt = posOf(rest, 0);
  if (args.trim() === "") {
    err(at, "missing_arguments", `${keyword} needs arguments`);
    return undefined;
  }
  if (/<<-?\s*["']?[A-Za-z_]/.test(args) && ["RUN", "COPY", "ADD"].includes(keyword)) {
    err(argsAt, "unsupported_heredoc", `here-documents in ${keyword} are not supported`, "put the text in a file of the build context and COPY it");
    return undefined;
  }
  switch (keyword) {
    case "ARG": {
      const m = /^([^=\s]+)(?:=(.*))?$/.exec(args.trim());
      if (!m || !VARIABLE.test(m[1]!)) {
        err(argsAt, "invalid_arg", `"${args.trim()}" is not an ARG: write ARG NAME or ARG NAME=default`);
        return undefined;
      }
      return { kind: "ARG", at, name: m[1]!, ...(m[2] !== undefined && { value: unquote(substitute(m[2], env)) }) };
    }
    case "RUN": {
      const secrets: SecretMount[] = [];
      for (const f of flags.filter((x) => x.name === "mount")) {
        const mount = secretMount(f.value);
        if (typeof mount === "string") err(f.at, "invalid_mount", mount, "write --mount=type=secret,id=<name>[,target=<path>][,required]");
        else secrets.push(mount);
      }
      return { kind: "RUN", at, command: command(args), secrets };
    }
    case "COPY":
    case "ADD": {
      const paths = (jsonArray(args) ?? args.trim().split(/\s+/)).map((p) => substitute(p, env));
      if (paths.length < 2) {
        err(argsAt, "invalid_copy", `${keyword} takes one or more sources and a destination`);
        return undefined;
      }
      const sources = paths.slice(0, -1);
      const from = flag("from")?.value;
      for (const s of sources) {
        if (keyword === "ADD" && /^[a-z][a-z0-9+.-]*:\/\//i.test(s)) err(argsAt, "unsupported_add_url", `ADD from a URL (${s}) is not supported`, "download it in a RUN step, so the build states what it fetched");
        // Sources from another stage are paths in that stage; only the context is confined.
        else if (from === undefined && /^\.\.(\/|$)/.test(posix.normalize(s.replace(/^\/+/, "") || "."))) err(argsAt, "outside_context", `${s} is outside the build context`, "copy files from inside the context directory only");
      }
      return { kind: keyword, at, sources, dest: paths.at(-1)!, ...(from !== undefined && { from }), ...(flag("chown") && { chown: substitute(flag("chown")!.value, env) }), ...(flag("chmod") && { chmod: flag("chmod")!.value }) };
    }
    case "ENV":
    case "LABEL": {
      const pairs = keyValues(args, keyword === "ENV", env);
      if (typeof pairs === "string") {
        err(argsAt, `invalid_${keyword.toLowerCase()}`, pairs);
        return undefined;
      }
      return keyword === "ENV" ? { kind: "ENV", at, vars: pairs } : { kind: "LABEL", at, labels: pairs };
    }
    case "WORKDIR":
      return { kind: "WORKDIR", at, path: substitute(args.trim(), env) };
    case "USER":
      return { kind: "USER", at, user: substitute(args.trim(), env) };
    case "ENTRYPOINT":
    case "CMD":
      return { kind: keyword, at, command: command(args) };
    default:
      return { kind: "EXPOSE", at, ports: args.trim().split(/\s+/).map((p) => substitute(p, env)) };
  }
}

/** Exec form when the arguments are a JSON array of strings; otherwise (as Docker does) shell form. */
const command = (args: string): Command => {
  const exec = jsonArray(args);
  return exec ? { exec } : { shell: args.trim() };
};

function jsonArray(args: string): string[] | undefined {
  if (!args.trim().startsWith("[")) return undefined;
  try {
    const value: unknown = JSON.parse(args);
    return Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === "string") ? value : undefined;
  } catch {
    return undefined;
  }
}

function secretMount(spec: string): SecretMount | string {
  const fields = new Map<string, string>();
  for (const part of spec.split(",")) {
    const [k, v] = part.split("=", 2) as [string, string | undefined];
    fields.set(k.trim(), v?.trim() ?? "true");
  }
  if (fields.get("type") !== "secret") return `only --mount=type=secret is supported, not "${spec}"`;
  const id = fields.get("id");
  if (!id || !VARIABLE.test(id)) return "a secret mount needs id=<name>, the name of the build secret";
  const target = fields.get("target") ?? fields.get("dst") ?? `/run/secrets/${id}`;
  if (!target.startsWith("/") || posix.normalize(target) !== target) return `the secret's target must be an absolute path, not "${target}"`;
  const unknown = [...fields.keys()].filter((k) => !["type", "id", "target", "dst", "required"].includes(k));
  if (unknown.length) return `a secret mount has no option ${unknown.join(", ")}`;
  return { id, target, required: fields.get("required") === "true" };
}

/** `k=v k2="v 2"` pairs, or for ENV the legacy `NAME value with spaces`. */
function keyValues(args: string, legacy: boolean, env: (name: string) => string | undefined): Array<[string, string]> | string {
  const text = args.trim();
  const first = /^([^\s=]+)(\s+|=|$)/.exec(text);
  if (legacy && first && first[2] !== "=") {
    if (!VARIABLE.test(first[1]!)) return `"${first[1]}" is not a variable name`;
    return [[first[1]!, unquote(substitute(text.slice(first[0].length), env))]];
  }
  const pairs: Array<[string, string]> = [];
  const re = /([^\s=]+)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)\s*/gy;
  let m: RegExpExecArray | null;
  let offset = 0;
  while ((m = re.exec(text))) {
    offset = re.lastIndex;
    if (legacy && !VARIABLE.test(m[1]!)) return `"${m[1]}" is not a variable name`;
    // Single quotes keep $ literal, as in a shell.
    pairs.push([m[1]!, m[2]!.startsWith("'") ? unquote(m[2]!) : unquote(substitute(m[2]!, env))]);
  }
  if (offset !== text.length || !pairs.length) return `"${text.slice(offset)}" is not a key=value pair`;
  return pairs;
}

const unquote = (v: string) => (/^"(.*)"$/s.test(v) ? v.slice(1, -1).replace(/\\(.)/g, "$1") : /^'(.*)'$/s.test(v) ? v.slice(1, -1) : v);

/** `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}`; `\$` stays a dollar sign. Unknown names are empty, as in Docker. */
export function substitute(text: string, value: (name: string) => string | undefined): string {
  return text.replace(/\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, braced?: string, op?: string, word?: string, bare?: string) => {
    if (all === "\\$") return "$";
    const v = value((braced ?? bare)!);
    if (op === "-") return v ? v : (word ?? "");
    if (op === "+") return v ? (word ?? "") : "";
    return v ?? "";
  });
}
