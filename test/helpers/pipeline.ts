import { expect } from "vitest";
import { memoryFiles, readPipeline, type LoadResult, type Pipeline, type Problem } from "../../src/pipeline/index.js";

/** Reads a config held in memory, as `slipway validate` would from a checkout. */
export const readConfig = (files: Record<string, string>): LoadResult => readPipeline(memoryFiles(files));

/** `file:line:col code` for each problem of a severity: short enough to compare whole lists exactly. */
export const findings = (r: LoadResult, severity: Problem["severity"] = "error") =>
  r.problems.filter((p) => p.severity === severity).map((p) => `${p.file}:${p.line}:${p.col} ${p.code}`);

/** A config that must read cleanly: any error fails with the whole list in the message. */
export function validPipeline(files: Record<string, string>): Pipeline {
  const r = readConfig(files);
  expect(findings(r)).toEqual([]);
  expect(r.pipeline).toBeDefined();
  return r.pipeline!;
}

/** Joins lines without the final newline, like many hand-edited files. */
export const lines = (...ls: string[]) => ls.join("\n");
