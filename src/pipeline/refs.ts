import { createContext, runInContext } from "node:vm";
import { parseRefFilter } from "./common.js";
import type { Group, Pipeline, PipelineNode, RefFilter, Step } from "./model.js";
import { limits } from "./problems.js";

/** `[skip ci]` or `[ci skip]` anywhere in the head commit's message skips the build. */
export function shouldSkip(commitMessage: string): boolean {
  return /\[\s*(skip\s+ci|ci\s+skip)\s*\]/i.test(commitMessage);
}

export class RefMatchError extends Error {
  constructor(readonly filter: RefFilter) {
    super(`the regular expression ${JSON.stringify(filter.pattern)} took too long to match; simplify it`);
  }
}

// Regexes come from repositories: one with catastrophic backtracking must not stall the scheduler,
// so it runs under a time limit (the engine checks for the interrupt while backtracking).
const sandbox = createContext({ re: /$^/, ref: "" });

/** True when `ref` (a branch or tag name) matches: exactly, or by regex when the pattern starts with ^ or ends with $. */
export function matchesRef(filter: RefFilter | string, ref: string): boolean {
  const f = typeof filter === "string" ? parseRefFilter(filter) : filter;
  if (!f.regex) return f.pattern === ref;
  const re = new RegExp(f.pattern);
  sandbox.re = re;
  sandbox.ref = ref;
  // The limit is wall-clock time: a busy machine can stall even a simple match past it once, so
  // only a regex that runs out of time twice is called too slow.
  for (let attempt = 1; ; attempt++) {
    try {
      return runInContext("re.test(ref)", sandbox, { timeout: limits.regexMatchMs }) === true;
    } catch (err) {
      if ((err as { code?: string }).code !== "ERR_SCRIPT_EXECUTION_TIMEOUT") throw err;
      if (attempt === 2) throw new RefMatchError(f);
    }
  }
}

export interface BuildRef {
  branch?: string;
  tag?: string;
}

const matchesAny = (filter: RefFilter, ref: BuildRef) => [ref.branch, ref.tag].some((r) => r !== undefined && matchesRef(filter, r));

function runsFor(node: PipelineNode, ref: BuildRef): boolean {
  if (node.exclude && matchesAny(node.exclude, ref)) return false;
  const { branch, tag, ref: either } = node.when;
  if (branch && !(ref.branch !== undefined && matchesRef(branch, ref.branch))) return false;
  if (tag && !(ref.tag !== undefined && matchesRef(tag, ref.tag))) return false;
  if (either && !matchesAny(either, ref)) return false;
  return true;
}

/**
 * The steps that run for a build of `ref`: filters and excludes applied at every level, empty
 * groups dropped, and what groups pass down (service, image, env) written into each step, so a
 * runner needs nothing but the returned tree. Throws RefMatchError for a regex that does not finish.
 */
export function selectSteps(pipeline: Pick<Pipeline, "steps">, ref: BuildRef): PipelineNode[] {
  return selectNodes(pipeline.steps, ref, { env: {} });
}

interface Passed {
  service?: string;
  image?: string;
  env: Record<string, string>;
}

function selectNodes(nodes: readonly PipelineNode[], ref: BuildRef, passed: Passed): PipelineNode[] {
  const out: PipelineNode[] = [];
  for (const node of nodes) {
    if (!runsFor(node, ref)) continue;
    // A service replaces an inherited image and the other way round: the nearest one wins.
    const here: Passed = {
      service: node.service ?? (node.image !== undefined ? undefined : passed.service),
      image: node.image ?? (node.service !== undefined ? undefined : passed.image),
      env: { ...passed.env, ...node.env },
    };
    const resolved = { ...node, service: here.service, image: here.image, env: here.env, when: {}, exclude: undefined };
    if (node.kind === "step") out.push(resolved as Step);
    else {
      const steps = selectNodes(node.steps, ref, here);
      if (steps.length > 0) out.push({ ...(resolved as Group), steps });
    }
  }
  return out;
}

/** Every step of a tree, in order (for listings and `slipway run NAME`). */
export function flattenSteps(nodes: readonly PipelineNode[]): Step[] {
  return nodes.flatMap((n) => (n.kind === "step" ? [n] : flattenSteps(n.steps)));
}
