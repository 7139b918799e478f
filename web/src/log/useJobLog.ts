import { useEffect, useState } from "react";
import { ApiError, get } from "../api";
import { isPlain, PLAIN, scanAnsi, textOf, type Look } from "./ansi";

export interface JobLog {
  /** Complete lines, then the line being written. */
  lines: string[];
  /** The same lines without their escape codes, made once as they arrive: what search reads. */
  plain: string[];
  /** The look each line starts with, where the lines before left one (colours carry over, as in a terminal). */
  looks: Array<Look | undefined>;
  /** The byte offset in the log where each line starts, to find a step's first line. */
  starts: number[];
  ended: boolean;
  error: string | null;
}

const EMPTY: JobLog = { lines: [], plain: [], looks: [], starts: [0], ended: false, error: null };

const fromBase64 = (b64: string) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

/**
 * A job's log, followed live over the API's Server-Sent Events (the browser resumes from the last
 * event id after a drop). Lines are kept outside React state and published at most once a frame,
 * so a 10 MB backlog arrives without re-rendering for each chunk.
 */
export function useJobLog(buildId: string, jobId: string): JobLog {
  const [log, setLog] = useState<JobLog>(EMPTY);

  useEffect(() => {
    setLog(EMPTY);
    const s = { lines: [] as string[], plain: [] as string[], looks: [] as Array<Look | undefined>, look: PLAIN, starts: [0], partial: "", bytes: 0 };
    const decoder = new TextDecoder();
    let frame = 0;
    let ended = false;
    let error: string | null = null;
    const publish = () => {
      frame = 0;
      const partial = s.partial ? [s.partial] : [];
      const plain = partial.map((p) => textOf(scanAnsi(p, s.look).spans));
      setLog({ lines: [...s.lines, ...partial], plain: [...s.plain, ...plain], looks: s.looks.slice(), starts: s.starts.slice(), ended, error });
    };
    const schedule = () => {
      if (!frame) frame = requestAnimationFrame(publish);
    };
    const path = `/builds/${encodeURIComponent(buildId)}/jobs/${encodeURIComponent(jobId)}/log`;
    const source = new EventSource(`/api/v1${path}`);
    source.addEventListener("log", (e) => {
      const { offset, data } = JSON.parse((e as MessageEvent<string>).data) as { offset: number; data: string };
      if (offset !== s.bytes) return;
      const bytes = fromBase64(data);
      bytes.forEach((b, i) => {
        if (b === 0x0a) s.starts.push(s.bytes + i + 1);
      });
      s.bytes += bytes.length;
      const text = s.partial + decoder.decode(bytes, { stream: true });
      const parts = text.split("\n");
      s.partial = parts.pop()!;
      for (const p of parts) {
        const line = p.endsWith("\r") ? p.slice(0, -1) : p;
        const { spans, end } = scanAnsi(line, s.look);
        if (!isPlain(s.look)) s.looks[s.lines.length] = s.look;
        s.lines.push(line);
        s.plain.push(textOf(spans));
        s.look = end;
      }
      schedule();
    });
    source.addEventListener("end", () => {
      ended = true;
      source.close();
      schedule();
    });
    source.onopen = () => {
      error = null;
      schedule();
    };
    source.onerror = () => {
      if (ended) return;
      if (source.readyState !== EventSource.CLOSED) {
        // The browser retries by itself; say so while it does, rather than show a log that silently stopped.
        error = "Reconnecting to the log…";
        return schedule();
      }
      // The stream was refused (an EventSource cannot tell why): the same log as text says it in words.
      error = "The log stream was closed: reload the page to follow it again.";
      schedule();
      get(`${path}?format=text&offset=${s.bytes}`).catch((err: unknown) => {
        if (err instanceof ApiError && err.status >= 400) {
          error = err.message.charAt(0).toUpperCase() + err.message.slice(1);
          schedule();
        }
      });
    };
    return () => {
      source.close();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [buildId, jobId]);
  return log;
}
