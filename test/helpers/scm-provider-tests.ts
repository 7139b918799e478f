import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "vitest";
import { generateEd25519KeyPair } from "../../src/crypto/ssh-keys.js";
import { newOAuthSecret, ScmError, type OAuthPurpose, type ScmErrorKind, type ScmProvider, type ScmUser } from "../../src/scm/provider.js";
import { browse } from "./scm-connect.js";

// What the tests of the provider clients against their simulators share. Each test file keeps its
// own assertions about its provider; these are the steps and checks they all take the same way.

/** How a simulator's OAuth app and server are reached, for a provider's options. */
interface SimApp {
  clientId: string;
  clientSecret: string;
  callbackUrl: string;
  url: string;
  ca: string;
}

/** A provider's options for a simulator: its app, its base URL, its CA, and retries fast enough for tests. */
export const simOptions = (sim: SimApp) => ({ clientId: sim.clientId, clientSecret: sim.clientSecret, redirectUri: sim.callbackUrl, baseUrl: sim.url, ca: sim.ca, statusRetry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 5_000 } });

/** The ScmError a call fails with; success or any other error fails the test. */
export async function failure(promise: Promise<unknown>): Promise<ScmError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ScmError);
  return err as ScmError;
}

/** The browser's part of sign-in: the simulator approves at once and sends back the state with a code. */
export async function authorizeCode(p: Pick<ScmProvider, "authorizeUrl">, ca: string, purpose: OAuthPurpose = "connect"): Promise<{ code: string; verifier: string }> {
  const state = newOAuthSecret();
  const verifier = newOAuthSecret();
  const back = await browse(p.authorizeUrl(state, verifier, purpose), ca);
  expect(back.searchParams.get("state")).toBe(state);
  const code = back.searchParams.get("code");
  expect(code, back.searchParams.get("error_description") ?? "").toBeTruthy();
  return { code: code!, verifier };
}

/** A whole sign-in: the code, its verifier, and the tokens it was exchanged for. */
export async function signInWith(p: Pick<ScmProvider, "authorizeUrl" | "exchangeCode">, ca: string) {
  const { code, verifier } = await authorizeCode(p, ca);
  return { code, verifier, tokens: await p.exchangeCode(code, verifier) };
}

/**
 * P15: signing in to Slipway asks the git host only for `scopes`; the token reads who the account
 * is (without the email lookup) and cannot install anything on the repository.
 */
export async function expectNarrowSignIn(p: ScmProvider, sim: { ca: string; requestedScopes: string[][] }, scopes: string[], repo: string): Promise<ScmUser> {
  const { code, verifier } = await authorizeCode(p, sim.ca, "sign-in");
  expect(sim.requestedScopes.at(-1)).toEqual(scopes);
  const { accessToken } = await p.exchangeCode(code, verifier);
  const user = await p.currentUser(accessToken, { email: false });
  const err = await failure(p.addDeployKey(accessToken, repo, "sign-in", generateEd25519KeyPair("sign-in").publicKey));
  expect(["forbidden", "not_found"]).toContain(err.kind);
  return user;
}

/** A webhook creation, the call the error-kind tables make fail. */
export interface HookCall {
  provider: ScmProvider;
  token: string;
  repo: string;
  url: string;
}

/**
 * Adds the webhook while `misbehave` has the simulator fail, checks the error's kind and message,
 * then shows the same call works once the simulator behaves (the control).
 */
export async function expectHookFailure(call: HookCall, misbehave: () => void, kind: ScmErrorKind, message: RegExp): Promise<ScmError> {
  const { provider: p, token, repo, url } = call;
  misbehave();
  const err = await failure(p.addWebhook(token, repo, url, "s", ["push"]));
  expect(err.kind).toBe(kind);
  expect(err.message).toMatch(message);
  if (kind === "rate_limited") expect(err.retryAfterMs).toBeGreaterThan(0);
  const { id } = await p.addWebhook(token, repo, url, "s", ["push"]);
  await p.removeWebhook(token, repo, id);
  return err;
}

/** Reading the profile through a provider with a 300 ms timeout times out while the simulator hangs on /user. */
export async function expectProfileTimeout(slow: (options: { timeoutMs: number }) => Pick<ScmProvider, "currentUser">, token: string, sim: { url: string; misbehave(match: { path: string }, what: { hang: true }): void }): Promise<void> {
  sim.misbehave({ path: "/user" }, { hang: true });
  const err = await failure(slow({ timeoutMs: 300 }).currentUser(token));
  expect(err.kind).toBe("timeout");
  expect(err.message).toMatch(new RegExp(`did not answer within 0.3 s while reading your profile: try again later.*${new URL(sim.url).host}`));
}

/** Every attempt `start` makes fails as `invalid` and nothing reaches the simulator. */
export async function expectRefusedUnsent(sim: { requests: unknown[] }, start: () => Promise<unknown>[]): Promise<void> {
  const sent = sim.requests.length;
  for (const attempt of start()) expect((await failure(attempt)).kind).toBe("invalid");
  expect(sim.requests.length).toBe(sent);
}

export interface Received {
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Runs `run` with a webhook receiver on 127.0.0.1 that answers 202 and keeps every delivery. */
export async function receiving(run: (url: string, received: Received[]) => Promise<void>): Promise<void> {
  const received: Received[] = [];
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(202).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  try {
    await run(`http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`, received);
  } finally {
    receiver.close();
  }
}
