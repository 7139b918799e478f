import { useState } from "react";

/** A button for something that cannot be undone: it asks first, and Cancel has the focus. */
export function ConfirmButton({ label, question, confirmLabel, pending, onConfirm }: { label: string; question: string; confirmLabel: string; pending?: boolean; onConfirm: () => void }) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button type="button" className="secondary" onClick={() => setAsking(true)}>
        {label}
      </button>
    );
  return (
    <span className="confirm">
      <span>{question}</span>
      <button type="button" className="danger" disabled={pending} onClick={onConfirm}>
        {confirmLabel}
      </button>
      <button type="button" className="secondary" autoFocus onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}
