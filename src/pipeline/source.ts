import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Pair, type Scalar } from "yaml";
import type { z } from "zod";
import { limits, problemAt, type Problem, type SourceLocation } from "./problems.js";

export type Path = readonly (string | number)[];

/** One parsed config file: its plain value, and a way back from any path in it to `line:col`. */
export class ParsedFile {
  constructor(
    readonly file: string,
    readonly value: unknown,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** Where the value at `path` starts (or its key, for findings about the key itself). */
  at(path: Path, part: "value" | "key" = "value"): SourceLocation {
    const found = this.find(path);
    const node = (part === "key" ? found.key : undefined) ?? found.value ?? found.key ?? found.parent;
    return this.loc(node?.range?.[0] ?? 0);
  }

  private loc(offset: number): SourceLocation {
    const { line, col } = this.lines.linePos(offset);
    return { file: this.file, line, col };
  }

  /** Walks the syntax tree like the value was walked, through aliases and `<<` merges; stops at the deepest node found. */
  private find(path: Path): { key?: Node; value?: Node; parent?: Node } {
    let node = this.doc.contents as Node | null;
    let key: Node | undefined;
    let parent: Node | undefined;
    for (const segment of path) {
      parent = node ?? parent;
      const pair = this.child(node, segment, 0);
      if (!pair) return { parent };
      key = pair.key;
      node = pair.value;
    }
    return { key, value: node ?? undefined, parent };
  }

  private child(node: Node | null, segment: string | number, depth: number): { key?: Node; value: Node | null } | undefined {
    if (depth > 8) return undefined;
    const target = this.deref(node);
    if (isSeq(target) && typeof segment === "number") {
      const item = target.items[segment];
      return item === undefined ? undefined : { value: item as Node | null };
    }
    if (!isMap(target)) return undefined;
    const pairs = target.items as Pair<Node | null, Node | null>[];
    for (const pair of pairs) {
      if (isScalar(pair.key) && !isMergeKey(pair.key) && String(pair.key.value) === String(segment)) return { key: pair.key, value: pair.value };
    }
    for (const pair of pairs) {
      if (!isPair(pair) || !isScalar(pair.key) || !isMergeKey(pair.key)) continue;
      const source = this.deref(pair.value);
      for (const merged of isSeq(source) ? (source.items as Node[]) : [pair.value as Node]) {
        const hit = this.child(merged, segment, depth + 1);
        if (hit) return hit;
      }
    }
    return undefined;
  }

  private deref(node: Node | null | undefined): Node | null | undefined {
    for (let i = 0; i < 8 && isAlias(node); i++) node = node.resolve(this.doc) as Node | undefined;
    return node;
  }

  /** A zod failure, as problems at the exact places it names. */
  zodProblems(error: z.ZodError, base: Path = []): Problem[] {
    const out: Problem[] = [];
    for (const issue of error.issues) {
      const path = [...base, ...(issue.path as (string | number)[])];
      if (issue.code === "unrecognized_keys") {
        for (const key of issue.keys) out.push(problemAt(this.at([...path, key], "key"), "unknown_key", `unknown key "${key}"`, path.length ? `in ${describePath(path)}` : undefined));
      } else if (issue.code === "invalid_key") {
        out.push(problemAt(this.at(path, "key"), "invalid_key", `${describePath(path)}: invalid name "${String(path.at(-1))}"${issue.issues[0] ? `: ${issue.issues[0].message}` : ""}`));
      } else {
        const missing = issue.code === "invalid_type" && /received undefined/.test(issue.message);
        const at = missing ? this.at(path.slice(0, -1)) : this.at(path);
        out.push(problemAt(at, missing ? "missing_field" : "invalid_value", missing ? `${describePath(path)} is required` : `${describePath(path)}: ${issue.message}`));
      }
    }
    return out;
  }

  /** Parses `value` at `path` with `schema`; on failure the problems go to `problems`. */
  check<T>(schema: z.ZodType<T>, value: unknown, path: Path, problems: Problem[]): T | undefined {
    const result = schema.safeParse(value);
    if (result.success) return result.data;
    problems.push(...this.zodProblems(result.error, path));
    // Unknown keys alone do not stop the reading, so the rest of the node is still checked.
    if (!result.error.issues.every((i) => i.code === "unrecognized_keys")) return undefined;
    const again = schema.safeParse(withoutKeys(value, result.error.issues as { path: PropertyKey[]; keys: string[] }[]));
    return again.success ? again.data : undefined;
  }
}

/** With `merge: true` the yaml package marks `<<` keys with a symbol value. */
const isMergeKey = (key: Scalar) => typeof key.value === "symbol" || key.value === "<<";

/** `steps[2].command`, for messages. */
export function describePath(path: Path): string {
  if (path.length === 0) return "the top level";
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

/**
 * Parses YAML (or JSON, which is YAML) with every bound a hostile file could stretch: size, alias
 * expansion, depth and node count. Never throws; every failure is a problem.
 */
export function parseConfigFile(file: string, text: string, problems: Problem[]): ParsedFile | undefined {
  const whole = { file, line: 0, col: 0 };
  if (Buffer.byteLength(text) > limits.fileBytes) {
    problems.push(problemAt(whole, "too_large", `${file} is larger than ${limits.fileBytes / 1024} KiB`, "split it, or drop what is not needed"));
    return undefined;
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, merge: true, strict: true, stringKeys: false });
  const at = (offset: number) => ({ file, ...lines.linePos(offset) });
  for (const w of doc.warnings) problems.push(problemAt(at(w.pos[0]), "yaml_warning", w.message.split("\n")[0]!, undefined, "warning"));
  if (doc.errors.length > 0) {
    for (const e of doc.errors) problems.push(problemAt(at(e.pos[0]), e.code === "RESOURCE_EXHAUSTION" ? "too_complex" : "yaml_syntax", e.message.split("\n")[0]!));
    return undefined;
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: limits.maxAliasCount });
  } catch (err) {
    // The yaml package throws on alias bombs and on aliases to nothing; both are the file's fault.
    const message = err instanceof Error ? err.message : String(err);
    const bomb = /alias count|resource exhaustion/i.test(message);
    problems.push(problemAt({ file, line: 1, col: 1 }, bomb ? "too_complex" : "yaml_syntax", bomb ? `${file} expands too many aliases (more than ${limits.maxAliasCount})` : message));
    return undefined;
  }
  if (countNodes(value) > limits.nodes) {
    problems.push(problemAt({ file, line: 1, col: 1 }, "too_complex", `${file} has more than ${limits.nodes} values`));
    return undefined;
  }
  return new ParsedFile(file, value, doc, lines);
}

/** Counts values, sharing included (an alias counts each time it is used); stops early past the limit. */
function countNodes(root: unknown): number {
  let count = 0;
  const stack: unknown[] = [root];
  while (stack.length > 0 && count <= limits.nodes) {
    const v = stack.pop();
    count++;
    if (Array.isArray(v)) stack.push(...v.slice(0, limits.nodes));
    else if (v !== null && typeof v === "object") stack.push(...Object.values(v as object).slice(0, limits.nodes));
  }
  return count;
}

/** A copy of `value` without the named keys at the named places. */
function withoutKeys(value: unknown, drops: { path: PropertyKey[]; keys: string[] }[]): unknown {
  const copy = structuredClone(value);
  for (const drop of drops) {
    let node: unknown = copy;
    for (const seg of drop.path) node = node !== null && typeof node === "object" ? (node as Record<PropertyKey, unknown>)[seg] : undefined;
    if (node !== null && typeof node === "object") for (const key of drop.keys) delete (node as Record<string, unknown>)[key];
  }
  return copy;
}
