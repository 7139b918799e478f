import { describe, expect, it } from "vitest";
import { formatProblem } from "../pipeline/problems.js";
import { isIgnored, parseDockerignore } from "./dockerignore.js";

const rules = (text: string) => parseDockerignore(text, ".dockerignore").rules;

describe(".dockerignore", () => {
  it("leaves out what its patterns name, with Docker's rules", () => {
    const r = rules(`# build output
node_modules
/dist/
*.log
**/*.tmp
docs/**/draft-*
secret?.txt
[ab].cfg
!important.log
`);
    const out = (p: string) => isIgnored(r, p);
    expect(["node_modules", "node_modules/x/y.js", "dist/app.js", "err.log", "a/b/c.tmp", "x.tmp", "docs/a/b/draft-1.md", "docs/draft-2.md", "secret1.txt", "a.cfg"].filter((p) => !out(p))).toEqual([]);
    // `*.log` is a pattern of the top directory only, as in Docker: src/err.log stays.
    expect(["src/app.js", "src/err.log", "important.log", "distance.txt", "docs/final.md", "secret12.txt", "c.cfg", "sub/node_modules_x"].filter(out)).toEqual([]);
  });

  it("takes a path back in with !, the last matching pattern deciding", () => {
    const r = rules("assets\n!assets/keep\nassets/keep/no\n");
    expect(isIgnored(r, "assets/other.png")).toBe(true);
    expect(isIgnored(r, "assets/keep/a.png")).toBe(false);
    expect(isIgnored(r, "assets/keep/no")).toBe(true);
  });

  it("names a broken pattern at its line, and ignores blank lines and comments", () => {
    const { rules: r, problems } = parseDockerignore("\n# c\n  [abc\nok\n", ".dockerignore");
    expect(problems.map((p) => formatProblem(p))).toEqual(['.dockerignore:3:3: error: "[abc" is not a pattern: a [ has no closing ]']);
    expect(r.map((x) => x.pattern)).toEqual(["ok"]);
  });

  it("treats regex characters in names as themselves", () => {
    const r = rules("a+b(1).txt\n");
    expect(isIgnored(r, "a+b(1).txt")).toBe(true);
    expect(isIgnored(r, "aab(1).txt")).toBe(false);
  });
});
