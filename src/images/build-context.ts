import { lstat, opendir, readFile, readlink } from "node:fs/promises";
import path from "node:path";
import { problemAt, type Problem } from "../pipeline/problems.js";
import { isIgnored, parseDockerignore } from "./dockerignore.js";

/** One thing a build may COPY from its context. Links are kept as links: nothing is read through one. */
export type ContextEntry = { path: string; mode: number } & ({ type: "dir" } | { type: "file"; size: number } | { type: "symlink"; target: string });

export interface ContextLimits {
  maxEntries: number;
  maxBytes: number;
}

export const DEFAULT_CONTEXT_LIMITS: ContextLimits = { maxEntries: 100_000, maxBytes: 2 * 1024 ** 3 };

/**
 * What of a build context goes into a build: every file, directory and link under `root` that its
 * `.dockerignore` keeps, in a stable order, within limits. Special files (sockets, pipes,
 * devices) are left out with a warning. A file a `!` pattern keeps inside an ignored directory
 * comes without that directory's entry: whoever unpacks the list makes parents as needed.
 * `contextName` is the context as the config names it, for the problems' file names.
 */
export async function listBuildContext(root: string, contextName: string, limits: ContextLimits = DEFAULT_CONTEXT_LIMITS): Promise<{ entries: ContextEntry[]; problems: Problem[] }> {
  const problems: Problem[] = [];
  const ignoreFile = path.posix.join(contextName, ".dockerignore");
  const ignoreText = await readFile(path.join(root, ".dockerignore"), "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return "";
    throw err;
  });
  const { rules, problems: ignoreProblems } = parseDockerignore(ignoreText, ignoreFile);
  problems.push(...ignoreProblems);
  const entries: ContextEntry[] = [];
  const reincludes = rules.some((r) => r.negate);
  let bytes = 0;
  const tooLarge = (what: string) => problemAt({ file: contextName, line: 0, col: 0 }, "context_too_large", `the build context has more than ${what}`, "leave out what the build does not need with a .dockerignore");

  async function walk(dir: string): Promise<boolean> {
    const names: string[] = [];
    for await (const d of await opendir(path.join(root, dir))) names.push(d.name);
    for (const name of names.sort()) {
      const rel = dir ? `${dir}/${name}` : name;
      const st = await lstat(path.join(root, rel));
      if (isIgnored(rules, rel)) {
        // An ignored directory may hold what a later `!` pattern takes back in: look inside it then.
        if (st.isDirectory() && reincludes && !(await walk(rel))) return false;
        continue;
      }
      const mode = st.mode & 0o7777;
      if (entries.length >= limits.maxEntries) {
        problems.push(tooLarge(`${limits.maxEntries} files`));
        return false;
      }
      if (st.isSymbolicLink()) entries.push({ path: rel, mode, type: "symlink", target: await readlink(path.join(root, rel)) });
      else if (st.isDirectory()) {
        entries.push({ path: rel, mode, type: "dir" });
        if (!(await walk(rel))) return false;
      } else if (st.isFile()) {
        bytes += st.size;
        if (bytes > limits.maxBytes) {
          problems.push(tooLarge(`${limits.maxBytes} bytes`));
          return false;
        }
        entries.push({ path: rel, mode, type: "file", size: st.size });
      } else problems.push(problemAt({ file: path.posix.join(contextName, rel), line: 0, col: 0 }, "special_file", `${rel} is not a file, directory or link; it is left out of the build`, undefined, "warning"));
    }
    return true;
  }

  await walk("");
  return { entries, problems };
}
