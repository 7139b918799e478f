import { useId, type FormEvent, type InputHTMLAttributes } from "react";

/** A labelled input, with an optional hint tied to it for screen readers. */
export function Field({ label, hint, ...input }: { label: string; hint?: string } & InputHTMLAttributes<HTMLInputElement>) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <input id={id} aria-describedby={hint ? `${id}-hint` : undefined} {...input} />
      {hint && (
        <small id={`${id}-hint`} className="muted">
          {hint}
        </small>
      )}
    </div>
  );
}

/** The values of a submitted form by field name. */
export const formValues = (form: HTMLFormElement) => Object.fromEntries([...new FormData(form)].map(([k, v]) => [k, String(v)]));

/** A form's submit handler: `submit` gets the form's values instead of the page reloading. */
export const submitting = (submit: (values: Record<string, string>, form: HTMLFormElement) => void) => (e: FormEvent<HTMLFormElement>) => {
  e.preventDefault();
  submit(formValues(e.currentTarget), e.currentTarget);
};

/** The fragment's parameters (#token=…): links put tokens there so that no server log sees them. */
export const fragment = () => new URLSearchParams(window.location.hash.slice(1));
