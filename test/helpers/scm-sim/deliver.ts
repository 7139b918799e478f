import { createHmac } from "node:crypto";
import http from "node:http";
import https from "node:https";

export const isLoopback = (url: URL): boolean => /^127(?:\.\d{1,3}){3}$/.test(url.hostname) || url.hostname === "[::1]";

/** POSTs a simulated webhook delivery; tests only ever talk to loopback, so anything else is refused. */
export function postToLoopback(target: string, headers: Record<string, string>, body: string, ca?: string): Promise<{ status: number; body: string }> {
  const url = new URL(target);
  if (!isLoopback(url)) return Promise.reject(new Error(`the simulator only delivers to loopback addresses, not ${url.host}`));
  const lib = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method: "POST", headers, ca, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("timeout", () => req.destroy(new Error("webhook delivery timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

/** Sends to each in turn, as a host works through a repository's hooks. */
export async function inTurn<T, R>(items: T[], send: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (const item of items) results.push(await send(item));
  return results;
}

/** The hex HMAC-SHA256 of a delivery's raw body with the hook's secret, the core of every host's signature. */
export const hmacSha256Hex = (secret: string, body: string | Buffer): string => createHmac("sha256", secret).update(body).digest("hex");
