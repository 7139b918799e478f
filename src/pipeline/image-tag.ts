/**
 * Codeship's `image_tag` templates: Go template actions over the build's fields, in the forms
 * Codeship documents, `{{ .Branch }}` and `{{ printf "%.7s" .CommitID }}` (the first N characters).
 * A template is checked when the config is read; rendering turns the result into a valid tag.
 */

export const IMAGE_TAG_FIELDS = [
  "Branch",
  "CommitID",
  "CommitMessage",
  "CommitDescription",
  "CommitterName",
  "CommitterEmail",
  "CommitterUsername",
  "BuildID",
  "BuildNumber",
  "RepoName",
  "ProjectID",
  "ServiceName",
  "StepName",
  "Timestamp",
  "Ref",
] as const;
export type ImageTagField = (typeof IMAGE_TAG_FIELDS)[number];

const ACTION = /\{\{(.*?)\}\}/g;
const FIELD = /^\s*\.([A-Za-z]+)\s*$/;
const PRINTF = /^\s*printf\s+"%\.(\d{1,3})s"\s+\.([A-Za-z]+)\s*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

interface Action {
  field: ImageTagField;
  max?: number;
}

/** The action's field and width, or what is wrong with it. */
function parseAction(body: string): Action | string {
  const printf = PRINTF.exec(body);
  const name = printf ? printf[2]! : FIELD.exec(body)?.[1];
  if (name === undefined) return `"{{${body}}}" is not a field ({{ .Branch }}) or a printf of one ({{ printf "%.7s" .CommitID }})`;
  if (!(IMAGE_TAG_FIELDS as readonly string[]).includes(name)) return `unknown field .${name}; known: ${IMAGE_TAG_FIELDS.map((f) => `.${f}`).join(", ")}`;
  return { field: name as ImageTagField, ...(printf && { max: Number(printf[1]) }) };
}

/** The problems of a template, as messages (empty when it is fine). */
export function checkImageTag(template: string): string[] {
  const problems: string[] = [];
  for (const m of template.matchAll(ACTION)) {
    const action = parseAction(m[1]!);
    if (typeof action === "string") problems.push(action);
  }
  if (/\{\{|\}\}/.test(template.replace(ACTION, ""))) problems.push("a {{ or }} without its other half");
  return problems;
}

/**
 * The tag for these fields: characters a tag may not have (a branch's `/`) become `-`, and it is
 * cut to 128 characters, as a registry takes nothing else.
 */
export function renderImageTag(template: string, fields: Record<ImageTagField, string>): string {
  const text = template.replace(ACTION, (_, body: string) => {
    const action = parseAction(body);
    if (typeof action === "string") throw new Error(`image_tag: ${action}`);
    const value = fields[action.field];
    return action.max === undefined ? value : value.slice(0, action.max);
  });
  const tag = text.replace(/[^A-Za-z0-9_.-]/g, "-").replace(/^[.-]+/, "").slice(0, 128);
  if (!TAG.test(tag)) throw new Error(`image_tag "${template}" gives "${text}", which is not a valid tag`);
  return tag;
}
