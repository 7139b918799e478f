import { describe, expect, it } from "vitest";
import { validPipeline } from "../../test/helpers/pipeline.js";
import { flattenSteps, matchesRef, RefMatchError, selectSteps, shouldSkip } from "./index.js";

describe("shouldSkip", () => {
  it.each([
    ["fix typo [skip ci]", true],
    ["[ci skip] docs only", true],
    ["Docs\n\nbody text [Skip CI]", true],
    ["fix the skip ci option", false],
    ["[skip] ci", false],
    ["normal commit", false],
  ])("%j → %s", (message, skip) => expect(shouldSkip(message)).toBe(skip));
});

describe("matchesRef", () => {
  it("matches exactly unless the value starts with ^ or ends with $", () => {
    expect(matchesRef("main", "main")).toBe(true);
    expect(matchesRef("main", "main-2")).toBe(false);
    expect(matchesRef("release/.*", "release/1")).toBe(false); // no ^ or $: a plain name
    expect(matchesRef("^release/", "release/1")).toBe(true);
    expect(matchesRef("^release/", "pre-release/1")).toBe(false);
    expect(matchesRef("-rc$", "v1.0-rc")).toBe(true);
    expect(matchesRef("^(master|staging)$", "staging")).toBe(true);
    expect(matchesRef("^(master|staging)$", "staging2")).toBe(false);
  });

  it("stops a regex with catastrophic backtracking instead of hanging", () => {
    expect(matchesRef("^(a+)+$", "aaaa")).toBe(true); // the same regex on a short ref is fine
    expect(() => matchesRef("^(a+)+$", `${"a".repeat(40)}b`)).toThrow(RefMatchError);
  });
});

describe("selectSteps", () => {
  const p = validPipeline({
    ".slipway.yml": [
      "image: base",
      "env: { LEVEL: top }",
      "steps:",
      "  - name: build",
      "    command: make",
      "  - type: serial",
      "    branch: main",
      "    image: deploy-tools",
      "    env: { LEVEL: group }",
      "    steps:",
      "      - name: deploy staging",
      "        command: deploy staging",
      "      - name: deploy prod",
      "        exclude: ^main$",
      "        command: deploy prod",
      "  - name: release",
      "    tag: ^v[0-9]",
      "    command: publish",
      "  - name: not for bots",
      "    exclude: ^dependabot/",
      "    command: notify",
    ].join("\n"),
  });
  const run = (ref: { branch?: string; tag?: string }) => flattenSteps(selectSteps(p, ref)).map((s) => s.name);

  it("keeps the steps whose filters match the ref and drops the rest", () => {
    expect(run({ branch: "feature/x" })).toEqual(["build", "not for bots"]);
    expect(run({ branch: "main" })).toEqual(["build", "deploy staging", "not for bots"]);
    expect(run({ tag: "v1.2.0" })).toEqual(["build", "release", "not for bots"]);
    expect(run({ branch: "dependabot/npm/x" })).toEqual(["build"]);
  });

  it("writes what groups pass down into each selected step", () => {
    const [build, deployStaging] = flattenSteps(selectSteps(p, { branch: "main" }));
    expect(build).toMatchObject({ image: undefined, env: {} }); // the top-level image and env stay on the pipeline
    expect(deployStaging).toMatchObject({ image: "deploy-tools", env: { LEVEL: "group" }, when: {} });
  });

  it("drops a group whose children are all filtered out", () => {
    const group = p.steps[1]!;
    if (group.kind !== "group") throw new Error("expected the deploy group");
    const onlyProd = { steps: [{ ...group, when: {}, steps: [group.steps[1]!] }] };
    expect(selectSteps(onlyProd, { branch: "main" })).toEqual([]);
    expect(flattenSteps(selectSteps(onlyProd, { branch: "other" })).map((s) => s.name)).toEqual(["deploy prod"]);
  });
});
