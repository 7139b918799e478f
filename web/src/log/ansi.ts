/** A run of text with the look ANSI SGR codes gave it. Text is only ever rendered as text. */
export interface Span {
  text: string;
  classes: string;
  color?: string;
  background?: string;
}

/** The look the codes so far give to text: a terminal keeps it from one line to the next. */
export interface Look {
  bold: boolean;
  dim: boolean;
  italic: boolean;
  underline: boolean;
  fg?: number | string;
  bg?: number | string;
}

// The 256-colour palette beyond the 16 named colours: a 6×6×6 cube, then 24 greys.
function palette(n: number): string {
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v},${v},${v})`;
  }
  const i = n - 16;
  const level = (x: number) => (x === 0 ? 0 : 55 + x * 40);
  return `rgb(${level(Math.floor(i / 36))},${level(Math.floor(i / 6) % 6)},${level(i % 6)})`;
}

const colour = (c: number | string | undefined, kind: "fg" | "bg") => (typeof c === "number" && c < 16 ? `${kind}${c}` : "");
const css = (c: number | string | undefined) => (typeof c === "string" ? c : typeof c === "number" && c >= 16 ? palette(c) : undefined);

/** One extended colour (38;5;n or 38;2;r;g;b) from the codes after 38/48; how many codes it used. */
function extended(codes: number[], i: number): [number | string | undefined, number] {
  if (codes[i + 1] === 5 && codes[i + 2] !== undefined) return [Math.min(255, codes[i + 2]!), 2];
  if (codes[i + 1] === 2 && codes[i + 4] !== undefined) return [`rgb(${codes.slice(i + 2, i + 5).map((v) => Math.min(255, v)).join(",")})`, 4];
  return [undefined, 0];
}

function apply(look: Look, codes: number[]): void {
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i]!;
    if (c === 0) Object.assign(look, { bold: false, dim: false, italic: false, underline: false, fg: undefined, bg: undefined });
    else if (c === 1) look.bold = true;
    else if (c === 2) look.dim = true;
    else if (c === 3) look.italic = true;
    else if (c === 4) look.underline = true;
    else if (c === 22) look.bold = look.dim = false;
    else if (c === 23) look.italic = false;
    else if (c === 24) look.underline = false;
    else if (c >= 30 && c <= 37) look.fg = c - 30;
    else if (c >= 90 && c <= 97) look.fg = c - 90 + 8;
    else if (c === 39) look.fg = undefined;
    else if (c >= 40 && c <= 47) look.bg = c - 40;
    else if (c >= 100 && c <= 107) look.bg = c - 100 + 8;
    else if (c === 49) look.bg = undefined;
    else if (c === 38 || c === 48) {
      const [value, used] = extended(codes, i);
      if (c === 38) look.fg = value;
      else look.bg = value;
      i += used;
    }
  }
}

// CSI sequences (colours; anything else, such as cursor moves or ESC[?25l, is dropped), OSC ones, and a lone ESC.
const ESCAPES = /\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b/g;

export const PLAIN: Look = { bold: false, dim: false, italic: false, underline: false };

/**
 * A line's text cut into spans by its colour codes, starting with the look the lines before left;
 * other escape sequences and control characters are dropped. A carriage return starts the line
 * over (progress bars): only the last frame is shown, but its codes still count for the look.
 */
export function scanAnsi(text: string, start: Look = PLAIN): { spans: Span[]; end: Look } {
  const look = { ...start };
  let spans: Span[] = [];
  const push = (raw: string) => {
    raw.split("\r").forEach((part, i) => {
      if (i > 0) spans = [];
      const clean = part.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, "");
      if (!clean) return;
      const classes = [look.bold && "b", look.dim && "d", look.italic && "i", look.underline && "u", colour(look.fg, "fg"), colour(look.bg, "bg")].filter(Boolean).join(" ");
      spans.push({ text: clean, classes, color: css(look.fg), background: css(look.bg) });
    });
  };
  let last = 0;
  for (const m of text.matchAll(ESCAPES)) {
    push(text.slice(last, m.index));
    if (m[2] === "m" && /^[0-9;]*$/.test(m[1] ?? "")) apply(look, (m[1] || "0").split(";").map((n) => Number(n) || 0));
    last = m.index + m[0].length;
  }
  push(text.slice(last));
  return { spans, end: look };
}

export const parseAnsi = (text: string, start: Look = PLAIN): Span[] => scanAnsi(text, start).spans;

/** The text of spans without their look: a line as plain text, for search. */
export const textOf = (spans: Span[]) => spans.map((s) => s.text).join("");

/** Whether a look is the plain one, so that lines in it need no record of it. */
export const isPlain = (look: Look) => !look.bold && !look.dim && !look.italic && !look.underline && look.fg === undefined && look.bg === undefined;
