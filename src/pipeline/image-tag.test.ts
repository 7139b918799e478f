import { describe, expect, it } from "vitest";
import { checkImageTag, IMAGE_TAG_FIELDS, renderImageTag, type ImageTagField } from "./image-tag.js";

const fields = Object.fromEntries(IMAGE_TAG_FIELDS.map((f) => [f, `${f.toLowerCase()}-value`])) as Record<ImageTagField, string>;
fields.Branch = "feature/login";
fields.CommitID = "0123456789abcdef0123456789abcdef01234567";
fields.Timestamp = "1764700000";

describe("image_tag templates", () => {
  it("renders fields and printf widths as Codeship documents them, made into a valid tag", () => {
    expect(renderImageTag("{{ .Branch }}", fields)).toBe("feature-login");
    expect(renderImageTag('{{ .Branch }}-{{ printf "%.7s" .CommitID }}', fields)).toBe("feature-login-0123456");
    expect(renderImageTag("build-{{.BuildID}}-{{ .Timestamp }}", fields)).toBe("build-buildid-value-1764700000");
    expect(renderImageTag("latest", fields)).toBe("latest");
    expect(renderImageTag("{{ .CommitMessage }}", { ...fields, CommitMessage: "Fix: the login page (#12)".repeat(10) })).toHaveLength(128);
  });

  it("names what is wrong with a template", () => {
    expect(checkImageTag('{{ .Branch }}-{{ printf "%.7s" .CommitID }}')).toEqual([]);
    expect(checkImageTag("{{ .Brnch }}")[0]).toMatch(/unknown field \.Brnch; known: \.Branch/);
    expect(checkImageTag("{{ .Branch | upper }}")[0]).toMatch(/is not a field/);
    expect(checkImageTag("{{ .Branch ")).toEqual(["a {{ or }} without its other half"]);
    expect(() => renderImageTag("{{ .CommitMessage }}", { ...fields, CommitMessage: "..." })).toThrow(/not a valid tag/);
  });
});
