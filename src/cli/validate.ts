import { statSync } from "node:fs";
import path from "node:path";
import { formatProblem, loadPipeline, type Problem } from "../pipeline/index.js";

/**
 * `slipway validate [DIR]`: prints each finding as `file:line:col: severity: message (hint)`, then
 * a summary. Exit 0 without errors (warnings allowed), 2 with errors or when there is no config.
 */
export function validateCommand(dir: string, write: (text: string) => void = (t) => process.stdout.write(t)): number {
  const root = path.resolve(dir);
  if (!statSync(root, { throwIfNoEntry: false })?.isDirectory()) {
    write(`${dir}: not a directory\n`);
    return 2;
  }
  const result = loadPipeline(root);
  const shown = (p: Problem) => (p.file === "." ? path.relative(process.cwd(), root) || "." : path.relative(process.cwd(), path.join(root, p.file)));
  for (const p of result.problems) write(formatProblem(p, shown(p)) + "\n");
  const errors = result.problems.filter((p) => p.severity === "error").length;
  const warnings = result.problems.length - errors;
  if (!result.found) return 2;
  const counts = `${errors} error${errors === 1 ? "" : "s"}, ${warnings} warning${warnings === 1 ? "" : "s"}`;
  if (errors > 0) {
    write(`${result.files.join(" + ") || "config"}: invalid (${counts})\n`);
    return 2;
  }
  const steps = countSteps(result.pipeline?.steps ?? []);
  write(`${result.files.join(" + ")}: valid, ${steps} step${steps === 1 ? "" : "s"} (${counts})\n`);
  return 0;
}

function countSteps(nodes: readonly { kind: string; steps?: readonly unknown[] }[]): number {
  return nodes.reduce((n, node) => n + (node.kind === "step" ? 1 : countSteps((node.steps ?? []) as never)), 0);
}
