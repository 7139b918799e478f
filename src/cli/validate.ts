import { statSync } from "node:fs";
import path from "node:path";
import { diskFiles, formatProblem, loadPipeline, type Problem } from "../pipeline/index.js";
import { readWorkspaceConfig } from "../pipeline/workspace-load.js";

/**
 * `slipway validate [DIR]`: checks the pipeline config and the workspace config, printing each
 * finding as `file:line:col: severity: message (hint)`, then a summary line for each. Exit 0
 * without errors (warnings allowed), 2 with errors or when there is no config at all.
 */
export function validateCommand(dir: string, write: (text: string) => void = (t) => process.stdout.write(t)): number {
  const root = path.resolve(dir);
  if (!statSync(root, { throwIfNoEntry: false })?.isDirectory()) {
    write(`${dir}: not a directory\n`);
    return 2;
  }
  const pipeline = loadPipeline(root);
  const workspace = readWorkspaceConfig(diskFiles(root));
  const hasWorkspace = workspace.config?.format !== "none";
  const shown = (p: Problem) => (p.file === "." ? path.relative(process.cwd(), root) || "." : path.relative(process.cwd(), path.join(root, p.file)));
  const reports: Array<{ problems: Problem[]; summary: (counts: string) => string }> = [];
  // Without any config, the pipeline's "no config" finding names the files looked for.
  if (pipeline.found || !hasWorkspace) {
    const steps = countSteps(pipeline.pipeline?.steps ?? []);
    reports.push({ problems: pipeline.problems, summary: (counts) => `${pipeline.files.join(" + ") || "config"}: ${pipeline.pipeline ? `valid, ${steps} step${steps === 1 ? "" : "s"}` : "invalid"} (${counts})` });
  }
  if (hasWorkspace) {
    const file = workspace.config?.file ?? workspace.problems.find((p) => p.severity === "error")?.file ?? "workspace config";
    reports.push({ problems: workspace.problems, summary: (counts) => `${file}: ${workspace.config ? "valid workspace" : "invalid workspace"} (${counts})` });
  }
  let failed = !pipeline.found && !hasWorkspace;
  for (const report of reports) {
    for (const p of report.problems) write(formatProblem(p, shown(p)) + "\n");
    const errors = report.problems.filter((p) => p.severity === "error").length;
    const warnings = report.problems.length - errors;
    failed ||= errors > 0;
    if (pipeline.found || hasWorkspace) write(report.summary(`${errors} error${errors === 1 ? "" : "s"}, ${warnings} warning${warnings === 1 ? "" : "s"}`) + "\n");
  }
  return failed ? 2 : 0;
}

function countSteps(nodes: readonly { kind: string; steps?: readonly unknown[] }[]): number {
  return nodes.reduce((n, node) => n + (node.kind === "step" ? 1 : countSteps((node.steps ?? []) as never)), 0);
}
