/**
 * xterm.js writes its theme, font and cell sizes into <style> elements. Slipway's Content Security
 * Policy (style-src 'self') refuses inline style, and Chromium reports each such element as a
 * violation whatever its type. So while a terminal lives, the <style> elements made through
 * document.createElement are hidden <slipway-style> elements instead (xterm only sets their text
 * and removes them), and their rules go into constructed stylesheets, which the policy allows.
 * Nothing else in the page makes <style> elements.
 */
const TAG = "slipway-style";

let terminals = 0;

function divertStyleElements(): () => void {
  if (terminals++ === 0) {
    const create = Document.prototype.createElement;
    document.createElement = function (this: Document, tag: string, options?: ElementCreationOptions) {
      return create.call(this, tag.toLowerCase() === "style" ? TAG : tag, options);
    } as Document["createElement"];
  }
  return () => {
    if (--terminals === 0) delete (document as { createElement?: unknown }).createElement;
  };
}

/** Watches `root` for xterm's style rules and applies them; returns what stops it and drops them. */
export function adoptInlineStyles(root: HTMLElement): () => void {
  const undivert = divertStyleElements();
  const sheets = new Map<Element, { sheet: CSSStyleSheet; text: string }>();
  const adopt = (before: Set<CSSStyleSheet>) => {
    const mine = [...sheets.values()].map((a) => a.sheet);
    document.adoptedStyleSheets = [...document.adoptedStyleSheets.filter((s) => !before.has(s)), ...mine];
  };
  const sync = () => {
    const before = new Set([...sheets.values()].map((a) => a.sheet));
    for (const element of sheets.keys()) if (!root.contains(element)) sheets.delete(element);
    for (const element of root.querySelectorAll(TAG)) {
      const text = element.textContent ?? "";
      const adopted = sheets.get(element);
      if (adopted?.text === text) continue;
      const sheet = adopted?.sheet ?? new CSSStyleSheet();
      sheet.replaceSync(text);
      sheets.set(element, { sheet, text });
    }
    if (sheets.size !== before.size || [...sheets.values()].some((a) => !before.has(a.sheet))) adopt(before);
  };
  const observer = new MutationObserver(sync);
  observer.observe(root, { subtree: true, childList: true, characterData: true });
  return () => {
    observer.disconnect();
    undivert();
    const before = new Set([...sheets.values()].map((a) => a.sheet));
    sheets.clear();
    adopt(before);
  };
}
