import { readDevcontainerConfig } from "./devcontainer-format.js";
import type { FileSource } from "./files.js";
import { readGitpodConfig } from "./gitpod-format.js";
import { blankComments } from "./jsonc.js";
import { configFileNames, pick } from "./load.js";
import { hasErrors, problemAt, sortProblems, type Problem } from "./problems.js";
import { readSlipwayWorkspace } from "./slipway-workspace-format.js";
import { parseConfigFile, type ParsedFile } from "./source.js";
import { defaultWorkspaceConfig, workspaceConfigSchema, type WorkspaceConfig } from "./workspace-model.js";

/** File names looked for, in order of preference: the first kind found is the one used. */
export const workspaceConfigFileNames = {
  gitpod: [".gitpod.yml", ".gitpod.yaml"],
  devcontainer: [".devcontainer/devcontainer.json", ".devcontainer.json"],
} as const;

export interface WorkspaceLoadResult {
  /** Present only when there is no error. */
  config?: WorkspaceConfig;
  problems: Problem[];
}

/**
 * Reads a repository's workspace config: the `workspace:` section of `.slipway.yml`, else
 * `.gitpod.yml`, else `devcontainer.json`; with none, a shell on the host image. Never throws.
 */
export function readWorkspaceConfig(files: FileSource): WorkspaceLoadResult {
  const problems: Problem[] = [];
  let config: WorkspaceConfig | undefined;
  try {
    config = readFrom(files, problems);
  } catch (err) {
    problems.push(problemAt({ file: ".", line: 0, col: 0 }, "internal_error", `the workspace config could not be read: ${(err as Error)?.message ?? String(err)}`));
  }
  if (config && !workspaceConfigSchema.safeParse(config).success) throw new Error("the workspace model does not match its schema");
  return { ...(config && !hasErrors(problems) && { config }), problems: sortProblems(problems) };
}

function readFrom(files: FileSource, problems: Problem[]): WorkspaceConfig | undefined {
  const candidates: Candidate[] = [];
  const slipway = pick(files, configFileNames.slipway, []);
  if (slipway) {
    // A .slipway.yml may hold only the pipeline: its problems matter here only if it has a workspace.
    const own: Problem[] = [];
    const parsed = parseConfigFile(slipway.name, slipway.text, own);
    if (parsed ? isObject(parsed.value) && "workspace" in parsed.value : /^workspace\s*:/m.test(slipway.text)) {
      problems.push(...own);
      candidates.push({ name: slipway.name, parsed, read: readSlipwayWorkspace });
    }
  }
  for (const [names, read, jsonc] of [
    [workspaceConfigFileNames.gitpod, readGitpodConfig, false],
    [workspaceConfigFileNames.devcontainer, readDevcontainer, true],
  ] as const) {
    const found = pick(files, names, problems);
    if (found) candidates.push({ name: found.name, parsed: parseConfigFile(found.name, jsonc ? blankComments(found.text) : found.text, problems), read });
  }
  const [chosen, ...ignored] = candidates;
  if (!chosen) return hasErrors(problems) ? undefined : defaultWorkspaceConfig();
  for (const other of ignored) problems.push(problemAt({ file: other.name, line: 0, col: 0 }, "ignored_file", `${other.name} is ignored because ${chosen.name} sets up the workspace`, undefined, "warning"));
  return chosen.parsed && chosen.read(chosen.parsed, files, problems);
}

type Reader = (file: ParsedFile, files: FileSource, problems: Problem[]) => WorkspaceConfig | undefined;
interface Candidate {
  name: string;
  /** Undefined when the file does not parse (its problems say why). */
  parsed: ParsedFile | undefined;
  read: Reader;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

const readDevcontainer: Reader = (file, files, problems) => {
  if (isObject(file.value)) return readDevcontainerConfig(file, files, problems);
  problems.push(problemAt({ file: file.file, line: 1, col: 1 }, "invalid_value", `${file.file} must hold one JSON object`));
  return undefined;
};
