import { describe, expect, it } from "vitest";
import { repositoryName } from "./repository-names.js";
import { variableScopeSchema } from "./variables.js";

describe("workspace variables", () => {
  it("names a repository owner/repo from any of its URL forms", () => {
    for (const url of ["https://github.com/acme/app.git", "https://github.com/acme/app", "ssh://git@github.com:22/acme/app.git", "git@github.com:acme/app.git", "https://gitlab.example.com/group/sub/acme/app/"]) {
      expect(repositoryName(url), url).toBe("acme/app");
    }
  });

  it("takes owner/repo, owner/* and */* as scopes, and nothing else", () => {
    for (const ok of ["acme/app", "acme/*", "*/*", "a.b/c-d_e"]) expect(variableScopeSchema.safeParse(ok).success, ok).toBe(true);
    for (const bad of ["*", "acme", "*/app", "acme/app/x", "../x", "acme/a b", ""]) expect(variableScopeSchema.safeParse(bad).success, bad).toBe(false);
  });
});
