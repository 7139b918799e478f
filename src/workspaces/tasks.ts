import { z } from "zod";
import { commandScript } from "../pipeline/common.js";
import type { WorkspaceTask } from "../pipeline/workspace-model.js";
import type { Sandbox } from "../sandbox/backend.js";

export const taskStatusSchema = z.object({
  name: z.string(),
  state: z.enum(["running", "succeeded", "failed"]),
  exitCode: z.number().nullable(),
  /** The last part of what the task printed (secrets masked). */
  output: z.string(),
});
export type TaskStatus = z.infer<typeof taskStatusSchema>;

/** What a task keeps of its output for the API; its terminal keeps the rest. */
const KEPT_OUTPUT = 64 * 1024;

/**
 * The script a task runs, as Gitpod runs it: `before`, then `init` on the first start only, then
 * `command`, in one shell (what `before` exports, `command` sees), each only if the one before succeeded.
 */
export function taskScript(task: WorkspaceTask, firstStart: boolean): string | undefined {
  const parts = [task.before, firstStart ? task.init : undefined, task.command].flatMap((c) => (c ? [`{\n${commandScript(c)}\n}`] : []));
  return parts.length === 0 ? undefined : parts.join(" &&\n");
}

/** One task of a running workspace: a process of its own; its failure is shown, never fatal to the workspace. */
export class TaskRun {
  private state: TaskStatus["state"] = "running";
  private exitCode: number | null = null;
  private out = "";
  readonly done: Promise<void>;

  constructor(
    readonly name: string,
    sandbox: Sandbox,
    script: string,
    env: Record<string, string>,
    cwd: string,
    private readonly mask: (text: string) => string,
  ) {
    const keep = (d: Buffer) => (this.out = (this.out + d.toString()).slice(-KEPT_OUTPUT));
    this.done = sandbox.exec({ argv: ["/bin/sh", "-c", script], env, cwd }, { stdout: keep, stderr: keep }).then(
      (status) => {
        this.exitCode = status.code;
        this.state = status.code === 0 ? "succeeded" : "failed";
      },
      (err: Error) => {
        this.out += `\n${err.message}\n`;
        this.state = "failed";
      },
    );
  }

  status(): TaskStatus {
    return { name: this.name, state: this.state, exitCode: this.exitCode, output: this.mask(this.out) };
  }
}
