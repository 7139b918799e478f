import type { Sandbox } from "../../src/sandbox/backend.js";

/** Runs a shell script in a sandbox: its exit code, signal and combined output. */
export async function sh(s: Sandbox, script: string, timeoutMs?: number): Promise<{ code: number | null; out: string; signal: string | null }> {
  let out = "";
  const status = await s.exec({ argv: ["/bin/sh", "-c", script], ...(timeoutMs !== undefined && { timeoutMs }) }, { stdout: (d) => (out += d), stderr: (d) => (out += d) });
  return { code: status.code, signal: status.signal, out };
}
