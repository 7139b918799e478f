import { randomBytes } from "node:crypto";
import { PassThrough } from "node:stream";
import { z } from "zod";
import type { Masker } from "../crypto/masking.js";
import type { ExitStatus, Sandbox } from "../sandbox/backend.js";

export const terminalSizeSchema = z.object({ cols: z.number().int().min(2).max(1000), rows: z.number().int().min(1).max(1000) });
export type TerminalSize = z.infer<typeof terminalSizeSchema>;

export const terminalSchema = z.object({
  id: z.string(),
  name: z.string(),
  kind: z.enum(["task", "shell"]),
  state: z.enum(["running", "exited"]),
  exitCode: z.number().nullable(),
});
export type TerminalInfo = z.infer<typeof terminalSchema>;

/** What a terminal keeps of its output for someone who attaches later (a reconnecting browser). */
const SCROLLBACK_BYTES = 256 * 1024;

/** Where a terminal's shell writes the name of its pseudo-terminal, for resizing it from outside. */
const TTY_DIR = "/tmp/.slipway-terminals";

export interface TerminalOptions {
  name: string;
  kind: TerminalInfo["kind"];
  /** A shell script to run in the terminal; a login shell when absent. */
  script?: string;
  env: Record<string, string>;
  cwd: string;
  size: TerminalSize;
  /** Masks what the terminal prints (task output); interactive shells print as they are. */
  masker?: Masker;
  /** The guest who opened it: it closes when their access ends. */
  guest?: string;
}

/**
 * A pseudo-terminal in a workspace sandbox, made there by `script` (util-linux, in every Debian
 * image) around a shell or a task. It keeps running while no one is attached: a browser that
 * reconnects gets the scrollback, then the live output. Needs the sandbox's "workspace" profile,
 * whose execs share one devpts, so that it can be resized from another exec.
 */
export class Terminal {
  readonly id = `term_${randomBytes(6).toString("hex")}`;
  private readonly input = new PassThrough();
  private readonly listeners = new Set<(data: Buffer) => void>();
  private readonly exitListeners = new Set<(status: ExitStatus) => void>();
  private readonly abort = new AbortController();
  private scrollback: Buffer[] = [];
  private scrollbackBytes = 0;
  private status: ExitStatus | null = null;
  readonly done: Promise<ExitStatus>;

  constructor(
    private readonly sandbox: Sandbox,
    private readonly opts: TerminalOptions,
  ) {
    const { cols, rows } = opts.size;
    const body = opts.script ?? "if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi";
    const inner = `stty rows ${rows} cols ${cols} 2>/dev/null; mkdir -p -m 700 ${TTY_DIR} && tty > ${TTY_DIR}/${this.id}\n${body}`;
    const output = (d: Buffer) => this.emit(opts.masker ? opts.masker.write(d) : d);
    this.done = sandbox
      .exec({ argv: ["script", "-q", "-f", "-e", "-c", inner, "/dev/null"], env: { TERM: "xterm-256color", ...opts.env }, cwd: opts.cwd, signal: this.abort.signal }, { stdin: this.input, stdout: output, stderr: output })
      .catch((err: Error): ExitStatus => {
        this.emit(Buffer.from(`\r\n${err.message}\r\n`));
        return { code: null, signal: null, timedOut: false };
      })
      .then((status) => {
        if (opts.masker) this.emit(opts.masker.end());
        this.status = status;
        for (const listener of this.exitListeners) listener(status);
        return status;
      });
  }

  /** The guest who opened it, if a guest did. */
  get guest(): string | undefined {
    return this.opts.guest;
  }

  get info(): TerminalInfo {
    return { id: this.id, name: this.opts.name, kind: this.opts.kind, state: this.status ? "exited" : "running", exitCode: this.status?.code ?? null };
  }

  private emit(data: Buffer): void {
    if (data.length === 0) return;
    this.scrollback.push(data);
    this.scrollbackBytes += data.length;
    while (this.scrollbackBytes > SCROLLBACK_BYTES && this.scrollback.length > 1) this.scrollbackBytes -= this.scrollback.shift()!.length;
    for (const listener of this.listeners) listener(data);
  }

  /** What it printed, as far back as the scrollback reaches. */
  get output(): Buffer {
    return Buffer.concat(this.scrollback);
  }

  /** Follows the output: `backlog` is what it printed so far (up to the scrollback), then `onData` gets the rest. */
  attach(onData: (data: Buffer) => void, onExit: (status: ExitStatus) => void): { backlog: Buffer; detach(): void } {
    this.listeners.add(onData);
    this.exitListeners.add(onExit);
    if (this.status) queueMicrotask(() => onExit(this.status!));
    return {
      backlog: this.output,
      detach: () => {
        this.listeners.delete(onData);
        this.exitListeners.delete(onExit);
      },
    };
  }

  /** What was typed: goes to the terminal as it is (keys, pastes, control characters). */
  write(data: Buffer | string): void {
    if (!this.status) this.input.write(data);
  }

  /** Resizes the pseudo-terminal; the programs in it get SIGWINCH. */
  async resize(size: TerminalSize): Promise<void> {
    if (this.status) return;
    const { cols, rows } = terminalSizeSchema.parse(size);
    await this.sandbox.exec({ argv: ["/bin/sh", "-c", `t=$(cat ${TTY_DIR}/${this.id}) && stty -F "$t" rows ${rows} cols ${cols}`], timeoutMs: 10_000 });
  }

  /** Ends the terminal and what runs in it. */
  close(): Promise<ExitStatus> {
    this.input.end();
    this.abort.abort();
    return this.done;
  }
}
