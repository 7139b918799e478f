import { z } from "zod";
import { commandSchema, envSchema, imageBuildSchema } from "./model.js";
import { sourceLocationSchema } from "./problems.js";

/**
 * The one workspace model that `.slipway.yml`'s `workspace:`, `.gitpod.yml` and
 * `devcontainer.json` are read into, and that a workspace is started from.
 */

export const workspaceImageSchema = z.discriminatedUnion("kind", [
  /** A registry image, or `host` (the machine's own /usr, read-only). */
  z.object({ kind: z.literal("image"), ref: z.string() }),
  z.object({ kind: z.literal("build"), build: imageBuildSchema }),
]);
export type WorkspaceImage = z.infer<typeof workspaceImageSchema>;

/**
 * A task gets its own terminal. `init` runs once, on the first start; `before` and then
 * `command` on every start (Gitpod's order). A failure is shown on the task, the workspace goes on.
 */
export const workspaceTaskSchema = z.object({
  name: z.string(),
  before: commandSchema.optional(),
  init: commandSchema.optional(),
  command: commandSchema.optional(),
  env: envSchema,
  source: sourceLocationSchema,
});
export type WorkspaceTask = z.infer<typeof workspaceTaskSchema>;

export const portVisibilitySchema = z.enum(["private", "public"]);
export type PortVisibility = z.infer<typeof portVisibilitySchema>;

/** One port or a range (`from`..`to`, both included) that the proxy serves once something listens. */
export const workspacePortSchema = z.object({
  from: z.number().int().min(1).max(65535),
  to: z.number().int().min(1).max(65535),
  name: z.string().optional(),
  description: z.string().optional(),
  visibility: portVisibilitySchema,
  /** What the UI does when the port opens. */
  onOpen: z.enum(["open-browser", "open-preview", "notify", "ignore"]),
  protocol: z.enum(["http", "https"]),
});
export type WorkspacePort = z.infer<typeof workspacePortSchema>;

export const workspaceConfigSchema = z.object({
  format: z.enum(["slipway", "gitpod", "devcontainer", "none"]),
  /** The config file it was read from, relative to the repository root; absent without one. */
  file: z.string().optional(),
  image: workspaceImageSchema,
  env: envSchema,
  tasks: z.array(workspaceTaskSchema),
  ports: z.array(workspacePortSchema),
  /** Where terminals open, relative to /workspace; "" for /workspace itself. */
  location: z.string(),
  /** `git config --global` entries (Gitpod's gitConfig). */
  gitConfig: z.record(z.string(), z.string()),
});
export type WorkspaceConfig = z.infer<typeof workspaceConfigSchema>;

/** A repository without a workspace config gets a shell on the host image in /workspace. */
export const defaultWorkspaceConfig = (): WorkspaceConfig => ({ format: "none", image: { kind: "image", ref: "host" }, env: {}, tasks: [], ports: [], location: "", gitConfig: {} });
