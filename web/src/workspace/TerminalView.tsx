import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { useEffect, useRef, useState } from "react";
import { adoptInlineStyles } from "./adopt-styles";

/** Close codes after which attaching again cannot help: the terminal is gone, access ended, or the server refused what was sent. */
const FINAL_CLOSES = new Set([1000, 4400, 4403, 4404]);
/** Attempts in a row that may fail before the page stops trying and says so. */
const MAX_RETRIES = 6;

type Link = "connecting" | "attached" | "reconnecting" | "ended" | "lost" | "refused";

const words: Record<Link, string> = {
  connecting: "Connecting…",
  attached: "Connected",
  reconnecting: "Connection lost: reconnecting…",
  ended: "The terminal ended",
  lost: "Cannot reach the terminal: reload the page to try again, or check that the workspace still runs.",
  refused: "Your access to this workspace ended: its owner stopped sharing it or sent you away.",
};

/**
 * A workspace terminal in xterm.js, attached over the API's WebSocket: what it printed so far
 * arrives first, keys go back as binary frames, its size follows the panel's. A dropped
 * connection is attached again (the shell kept running), its output drawn afresh from the backlog.
 */
export function TerminalView({ workspaceId, terminalId, label }: { workspaceId: string; terminalId: string; label: string }) {
  const host = useRef<HTMLDivElement>(null);
  const [link, setLink] = useState<Link>("connecting");
  const [exitCode, setExitCode] = useState<number | null>(null);

  useEffect(() => {
    const element = host.current!;
    const unadopt = adoptInlineStyles(element);
    const term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace',
      fontSize: 14,
      scrollback: 5_000,
      theme: { background: "#1b1f24", foreground: "#e6edf3" },
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(element);
    fit.fit();

    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/workspaces/${encodeURIComponent(workspaceId)}/terminals/${encodeURIComponent(terminalId)}/attach`;
    const encoder = new TextEncoder();
    let socket: WebSocket | undefined;
    let failures = 0;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let done = false;
    const send = (data: string | Uint8Array) => socket?.readyState === WebSocket.OPEN && socket.send(data);
    const sendSize = () => send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));

    const connect = () => {
      const ws = new WebSocket(url);
      socket = ws;
      ws.binaryType = "arraybuffer";
      let backlog = true;
      ws.onopen = () => {
        failures = 0;
        setLink("attached");
        sendSize();
      };
      ws.onmessage = (e: MessageEvent<ArrayBuffer | string>) => {
        if (typeof e.data === "string") {
          const message = JSON.parse(e.data) as { type?: string; code?: number | null };
          if (message.type === "exit") {
            done = true;
            setExitCode(message.code ?? null);
            setLink("ended");
          }
          return;
        }
        // Each attach starts with everything kept so far: drawn on a clean screen, not twice.
        if (backlog) term.reset();
        backlog = false;
        term.write(new Uint8Array(e.data));
      };
      ws.onclose = (e) => {
        if (done || socket !== ws) return;
        if (FINAL_CLOSES.has(e.code) || ++failures > MAX_RETRIES) {
          done = true;
          setLink(e.code === 4404 ? "ended" : e.code === 4403 ? "refused" : "lost");
          return;
        }
        setLink("reconnecting");
        retry = setTimeout(connect, Math.min(500 * 2 ** failures, 8_000));
      };
    };
    connect();

    const typed = term.onData((data) => send(encoder.encode(data)));
    const binary = term.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
    const resized = term.onResize(sendSize);
    let frame = 0;
    const observer = new ResizeObserver(() => {
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => fit.fit());
    });
    observer.observe(element);
    term.focus();
    return () => {
      done = true;
      clearTimeout(retry);
      cancelAnimationFrame(frame);
      observer.disconnect();
      typed.dispose();
      binary.dispose();
      resized.dispose();
      socket?.close(1000, "the page left");
      term.dispose();
      unadopt();
    };
  }, [workspaceId, terminalId]);

  return (
    <div className="terminal">
      <p className="muted" role="status">
        {link === "ended" && exitCode !== null ? `${words.ended} (exit code ${exitCode})` : words[link]}
      </p>
      <div ref={host} className="terminal-screen" role="region" aria-label={`Terminal ${label}`} />
    </div>
  );
}
