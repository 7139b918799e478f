import { z } from "zod";

/**
 * A finding about a repository's config. It is a value, not an exception: the CLI prints it as
 * `file:line:col: severity: message (hint)` and the API returns the same object.
 */
export const problemSchema = z.object({
  /** Path of the file, relative to the repository root. */
  file: z.string(),
  /** 1-based; 0 when the finding is about the file as a whole or about a missing file. */
  line: z.number().int().min(0),
  col: z.number().int().min(0),
  code: z.string(),
  message: z.string(),
  hint: z.string().optional(),
  severity: z.enum(["error", "warning"]),
});
export type Problem = z.infer<typeof problemSchema>;

export const sourceLocationSchema = z.object({ file: z.string(), line: z.number().int(), col: z.number().int() });
export type SourceLocation = z.infer<typeof sourceLocationSchema>;

export function problemAt(at: SourceLocation, code: string, message: string, hint?: string, severity: Problem["severity"] = "error"): Problem {
  return { file: at.file, line: at.line, col: at.col, code, message, ...(hint ? { hint } : {}), severity };
}

export const hasErrors = (problems: readonly Problem[]) => problems.some((p) => p.severity === "error");

export function formatProblem(p: Problem, file = p.file): string {
  const where = p.line > 0 ? `${file}:${p.line}:${p.col}` : file;
  return `${where}: ${p.severity}: ${p.message}${p.hint ? ` (${p.hint})` : ""}`;
}

/** By file and position, so output is stable whatever order the checks ran in. */
export function sortProblems(problems: readonly Problem[]): Problem[] {
  // A key merged into several places (YAML `<<`) is reported once, where it is written.
  const unique = new Map(problems.map((p) => [`${p.file}:${p.line}:${p.col}:${p.code}:${p.message}`, p]));
  return [...unique.values()].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col || a.code.localeCompare(b.code));
}

/** Bounds that keep a hostile config from costing more than a clear error. */
export const limits = {
  fileBytes: 1024 * 1024,
  /** Values after alias expansion: a config far past any real one is refused, not walked. */
  nodes: 100_000,
  maxAliasCount: 200,
  groupDepth: 16,
  steps: 2_000,
  services: 200,
  regexLength: 500,
  /** Time one regex may take to match one ref before the filter is treated as broken. */
  regexMatchMs: 100,
  maxTimeoutMs: 24 * 3600_000,
} as const;
