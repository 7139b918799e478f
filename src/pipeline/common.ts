import { z } from "zod";
import { parseImageReference } from "../images/reference.js";
import type { Command, Healthcheck, RefFilter } from "./model.js";
import { limits, problemAt, type Problem } from "./problems.js";
import type { ParsedFile, Path } from "./source.js";

/** What both readers accept for the same idea, and the checks they share. */

export const envNameSchema = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: "must be letters, digits and _, not starting with a digit" });
export const scalarSchema = z.union([z.string(), z.number(), z.boolean()], { error: "expected a string, number or boolean" });
export const envMapSchema = z.record(envNameSchema, scalarSchema);
export const stringOrListSchema = z.union([z.string(), z.array(z.string())], { error: "expected a string or a list of strings" });
/** An image reference, checked as the runner will read it; `host` is the runner's own /usr. */
export const imageSchema = z
  .string()
  .min(1)
  .superRefine((value, ctx) => {
    if (value === "host") return;
    try {
      parseImageReference(value);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message });
    }
  });

export const durationSchema = z.union([z.number().positive(), z.string()], { error: 'expected seconds or a duration like "20m" or "1h30m"' });

/** `value starts with ^ or ends with $` → regex, else exact. */
export function parseRefFilter(value: string): RefFilter {
  return { pattern: value, regex: value.startsWith("^") || value.endsWith("$") };
}

export function readRefFilter(value: string | number, file: ParsedFile, path: Path, problems: Problem[]): RefFilter | undefined {
  const filter = parseRefFilter(String(value));
  if (!filter.regex) return filter;
  if (filter.pattern.length > limits.regexLength) {
    problems.push(problemAt(file.at(path), "invalid_regex", `regular expression longer than ${limits.regexLength} characters`));
    return undefined;
  }
  try {
    new RegExp(filter.pattern);
  } catch (err) {
    problems.push(problemAt(file.at(path), "invalid_regex", `invalid regular expression ${JSON.stringify(filter.pattern)}: ${(err as Error).message.replace(/^Invalid regular expression: \/.*\/: /, "")}`, "a value starting with ^ or ending with $ is a regular expression; otherwise it must equal the name exactly"));
    return undefined;
  }
  return filter;
}

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `90` (seconds), `"90s"`, `"20m"`, `"1h30m"` → milliseconds. */
interface HealthTimings {
  interval?: number | string;
  timeout?: number | string;
  retries?: number;
  start_period?: number | string;
}

/** A health check's timing keys (same names in both formats), with each format's defaults for missing ones. */
export function readHealthcheck(command: Command, h: HealthTimings, defaults: { intervalMs: number; timeoutMs: number; retries: number }, file: ParsedFile, path: Path, problems: Problem[]): Healthcheck {
  const ms = (v: number | string | undefined, key: string, dflt: number) => (v === undefined ? dflt : (readDuration(v, file, [...path, key], problems) ?? dflt));
  return { command, intervalMs: ms(h.interval, "interval", defaults.intervalMs), timeoutMs: ms(h.timeout, "timeout", defaults.timeoutMs), retries: h.retries ?? defaults.retries, startPeriodMs: ms(h.start_period, "start_period", 0) };
}

export function readDuration(value: number | string, file: ParsedFile, path: Path, problems: Problem[]): number | undefined {
  let ms: number | undefined;
  if (typeof value === "number") ms = Math.round(value * 1000);
  else if (/^\s*\d+\s*$/.test(value)) ms = Number(value) * 1000;
  else if (/^(\d+(ms|s|m|h))+$/.test(value.trim())) {
    ms = 0;
    for (const [, n, unit] of value.trim().matchAll(/(\d+)(ms|s|m|h)/g)) ms += Number(n) * units[unit!]!;
  }
  if (ms === undefined || !Number.isFinite(ms) || ms <= 0) {
    problems.push(problemAt(file.at(path), "invalid_value", `invalid duration ${JSON.stringify(value)}`, 'use seconds or a duration like "20m" or "1h30m"'));
    return undefined;
  }
  if (ms > limits.maxTimeoutMs) {
    problems.push(problemAt(file.at(path), "invalid_value", `duration ${JSON.stringify(value)} is longer than 24h`));
    return undefined;
  }
  return ms;
}

/** A NUL byte cannot reach a process: argv and the environment are C strings. */
export function refuseNul(value: string, file: ParsedFile, path: Path, what: string, problems: Problem[]): boolean {
  if (!value.includes("\0")) return true;
  problems.push(problemAt(file.at(path), "nul_byte", `${what} contains a NUL byte`, "remove the \\0 / \\x00 escape"));
  return false;
}

export function readEnvMap(value: Record<string, string | number | boolean> | undefined, file: ParsedFile, path: Path, problems: Problem[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, raw] of Object.entries(value ?? {})) {
    const v = String(raw);
    if (refuseNul(v, file, [...path, name], `the value of ${name}`, problems)) env[name] = v;
  }
  return env;
}

export function readCommand(value: string | string[], file: ParsedFile, path: Path, problems: Problem[], strings: "shell" | "words"): Command | undefined {
  const parts = typeof value === "string" ? [value] : value;
  if (!parts.every((p, i) => refuseNul(p, file, typeof value === "string" ? path : [...path, i], "the command", problems))) return undefined;
  if (Array.isArray(value)) return value.length > 0 ? { kind: "argv", argv: value } : undefined;
  if (value.trim() === "") {
    problems.push(problemAt(file.at(path), "invalid_value", "the command is empty"));
    return undefined;
  }
  if (strings === "shell") return { kind: "shell", script: value };
  const argv = splitWords(value);
  if (!argv) {
    problems.push(problemAt(file.at(path), "invalid_value", "the command has an unclosed quote", "Codeship runs a command without a shell; quote like sh -c 'a && b'"));
    return undefined;
  }
  return { kind: "argv", argv };
}

const shellQuote = (word: string): string => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`);

/** A command as a line of shell script: a script as it is, a list of arguments quoted. */
export const commandScript = (command: Command): string => (command.kind === "shell" ? command.script : command.argv.map(shellQuote).join(" "));

export const toList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : typeof v === "string" ? [v] : v);

/**
 * Splits a command into words the way Codeship did (no shell: quotes and backslashes group words,
 * nothing is expanded). Undefined when a quote is left open.
 */
export function splitWords(text: string): string[] | undefined {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < text.length && '"\\$`'.includes(text[i + 1]!)) word += text[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < text.length) {
      const next = text[++i]!;
      if (next !== "\n") word += next;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (quote) return undefined;
  if (inWord) words.push(word);
  return words.length > 0 ? words : undefined;
}

/**
 * A config path must stay inside the repository: relative, no `..` climbing out, no NUL.
 * (Whoever reads the file later also refuses symlinks that leave it.)
 */
export function readRepoPath(value: string, file: ParsedFile, path: Path, problems: Problem[]): string | undefined {
  const parts = value.split("/");
  if (value === "" || value.startsWith("/") || value.includes("\0") || /^[A-Za-z]:[\\/]/.test(value)) {
    problems.push(problemAt(file.at(path), "invalid_path", `${JSON.stringify(value)} is not a path inside the repository`, "use a relative path such as config/app.env"));
    return undefined;
  }
  let depth = 0;
  for (const p of parts) {
    depth += p === ".." ? -1 : p === "." || p === "" ? 0 : 1;
    if (depth < 0) {
      problems.push(problemAt(file.at(path), "invalid_path", `${JSON.stringify(value)} leaves the repository`, "use a relative path inside it"));
      return undefined;
    }
  }
  return value;
}
