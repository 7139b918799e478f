import { useId, type ReactNode } from "react";

/** A titled part of a page, named by its heading for screen readers' landmarks. */
export function Section({ title, children, className = "panel" }: { title: string; children: ReactNode; className?: string }) {
  const id = useId();
  return (
    <section aria-labelledby={id} className={className}>
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}
