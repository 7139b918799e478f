/**
 * JSON with comments (devcontainer.json) made plain JSON for the YAML parser, which reads JSON
 * and trailing commas: each comment becomes spaces (its line breaks kept), so every offset, and
 * with it every line:col of an error, stays where it was in the file.
 */
export function blankComments(text: string): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      const end = stringEnd(text, i);
      out += text.slice(i, end);
      i = end;
    } else if (c === "/" && text[i + 1] === "/") {
      const end = text.indexOf("\n", i);
      const stop = end === -1 ? text.length : end;
      out += " ".repeat(stop - i);
      i = stop;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      // An unclosed comment is left as is: the parser then says where it starts.
      if (end === -1) return out + text.slice(i);
      out += text.slice(i, end + 2).replace(/[^\r\n]/g, " ");
      i = end + 2;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Where a double-quoted string starting at `start` ends (after its closing quote, or at the line's end). */
function stringEnd(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    if (text[i] === "\\") i++;
    else if (text[i] === '"') return i + 1;
    else if (text[i] === "\n") return i;
  }
  return text.length;
}
