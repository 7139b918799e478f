import https from "node:https";
import type { Client } from "./harness.js";

/** What the browser does at a provider's authorize page: follow it to the redirect the provider answers with. */
export function browse(url: URL, ca: string): Promise<URL> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca }, (res) => {
        res.resume();
        const location = res.headers.location;
        // 302 on GitHub, 303 See Other on Gitea.
        if ((res.statusCode !== 302 && res.statusCode !== 303) || !location) reject(new Error(`expected a redirect, got ${res.statusCode}`));
        else resolve(new URL(location));
      })
      .on("error", reject);
  });
}

/**
 * The browser side of connecting an account through Slipway's API: start, visit the provider's
 * authorize page (the simulator approves at once), come back to Slipway's callback. Returns where
 * Slipway sent the browser afterwards, e.g. `/account#connected=github`.
 */
export async function connectAccount(client: Client, provider: string, ca: string): Promise<string> {
  const start = await client.post(`/api/v1/me/connections/${provider}`);
  if (start.statusCode !== 200) throw new Error(`connect failed: ${start.statusCode} ${start.body}`);
  const back = await browse(new URL(start.json().authorizeUrl), ca);
  const done = await client.get(`${back.pathname}${back.search}`);
  if (done.statusCode !== 303) throw new Error(`callback answered ${done.statusCode} ${done.body}`);
  return String(done.headers.location);
}
