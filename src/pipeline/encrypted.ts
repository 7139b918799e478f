/**
 * Encrypted env files committed to a repository. Slipway's format: every non-empty line starts with
 * `slipway:v1:` followed by the sealed value (made by `slipway secrets encrypt`, opened by the runner
 * with the project's key; nothing is decrypted here). Codeship's `jet encrypt` wrote one base64 blob
 * of AES ciphertext with no header, which Slipway cannot open: it has to be encrypted again.
 */
export const slipwayEncryptedPrefix = "slipway:v1:";

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
