// Pure functions of a repository URL, shared by the server and the web page (no imports).

/** `owner/repo` of a repository URL (the last two parts of its path), for matching scopes and for showing. */
export function repositoryName(url: string): string {
  const path = url.replace(/^[a-z+]+:\/\/[^/]+/i, "").replace(/^[^/:]+@[^:]+:/, "").replace(/\.git$/, "").replace(/\/+$/, "");
  return path.split(/[/:]/).filter(Boolean).slice(-2).join("/");
}

/** The same repository however it was written: case of the scheme and host aside, without a trailing `/` or `.git`. */
export const repositoryKey = (url: string) =>
  url
    .trim()
    .replace(/\/+$/, "")
    .replace(/\.git$/, "")
    .replace(/^[a-z]+:\/\/[^/]+/i, (origin) => origin.toLowerCase());
