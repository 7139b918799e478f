import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import { parseAnsi, type Look } from "./ansi";

const LINE_HEIGHT = 20;
const OVERSCAN = 30;

/**
 * A log of any length: only the lines in view are in the page (virtualised), each rendered as
 * text, never as HTML. Line numbers link to their line (#<job>-L<n>); follow mode keeps the end
 * in view while lines arrive; search jumps between matches.
 */
export function LogView({ id, lines, plain, looks, jumpTo }: { id: string; lines: string[]; plain: string[]; looks: Array<Look | undefined>; jumpTo?: { line: number; at: number } }) {
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);
  const [follow, setFollow] = useState(true);
  const [query, setQuery] = useState("");
  const [match, setMatch] = useState(0);
  const [marked, setMarked] = useState<number | null>(null);

  const matches = useMemo(() => {
    if (!query) return [];
    const q = query.toLowerCase();
    const found: number[] = [];
    plain.forEach((l, i) => {
      if (l.toLowerCase().includes(q)) found.push(i);
    });
    return found;
  }, [plain, query]);

  // A new search goes to its first match at once.
  const firstMatch = matches[0];
  useEffect(() => {
    if (firstMatch !== undefined) scrollToLine(firstMatch);
    // Only when the query changes: lines arriving must not pull the view back to the first match.
  }, [query]);

  const scrollToLine = (line: number) => {
    const el = box.current;
    if (!el) return;
    setFollow(false);
    setMarked(line);
    el.scrollTop = Math.max(0, line * LINE_HEIGHT - el.clientHeight / 3);
  };

  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    setHeight(el.clientHeight);
    const observer = new ResizeObserver(() => setHeight(el.clientHeight));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  useLayoutEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines, follow]);

  // A link to a line (#<id>-L<n>) opens the log there, once the line has arrived.
  const [linked] = useState(() => Number(new RegExp(`^#${id}-L(\\d+)$`).exec(window.location.hash)?.[1] ?? 0));
  useEffect(() => {
    if (linked > 0 && linked <= lines.length && marked === null) scrollToLine(linked - 1);
  }, [linked, lines.length, marked]);

  useEffect(() => {
    if (jumpTo) scrollToLine(jumpTo.line);
  }, [jumpTo]);

  const first = Math.max(0, Math.floor(top / LINE_HEIGHT) - OVERSCAN);
  const last = Math.min(lines.length, Math.ceil((top + height) / LINE_HEIGHT) + OVERSCAN);
  const width = String(lines.length).length;

  return (
    <div className="log">
      <div className="log-tools">
        <label>
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> Follow
        </label>
        <input type="search" aria-label="Search the log" placeholder="Search the log" value={query} onChange={(e) => (setQuery(e.target.value), setMatch(0))} />
        {query && (
          <>
            <span role="status">{matches.length ? `${match + 1} of ${matches.length}` : "no match"}</span>
            <button type="button" className="secondary" disabled={!matches.length} onClick={() => { const n = (match - 1 + matches.length) % matches.length; setMatch(n); scrollToLine(matches[n]!); }}>
              Previous
            </button>
            <button type="button" className="secondary" disabled={!matches.length} onClick={() => { const n = (match + 1) % matches.length; setMatch(n); scrollToLine(matches[n]!); }}>
              Next
            </button>
          </>
        )}
      </div>
      <div
        ref={box}
        className="log-lines"
        tabIndex={0}
        role="log"
        aria-label="Log output"
        onScroll={(e) => {
          const el = e.currentTarget;
          setTop(el.scrollTop);
          // Scrolling up stops following; back at the end, it follows again.
          setFollow(el.scrollHeight - el.scrollTop - el.clientHeight < LINE_HEIGHT * 2);
        }}
      >
        <div className="log-space" style={{ height: lines.length * LINE_HEIGHT }}>
          {lines.slice(first, last).map((line, k) => {
            const n = first + k;
            return (
              <div key={n} className={`log-line${n === marked ? " marked" : ""}`} style={{ top: n * LINE_HEIGHT }}>
                <a className="ln" href={`#${id}-L${n + 1}`} onClick={() => setMarked(n)} style={{ width: `${width + 1}ch` }}>
                  {n + 1}
                </a>
                <span className="text">
                  {parseAnsi(line, looks[n]).map((s, i) => (
                    <span key={i} className={s.classes || undefined} style={s.color || s.background ? { color: s.color, background: s.background } : undefined}>
                      {s.text}
                    </span>
                  ))}
                </span>
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}
