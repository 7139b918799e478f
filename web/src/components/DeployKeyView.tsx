import type { ReactNode } from "react";
import { useDeployKey } from "../queries";
import type { DeployKey } from "../types";
import { CopyButton } from "./CopyButton";
import { ErrorNote } from "./ErrorNote";
import { Time } from "./Time";

/** A project's deploy key (public half) to copy to the git server, with its fingerprint; `children` adds what may be done with it. */
export function DeployKeyView({ projectId, children }: { projectId: string; children?: (key: DeployKey) => ReactNode }) {
  const key = useDeployKey(projectId);
  if (key.isPending) return <p role="status">Loading the key…</p>;
  if (key.error) return <ErrorNote error={key.error} />;
  return (
    <>
      <pre className="key" aria-label="Deploy key">
        {key.data.publicKey}
      </pre>
      <div className="actions">
        <CopyButton text={key.data.publicKey} label="Copy key" />
      </div>
      <dl className="facts">
        <dt>Fingerprint</dt>
        <dd className="mono" data-testid="deploy-key-fingerprint">
          {key.data.fingerprint}
        </dd>
        <dt>Made</dt>
        <dd>
          <Time at={key.data.createdAt} />
        </dd>
      </dl>
      {children?.(key.data)}
    </>
  );
}
