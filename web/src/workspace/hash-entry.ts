/**
 * Where a link to `/#<something>` leads: `/#<repository-url>` (as Gitpod's links are made) to
 * opening a workspace of that repository, `/#snapshot/<id>` to opening a snapshot. A branch in a
 * GitHub or GitLab page URL (`…/tree/<branch>`, `…/-/tree/<branch>`) becomes the ref. Undefined
 * for any other fragment.
 */
export function hashEntry(hash: string): string | undefined {
  let target: string;
  try {
    target = decodeURIComponent(hash.replace(/^#/, "")).trim();
  } catch {
    return undefined;
  }
  const snapshot = /^snapshot\/([A-Za-z0-9_-]{1,64})$/.exec(target);
  if (snapshot) return `/snapshots/${snapshot[1]}`;
  if (!/^(https?|ssh|git):\/\/[^/]+\/.|^[\w.-]+@[\w.-]+:./.test(target)) return undefined;
  const tree = /^(.*?)\/(?:-\/)?tree\/([^?#]+)$/.exec(target);
  const params = new URLSearchParams(tree ? { repository: tree[1]!, ref: tree[2]! } : { repository: target });
  return `/workspaces/new?${params}`;
}
