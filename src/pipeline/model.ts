import { z } from "zod";
import { sourceLocationSchema } from "./problems.js";

/**
 * The one pipeline model that every config format is read into, and that the runner executes.
 * Types come from these schemas; nothing here is written twice.
 */

/** A branch/tag filter: an exact name, or a regular expression when the value starts with `^` or ends with `$`. */
export const refFilterSchema = z.object({ pattern: z.string(), regex: z.boolean() });
export type RefFilter = z.infer<typeof refFilterSchema>;

/** `shell` runs through `/bin/sh -c`; `argv` is executed as is, no shell. */
export const commandSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("shell"), script: z.string().min(1) }),
  z.object({ kind: z.literal("argv"), argv: z.array(z.string()).min(1) }),
]);
export type Command = z.infer<typeof commandSchema>;

export const envSchema = z.record(z.string(), z.string());

/**
 * When a node runs. Every filter present must match: `branch` against the build's branch, `tag`
 * against its git tag, `ref` (Codeship's `tag`) against either.
 */
export const whenSchema = z.object({
  branch: refFilterSchema.optional(),
  tag: refFilterSchema.optional(),
  ref: refFilterSchema.optional(),
});
export type When = z.infer<typeof whenSchema>;

export const healthcheckSchema = z.object({
  command: commandSchema,
  intervalMs: z.number().int().positive(),
  timeoutMs: z.number().int().positive(),
  retries: z.number().int().min(0),
  startPeriodMs: z.number().int().min(0),
});
export type Healthcheck = z.infer<typeof healthcheckSchema>;

export const imageBuildSchema = z.object({
  context: z.string(),
  dockerfile: z.string().optional(),
  /** The name the built image is tagged with (Codeship's `build.image`). */
  image: z.string().optional(),
  args: envSchema,
  /** Files of build args encrypted with `slipway secrets encrypt`: secret args, kept out of the image. */
  encryptedArgsFile: z.array(z.string()),
  /** The Dockerfile stage to build; the last one when unset. */
  target: z.string().optional(),
});
export type ImageBuild = z.infer<typeof imageBuildSchema>;

export const serviceSchema = z.object({
  name: z.string(),
  image: z.string().optional(),
  /** Built from a Dockerfile before the first step that needs it, instead of `image`. */
  build: imageBuildSchema.optional(),
  command: commandSchema.optional(),
  environment: envSchema,
  envFile: z.array(z.string()),
  /** Files encrypted with `slipway secrets encrypt` (their format is checked here; the server opens them for the runner). */
  encryptedEnvFile: z.array(z.string()),
  dependsOn: z.array(z.string()),
  workingDir: z.string().optional(),
  cached: z.boolean(),
  defaultCacheBranch: z.string().optional(),
  volumes: z.array(z.string()),
  healthcheck: healthcheckSchema.optional(),
  source: sourceLocationSchema,
});
export type Service = z.infer<typeof serviceSchema>;

const nodeBaseSchema = z.object({
  /** Stable within a pipeline: the position in the tree ("2.1" is the first child of the second node). */
  id: z.string(),
  when: whenSchema,
  /** Skips the node when the branch or the tag matches. Wins over `when`. */
  exclude: refFilterSchema.optional(),
  service: z.string().optional(),
  image: z.string().optional(),
  env: envSchema,
  source: sourceLocationSchema,
});

export const pushSchema = z.object({ imageName: z.string(), imageTag: z.string().optional(), registry: z.string().optional() });

export const stepSchema = nodeBaseSchema.extend({
  kind: z.literal("step"),
  name: z.string(),
  /** Absent for push steps, and for Codeship steps that run their service's own command. */
  command: commandSchema.optional(),
  /** `manual` waits for an owner's or admin's approval; `push` publishes the service's image. */
  type: z.enum(["run", "manual", "push"]),
  push: pushSchema.optional(),
  /** `continue`: the failure is reported, the build goes on and can still pass. */
  onFail: z.enum(["stop", "continue"]),
  timeoutMs: z.number().int().positive().optional(),
});
export type Step = z.infer<typeof stepSchema>;

/** Children inherit `service`, `image`, `env` and the filters of their groups. */
export const groupSchema = nodeBaseSchema.extend({
  kind: z.literal("group"),
  name: z.string().optional(),
  type: z.enum(["parallel", "serial"]),
  /** The whole group waits for an approval (Codeship's `type: manual` with `steps`). */
  manual: z.boolean(),
  get steps() {
    return z.array(z.union([stepSchema, groupSchema]));
  },
});
export type Group = z.infer<typeof groupSchema>;

export const pipelineNodeSchema = z.discriminatedUnion("kind", [stepSchema, groupSchema]);
export type PipelineNode = z.infer<typeof pipelineNodeSchema>;

export const pipelineSchema = z.object({
  format: z.enum(["slipway", "codeship"]),
  /** The config files it was read from, relative to the repository root. */
  files: z.array(z.string()),
  image: z.string().optional(),
  env: envSchema,
  /** Names of project secrets exposed to the steps as environment variables. */
  secrets: z.array(z.string()),
  services: z.record(z.string(), serviceSchema),
  steps: z.array(pipelineNodeSchema),
});
export type Pipeline = z.infer<typeof pipelineSchema>;
