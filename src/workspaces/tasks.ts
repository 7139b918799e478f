import { z } from "zod";
import { commandScript } from "../pipeline/common.js";
import type { WorkspaceTask } from "../pipeline/workspace-model.js";

export const taskStatusSchema = z.object({
  name: z.string(),
  state: z.enum(["running", "succeeded", "failed"]),
  exitCode: z.number().nullable(),
  /** The last part of what the task printed (secrets masked); its terminal has the rest. */
  output: z.string(),
  terminal: z.string().describe("The id of the task's terminal, to attach to"),
});
export type TaskStatus = z.infer<typeof taskStatusSchema>;

/**
 * The script a task runs, as Gitpod runs it: `before`, then `init` on the first start only, then
 * `command`, in one shell (what `before` exports, `command` sees), each only if the one before succeeded.
 */
export function taskScript(task: WorkspaceTask, firstStart: boolean): string | undefined {
  const parts = [task.before, firstStart ? task.init : undefined, task.command].flatMap((c) => (c ? [`{\n${commandScript(c)}\n}`] : []));
  return parts.length === 0 ? undefined : parts.join(" &&\n");
}
