import { z } from "zod";
import { portVisibilitySchema } from "../pipeline/workspace-model.js";
import { taskStatusSchema } from "./tasks.js";
import { transitionSchema, workspaceSchema } from "./workspaces.js";

// What the API shows of workspaces and their ports (the web page derives its types from these).

export const workspaceViewSchema = workspaceSchema.extend({ tasks: z.array(taskStatusSchema).describe("The tasks of a running workspace, with the last of their output") });
export const workspaceDetailSchema = workspaceViewSchema.extend({ transitions: z.array(transitionSchema) });

export const portStatusSchema = z.object({
  port: z.number(),
  name: z.string().nullable(),
  visibility: portVisibilitySchema,
  listening: z.boolean().describe("Whether something listens on it now"),
  onOpen: z.string().describe("What the config asks the UI to do when it opens"),
});
export type WorkspacePortStatus = z.infer<typeof portStatusSchema>;

export const portViewSchema = portStatusSchema.extend({ url: z.string().describe("Where the port is reached through Slipway") });
