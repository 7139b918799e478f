import { useId, useState, type ReactNode } from "react";
import { CopyButton } from "./CopyButton";

/**
 * A secret the server hands out once (a token, recovery codes), with a copy button, until the
 * user says it is saved: then `onDone`, where the caller forgets it.
 */
export function ShownOnce({ label, value, saved, children }: { label: string; value: string; saved: { text: string; onDone: () => void }; children: ReactNode }) {
  const id = useId();
  const [confirmed, setConfirmed] = useState(false);
  const lines = value.split("\n").length;
  return (
    <div className="shown-once">
      <label htmlFor={id}>{label}</label>
      <p id={`${id}-note`} className="muted">
        {children}
      </p>
      <textarea id={id} aria-describedby={`${id}-note`} className="mono" readOnly rows={lines} value={value} onFocus={(e) => e.currentTarget.select()} />
      <CopyButton text={value} />
      <label className="check">
        <input type="checkbox" checked={confirmed} onChange={(e) => setConfirmed(e.target.checked)} /> {saved.text}
      </label>
      <button type="button" disabled={!confirmed} onClick={saved.onDone}>
        Done
      </button>
    </div>
  );
}
