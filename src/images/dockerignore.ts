import { posix } from "node:path";
import { limits, problemAt, type Problem } from "../pipeline/problems.js";

/**
 * `.dockerignore`: which files of a build context are left out of the build, with Docker's
 * rules: one pattern a line, `#` comments, `*` and `?` within a path segment, `**` across
 * segments, `[...]` classes, `!` to take a path back in; the last pattern that matches a path, or
 * one of its parent directories, decides.
 */
export interface IgnoreRule {
  pattern: string;
  negate: boolean;
  line: number;
  regex: RegExp;
}

export function parseDockerignore(text: string, file: string): { rules: IgnoreRule[]; problems: Problem[] } {
  const problems: Problem[] = [];
  if (Buffer.byteLength(text) > limits.fileBytes) return { rules: [], problems: [problemAt({ file, line: 0, col: 0 }, "too_large", `${file} is larger than ${limits.fileBytes} bytes`)] };
  const rules: IgnoreRule[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    let pattern = raw.trim();
    if (!pattern || pattern.startsWith("#")) return;
    const negate = pattern.startsWith("!");
    if (negate) pattern = pattern.slice(1).trim();
    // Paths are relative to the context: a leading / and ./ mean nothing more, as in Docker.
    pattern = posix.normalize(pattern.replace(/^\/+/, "")).replace(/\/+$/, "");
    if (pattern === "." || pattern === "") return;
    const regex = toRegex(pattern);
    if (!regex) {
      problems.push(problemAt({ file, line: i + 1, col: raw.indexOf(pattern[0] ?? "") + 1 }, "invalid_pattern", `"${pattern}" is not a pattern: a [ has no closing ]`));
      return;
    }
    rules.push({ pattern, negate, line: i + 1, regex });
  });
  return { rules, problems };
}

/** Whether the context's file or directory at `path` (relative, with /) is left out of the build. */
export function isIgnored(rules: readonly IgnoreRule[], path: string): boolean {
  const parts = posix.normalize(path).split("/");
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
  let ignored = false;
  for (const rule of rules) if (candidates.some((c) => rule.regex.test(c))) ignored = !rule.negate;
  return ignored;
}

/** Go's filepath.Match within a segment, plus `**` for any number of segments; undefined when a class is unclosed. */
function toRegex(pattern: string): RegExp | undefined {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*" && pattern[i + 1] === "*") {
      const slashAfter = pattern[i + 2] === "/";
      re += slashAfter ? "(?:.*/)?" : ".*";
      i += slashAfter ? 2 : 1;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) return undefined;
      const body = pattern.slice(i + 1, end).replace(/^!/, "^").replace(/\\/g, "\\\\");
      re += `[${body}]`;
      i = end;
    } else if (c === "\\" && i + 1 < pattern.length) re += escapeChar(pattern[++i]!);
    else re += escapeChar(c);
  }
  return new RegExp(`^${re}$`);
}

const escapeChar = (c: string) => c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
