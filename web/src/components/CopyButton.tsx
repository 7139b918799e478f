import { useState } from "react";

/** Copies text to the clipboard and says, to screen readers too, whether that worked. */
export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [outcome, setOutcome] = useState("");
  return (
    <span className="copy">
      <button
        type="button"
        className="secondary"
        onClick={async () => {
          try {
            await navigator.clipboard.writeText(text);
            setOutcome("Copied.");
          } catch {
            // The clipboard may be refused (permissions, an insecure origin): the text is still there to select.
            setOutcome("Copying did not work: select the text and copy it.");
          }
        }}
      >
        {label}
      </button>
      <span role="status" className="muted">
        {outcome}
      </span>
    </span>
  );
}
