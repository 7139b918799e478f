import { readCodeshipConfig } from "./codeship-format.js";
import { diskFiles, type FileSource } from "./files.js";
import { pipelineSchema, type Pipeline } from "./model.js";
import { hasErrors, problemAt, sortProblems, type Problem } from "./problems.js";
import { readSlipwayConfig } from "./slipway-format.js";
import { parseConfigFile, type ParsedFile } from "./source.js";
import { checkManualPlacement } from "./tree.js";

/** File names looked for, in order of preference within each kind. */
export const configFileNames = {
  slipway: [".slipway.yml", ".slipway.yaml"],
  codeshipSteps: ["codeship-steps.yml", "codeship-steps.yaml", "codeship-steps.json", "jet-steps.yml", "jet-steps.yaml", "jet-steps.json"],
  /** Codeship falls back to a Compose file when there is no services file. */
  codeshipServices: ["codeship-services.yml", "codeship-services.yaml", "codeship-services.json", "docker-compose.yml", "docker-compose.yaml"],
} as const;

export interface LoadResult {
  /** Present only when there is no error: a pipeline with errors is never run. */
  pipeline?: Pipeline;
  problems: Problem[];
  /** The config files that were read. */
  files: string[];
  /** False when no config file exists at all (the problem list then says which names were tried). */
  found: boolean;
}

/** Reads the pipeline config of a checkout on disk. */
export function loadPipeline(dir: string): LoadResult {
  return readPipeline(diskFiles(dir));
}

/** Reads the pipeline config from any file source. Never throws: every failure is a problem. */
export function readPipeline(files: FileSource): LoadResult {
  const problems: Problem[] = [];
  const read: string[] = [];
  let result: LoadResult;
  try {
    result = readFrom(files, problems, read);
  } catch (err) {
    // A bug of ours must not take the server down with it; the fuzz tests look for this code.
    problems.push(problemAt({ file: read.at(-1) ?? ".", line: 0, col: 0 }, "internal_error", `the config could not be read: ${(err as Error)?.message ?? String(err)}`));
    result = { problems, files: read, found: read.length > 0 };
  }
  return { ...result, problems: sortProblems(result.problems) };
}

function readFrom(files: FileSource, problems: Problem[], read: string[]): LoadResult {
  const slipway = pick(files, configFileNames.slipway, problems);
  const steps = pick(files, configFileNames.codeshipSteps, problems);
  if (!slipway && !steps) {
    if (hasErrors(problems)) return { problems, files: read, found: true };
    const names = [...configFileNames.slipway, ...configFileNames.codeshipSteps];
    problems.push(problemAt({ file: ".", line: 0, col: 0 }, "no_config", `no pipeline config found; looked for ${names.join(", ")}`, "add a .slipway.yml"));
    return { problems, files: read, found: false };
  }
  let pipeline: Pipeline | undefined;
  if (slipway) {
    if (steps) problems.push(problemAt({ file: steps.name, line: 0, col: 0 }, "ignored_file", `${steps.name} is ignored because ${slipway.name} exists`, undefined, "warning"));
    read.push(slipway.name);
    const parsed = parseConfigFile(slipway.name, slipway.text, problems);
    if (parsed) pipeline = readSlipwayConfig(parsed, files, problems);
  } else if (steps) {
    read.push(steps.name);
    const services = pick(files, configFileNames.codeshipServices, problems);
    if (!services) {
      problems.push(problemAt({ file: steps.name, line: 0, col: 0 }, "missing_file", `${steps.name} needs a services file; looked for ${configFileNames.codeshipServices.join(", ")}`));
    } else {
      read.unshift(services.name);
      const parsedServices: ParsedFile | undefined = parseConfigFile(services.name, services.text, problems);
      const parsedSteps = parseConfigFile(steps.name, steps.text, problems);
      if (parsedServices && parsedSteps) pipeline = readCodeshipConfig(parsedServices, parsedSteps, files, problems);
    }
  }
  if (pipeline) {
    checkManualPlacement(pipeline.steps, problems);
    const valid = pipelineSchema.safeParse(pipeline);
    if (!valid.success) throw new Error(`the model does not match its schema: ${valid.error.issues[0]?.message}`);
  }
  return { pipeline: pipeline && !hasErrors(problems) ? pipeline : undefined, problems, files: read, found: true };
}

/** The first of `names` that exists; the others that also exist are reported as ignored. */
export function pick(files: FileSource, names: readonly string[], problems: Problem[]): { name: string; text: string } | undefined {
  let chosen: { name: string; text: string } | undefined;
  for (const name of names) {
    const r = files.read(name);
    if ("error" in r) {
      if (r.error === "missing") continue;
      const why = { too_large: "is too large", not_a_file: "is not a file", outside: "is a link that leaves the repository" }[r.error];
      problems.push(problemAt({ file: name, line: 0, col: 0 }, r.error === "too_large" ? "too_large" : "invalid_file", `${name} ${why}`));
      continue;
    }
    // docker-compose.yml beside codeship-services.yml is normal; the same file in two formats is not.
    if (chosen && stem(chosen.name) === stem(name)) problems.push(problemAt({ file: name, line: 0, col: 0 }, "ignored_file", `${name} is ignored because ${chosen.name} exists`, undefined, "warning"));
    else if (!chosen) chosen = { name, ...r };
  }
  return chosen;
}

const stem = (name: string) => name.replace(/\.(ya?ml|json)$/, "");
