import type { Group, PipelineNode } from "./model.js";
import { limits, problemAt, type Problem, type SourceLocation } from "./problems.js";
import type { ParsedFile, Path } from "./source.js";

/** What a node gets from the groups around it: used for checks while reading; the model keeps what was written. */
export interface Inherited {
  service?: string;
  image?: string;
}

export interface TreeContext {
  file: ParsedFile;
  problems: Problem[];
  serviceNames: ReadonlySet<string>;
  count: number;
  names: Map<string, SourceLocation>;
}

export type NodeReader = (value: unknown, path: Path, id: string, depth: number, inherited: Inherited) => PipelineNode | undefined;

/** Reads a list of steps and groups, within the depth and count limits. */
export function readTree(items: readonly unknown[], path: Path, idPrefix: string, depth: number, ctx: TreeContext, inherited: Inherited, read: NodeReader): PipelineNode[] {
  const nodes: PipelineNode[] = [];
  if (depth > limits.groupDepth) {
    ctx.problems.push(problemAt(ctx.file.at(path), "too_complex", `groups nested more than ${limits.groupDepth} deep`));
    return nodes;
  }
  for (const [i, item] of items.entries()) {
    if (++ctx.count > limits.steps) {
      if (ctx.count === limits.steps + 1) ctx.problems.push(problemAt(ctx.file.at([...path, i]), "too_complex", `more than ${limits.steps} steps and groups`));
      return nodes;
    }
    const node = read(item, [...path, i], idPrefix ? `${idPrefix}.${i + 1}` : String(i + 1), depth, inherited);
    if (node) nodes.push(node);
  }
  return nodes;
}

/** Step names are shown in logs and picked by `slipway run NAME`: two steps may not share one. */
export function claimName(name: string, path: Path, ctx: TreeContext): void {
  const first = ctx.names.get(name);
  if (first) ctx.problems.push(problemAt(ctx.file.at([...path, "name"]), "duplicate_name", `another step is already named "${name}" (at line ${first.line})`, "step names must be unique"));
  else ctx.names.set(name, ctx.file.at([...path, "name"]));
}

/** A service a node names must exist; checked where it is written, not in every child that inherits it. */
export function checkServiceRef(service: string | undefined, valuePath: Path, ctx: TreeContext): void {
  if (service !== undefined && !ctx.serviceNames.has(service)) {
    const known = [...ctx.serviceNames].sort();
    ctx.problems.push(problemAt(ctx.file.at(valuePath), "unknown_service", `unknown service "${service}"`, known.length ? `known services: ${known.join(", ")}` : "no services are defined"));
  }
}

/**
 * A build that stops at a manual step resumes from that one point of the tree after the approval.
 * Inside a parallel group there is no such point (its other branches ran alongside), so a manual
 * step or group there is refused.
 */
export function checkManualPlacement(nodes: readonly PipelineNode[], problems: Problem[], parallel?: Group): void {
  for (const node of nodes) {
    const manual = node.kind === "step" ? node.type === "manual" : node.manual;
    if (manual && parallel) {
      const what = node.kind === "step" ? "manual step" : "manual group";
      problems.push(problemAt(node.source, "manual_in_parallel", `a ${what} cannot be inside a parallel group (the one at line ${parallel.source.line}): after the approval the build could not resume from one point`, "move it out of the parallel group, before or after it"));
    }
    if (node.kind === "group") checkManualPlacement(node.steps, problems, node.type === "parallel" ? (parallel ?? node) : parallel);
  }
}

/** A copy of a subtree with fresh ids (matrix groups repeat their steps per service). */
export function reid<T extends PipelineNode>(node: T, id: string): T {
  if (node.kind === "step") return { ...node, id };
  const group = node as Group;
  return { ...group, id, steps: group.steps.map((child, i) => reid(child, `${id}.${i + 1}`)) } as T;
}

/** A name for a step that has none: what it runs. */
export function defaultName(parts: (string | undefined)[]): string {
  const text = parts.filter(Boolean).join(": ").replace(/\s+/g, " ").trim();
  return text.length > 60 ? `${text.slice(0, 57)}...` : text || "step";
}
