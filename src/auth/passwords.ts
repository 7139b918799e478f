import { hash, verify } from "@node-rs/argon2";
import { z } from "zod";

// argon2id (the library's default algorithm) with OWASP's recommended cost.
const options = { memoryCost: 19456, timeCost: 2, parallelism: 1 };

export const passwordSchema = z
  .string()
  .min(10, "a password has at least 10 characters")
  .max(256, "a password has at most 256 characters");

export function hashPassword(password: string): Promise<string> {
  return hash(password, options);
}

export async function verifyPassword(hashed: string, password: string): Promise<boolean> {
  try {
    return await verify(hashed, password);
  } catch {
    return false;
  }
}

let dummy: Promise<string> | undefined;
/**
 * Spends the same work as a real check, so an unknown email answers in the same time as a
 * wrong password and response timing does not tell which accounts exist.
 */
export async function verifyAgainstNothing(password: string): Promise<false> {
  dummy ??= hashPassword("slipway-timing-equaliser");
  await verifyPassword(await dummy, password);
  return false;
}
