import { describe, expect, it } from "vitest";
import { hashEntry } from "../web/src/workspace/hash-entry.js";

describe("links to /#<repository-url>", () => {
  it("lead to opening a workspace of the repository, with the branch of a tree URL as its ref", () => {
    expect(hashEntry("#https://github.com/acme/app")).toBe("/workspaces/new?repository=https%3A%2F%2Fgithub.com%2Facme%2Fapp");
    expect(hashEntry("#https://github.com/acme/app/tree/feature/x")).toBe("/workspaces/new?repository=https%3A%2F%2Fgithub.com%2Facme%2Fapp&ref=feature%2Fx");
    expect(hashEntry("#https://gitlab.com/acme/app/-/tree/main")).toBe("/workspaces/new?repository=https%3A%2F%2Fgitlab.com%2Facme%2Fapp&ref=main");
    expect(hashEntry("#git@github.com:acme/app.git")).toBe("/workspaces/new?repository=git%40github.com%3Aacme%2Fapp.git");
    expect(hashEntry("#ssh%3A%2F%2Fgit%40host%2Frepo")).toBe("/workspaces/new?repository=ssh%3A%2F%2Fgit%40host%2Frepo");
  });

  it("lead to a snapshot with #snapshot/<id>", () => {
    expect(hashEntry("#snapshot/snp_abc-1")).toBe("/snapshots/snp_abc-1");
    expect(hashEntry("#snapshot/../x")).toBeUndefined();
  });

  it("leave every other fragment alone", () => {
    for (const hash of ["", "#", "#main", "#token=abc", "#javascript:alert(1)", "#https://", "#%E0%A4%A", "#//evil.example/x"]) expect(hashEntry(hash), hash).toBeUndefined();
  });
});
