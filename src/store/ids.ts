import { randomBytes } from "node:crypto";

/** Random, unguessable ids with a prefix naming their kind (`prj_…`, `usr_…`). */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString("base64url")}`;
}

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString("base64url");
}

export const now = (): string => new Date().toISOString();
export const inFuture = (ms: number): string => new Date(Date.now() + ms).toISOString();
