import { describe, expect, it } from "vitest";
import { parseAnsi, scanAnsi, textOf } from "../web/src/log/ansi.js";

const stripAnsi = (line: string) => textOf(parseAnsi(line));

// The log view's reading of terminal output: colours become classes or clamped rgb() values, every
// other escape is dropped, and nothing of the text can become markup (it is rendered as text).

describe("ANSI in build logs", () => {
  it("turns SGR codes into classes and colours, and resets them", () => {
    expect(parseAnsi("\x1b[1;31mred\x1b[0m plain \x1b[38;5;196mx\x1b[48;2;300;0;10my")).toEqual([
      { text: "red", classes: "b fg1", color: undefined, background: undefined },
      { text: " plain ", classes: "", color: undefined, background: undefined },
      { text: "x", classes: "", color: "rgb(255,0,0)", background: undefined },
      { text: "y", classes: "", color: "rgb(255,0,0)", background: "rgb(255,0,10)" },
    ]);
  });

  it("drops cursor moves, private modes, OSC titles and control characters, and keeps the last frame of a progress line", () => {
    expect(stripAnsi("\x1b[?25l\x1b[2Kdone\x1b]0;title\x07!\x07\x00")).toBe("done!");
    expect(stripAnsi("10%\r50%\r100% done")).toBe("100% done");
  });

  it("carries a colour into the next line, as a terminal does, and a reset ends it", () => {
    const first = scanAnsi("\x1b[32mgreen starts");
    expect(parseAnsi("still green", first.end)).toEqual([{ text: "still green", classes: "fg2", color: undefined, background: undefined }]);
    const reset = scanAnsi("\x1b[0mplain", first.end);
    expect(parseAnsi("plain too", reset.end)[0]!.classes).toBe("");
    // Codes in an overwritten frame still set the look of what follows.
    expect(parseAnsi("x\x1b[31m\rshown")).toEqual([{ text: "shown", classes: "fg1", color: undefined, background: undefined }]);
  });

  it("keeps markup as plain text", () => {
    expect(stripAnsi('\x1b[31m<img src=x onerror="alert(1)">\x1b[0m')).toBe('<img src=x onerror="alert(1)">');
  });
});
