import { describe, expect, it } from "vitest";
import { formatProblem } from "../pipeline/problems.js";
import { parseDockerfile, stagesFor, substitute, type Dockerfile } from "./dockerfile.js";

const parse = (text: string, args: Record<string, string> = {}) => parseDockerfile(text, "Dockerfile", args);
const errors = (df: Dockerfile) => df.problems.map((p) => formatProblem(p));

describe("reading a Dockerfile", () => {
  it("reads a multi-stage build with args, env, copies, users and commands", () => {
    const df = parse(`# syntax=docker/dockerfile:1
ARG BASE=debian:bookworm
FROM \${BASE} AS build
ARG VERSION=1.0
ENV APP_HOME=/srv/app PATH="/srv/app/bin:$PATH"
WORKDIR $APP_HOME
COPY --chown=1000:1000 src/ ./src/
RUN --mount=type=secret,id=NPM_TOKEN \\
    make \\
    # a comment inside the instruction is skipped
    VERSION=$VERSION
FROM scratch
COPY --from=build /srv/app/bin/app /app
USER 1000
ENTRYPOINT ["/app"]
CMD --help
LABEL org.opencontainers.image.version="\${VERSION:-dev}" maintainer='a $b'
EXPOSE 8080/tcp
`, { VERSION: "2.0" });
    expect(df.problems).toEqual([]);
    expect(df.stages.map((s) => [s.index, s.name, s.base])).toEqual([
      [0, "build", { kind: "image", ref: "debian:bookworm" }],
      [1, undefined, { kind: "scratch" }],
    ]);
    const [build, final] = df.stages as [Dockerfile["stages"][0], Dockerfile["stages"][0]];
    expect(build.at).toEqual({ line: 3, col: 1 });
    expect(build.instructions.map((i) => i.kind)).toEqual(["ARG", "ENV", "WORKDIR", "COPY", "RUN"]);
    expect(build.instructions[1]).toMatchObject({ vars: [["APP_HOME", "/srv/app"], ["PATH", "/srv/app/bin:"]] });
    expect(build.instructions[2]).toMatchObject({ path: "/srv/app" });
    expect(build.instructions[3]).toMatchObject({ sources: ["src/"], dest: "./src/", chown: "1000:1000" });
    // RUN is left to the shell: no substitution here, and the comment line is gone.
    expect(build.instructions[4]).toMatchObject({ at: { line: 8, col: 1 }, command: { shell: "make     VERSION=$VERSION" }, secrets: [{ id: "NPM_TOKEN", target: "/run/secrets/NPM_TOKEN", required: false }] });
    expect(final.instructions).toMatchObject([
      { kind: "COPY", from: "build", sources: ["/srv/app/bin/app"], dest: "/app" },
      { kind: "USER", user: "1000" },
      { kind: "ENTRYPOINT", command: { exec: ["/app"] } },
      { kind: "CMD", command: { shell: "--help" } },
      // VERSION is not declared in this stage: empty, so the default applies; single quotes keep $.
      { kind: "LABEL", labels: [["org.opencontainers.image.version", "dev"], ["maintainer", "a $b"]] },
      { kind: "EXPOSE", ports: ["8080/tcp"] },
    ]);
  });

  it("takes a build arg over an ARG's default, and a global ARG declared again in a stage", () => {
    const df = parse("ARG TAG=bookworm\nFROM debian:$TAG\nARG TAG\nARG MODE=debug\nENV T=$TAG M=$MODE\n", { MODE: "release" });
    expect(df.stages[0]!.base).toEqual({ kind: "image", ref: "debian:bookworm" });
    expect(df.stages[0]!.instructions.at(-1)).toMatchObject({ vars: [["T", "bookworm"], ["M", "release"]] });
  });

  it("honours the escape directive and Windows line ends", () => {
    const df = parse("# escape=`\r\nFROM debian:bookworm\r\nRUN echo a `\r\n  b\r\n");
    expect(df.problems).toEqual([]);
    expect(df.stages[0]!.instructions[0]).toMatchObject({ command: { shell: "echo a   b" } });
  });

  it("builds only what a target needs: its stage and those it builds on or copies from", () => {
    const df = parse("FROM debian:bookworm AS base\nFROM base AS deps\nFROM debian:bookworm AS tools\nFROM base AS app\nCOPY --from=tools /x /x\nFROM app AS test\n");
    const names = (t?: string) => {
      const s = stagesFor(df, "Dockerfile", t);
      return Array.isArray(s) ? s.map((x) => x.name) : formatProblem(s);
    };
    expect(names("app")).toEqual(["base", "tools", "app"]);
    expect(names()).toEqual(["base", "tools", "app", "test"]);
    expect(names("nope")).toBe('Dockerfile: error: the Dockerfile has no stage named "nope" (name one of: base, deps, tools, app, test)');
  });

  it("substitutes variables as Docker does", () => {
    const v = (name: string) => ({ A: "a", E: "" })[name];
    expect(substitute("$A ${A} ${A:-x} ${E:-x} ${N:-x} ${A:+y} ${E:+y} \\$A $N.", v)).toBe("a a a x x y  $A .");
  });
});

describe("mistakes in a Dockerfile", () => {
  const cases: Array<[string, string]> = [
    ["FROM debian:bookworm\nVOLUME /data\n", "Dockerfile:2:1: error: VOLUME is not an instruction Slipway builds (use FROM, ARG, RUN, COPY, ADD, ENV, LABEL, WORKDIR, USER, ENTRYPOINT, CMD, EXPOSE)"],
    ["RUN make\nFROM debian:bookworm\n", "Dockerfile:1:1: error: RUN comes before any FROM (start the Dockerfile with FROM (only ARG may come before it))"],
    ["FROM debian:bookworm\nCOPY ../secret /x\n", "Dockerfile:2:6: error: ../secret is outside the build context (copy files from inside the context directory only)"],
    ["FROM debian:bookworm\nCOPY a/../../b /x\n", "Dockerfile:2:6: error: a/../../b is outside the build context (copy files from inside the context directory only)"],
    ["FROM debian:bookworm\nCOPY /../b /x\n", "Dockerfile:2:6: error: /../b is outside the build context (copy files from inside the context directory only)"],
    ["FROM debian:bookworm\nADD https://example.com/x.tgz /x\n", "Dockerfile:2:5: error: ADD from a URL (https://example.com/x.tgz) is not supported (download it in a RUN step, so the build states what it fetched)"],
    ["FROM debian:bookworm\nRUN --mount=type=cache,target=/root/.cache make\n", 'Dockerfile:2:5: error: only --mount=type=secret is supported, not "type=cache,target=/root/.cache" (write --mount=type=secret,id=<name>[,target=<path>][,required])'],
    ["FROM debian:bookworm\nRUN --network=none make\n", "Dockerfile:2:5: error: RUN --network is not supported"],
    ["FROM debian:bookworm\nRUN <<EOF\necho hi\nEOF\n", "Dockerfile:2:5: error: here-documents in RUN are not supported (put the text in a file of the build context and COPY it)"],
    ["FROM Debian:Bookworm\n", 'Dockerfile:1:6: error: image "Debian:Bookworm" is not a valid reference (names are lower-case letters, digits and . _ - between them, separated by /); write it as name[:tag][@sha256:digest], e.g. debian:bookworm'],
    ["FROM debian AS 1st\n", 'Dockerfile:1:16: error: "1st" is not a stage name (use lowercase letters, digits, \'.\', \'_\' and \'-\', starting with a letter)'],
    ["FROM debian AS a\nFROM debian AS A\n", 'Dockerfile:2:16: error: a stage named "a" comes earlier'],
    ["FROM debian:bookworm\nWORKDIR\n", "Dockerfile:2:1: error: WORKDIR needs arguments"],
    ["FROM debian:bookworm\nCOPY onlyone\n", "Dockerfile:2:6: error: COPY takes one or more sources and a destination"],
    ["FROM debian:bookworm\nENV 1A=b\n", 'Dockerfile:2:5: error: "1A" is not a variable name'],
    ["# just a comment\n", "Dockerfile: error: the Dockerfile has no FROM (start it with FROM <image> (or FROM scratch))"],
    ["# escape=x\nFROM debian\n", 'Dockerfile:1:10: error: the escape directive takes \\ or `, not "x"'],
  ];
  it.each(cases)("%j → %s", (text, expected) => {
    expect(errors(parse(text))).toContain(expected);
  });

  it("never throws, and places every finding inside the file, whatever it is given (seeded, bounded)", () => {
    const pieces = ["FROM ", "debian", ":bookworm", " AS ", "b", "\n", "\\\n", "RUN ", "COPY ", "--from=", "--mount=", "type=secret,id=", "${", "}", "$", "\"", "'", "[", "]", ",", "=", " ", "#", "# escape=`\n", "`", "ENV ", "ARG ", "..", "/", "<<EOF", "\r\n", "\u0000", "é", "ADD ", "http://x", "WORKDIR", "\t"];
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let round = 0; round < 2_000; round++) {
      const text = Array.from({ length: 1 + Math.floor(random() * 40) }, () => pieces[Math.floor(random() * pieces.length)]).join("");
      const df = parse(text);
      const lines = text.split(/\r?\n/).length;
      for (const p of df.problems) {
        expect(p.line, text).toBeGreaterThanOrEqual(0);
        expect(p.line, text).toBeLessThanOrEqual(lines);
        expect(p.message.length).toBeGreaterThan(0);
      }
    }
  });

  it("refuses a file past the size limit without reading it", () => {
    expect(errors(parse(`FROM debian\n${"RUN true\n".repeat(200_000)}`))[0]).toMatch(/^Dockerfile: error: the Dockerfile is larger than/);
  });
});
