/**
 * Encrypted env files committed to a repository. Slipway's format: every non-empty line starts with
 * `slipway:v1:` followed by the sealed value (made by `slipway secrets encrypt`, opened on the server
 * with the project's key, see src/secrets/env-file-format.ts; nothing is decrypted here). Codeship's `jet encrypt` wrote one base64 blob
 * of AES ciphertext with no header, which Slipway cannot open: it has to be encrypted again.
 */
export const slipwayEncryptedPrefix = "slipway:v1:";

/** How to make a file Slipway can open, for messages about one it cannot. */
export const reencryptHint = (file: string, projectId = "PROJECT_ID") => `encrypt the plain file for this project with: slipway secrets encrypt --server https://SERVER --project ${projectId} plain.env ${file}`;

export type EncryptedKind = "slipway" | "codeship" | "plaintext" | "empty";

export function classifyEncryptedFile(text: string): EncryptedKind {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== "");
  if (lines.length === 0) return "empty";
  if (lines.every((l) => l.trim().startsWith(slipwayEncryptedPrefix))) return "slipway";
  const compact = text.replace(/\s+/g, "");
  // AES output is at least one 16-byte block; base64 of that is at least 24 characters.
  if (compact.length >= 24 && /^[A-Za-z0-9+/]+={0,2}$/.test(compact)) return "codeship";
  return "plaintext";
}
