import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { anonymous, Client, cookieHeader, createUser, mailedToken, outbox, PASSWORD, signIn, startHarness, tokenClient, totpCode, type Harness } from "./helpers/harness.js";

let h: Harness;
let n = 0;
const email = () => `user${++n}-${Date.now()}@example.com`;

beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());

function signInRequest(body: Record<string, unknown>, opts: { ip?: string; cookie?: string } = {}) {
  return h.app.inject({ method: "POST", url: "/api/v1/session", payload: body, remoteAddress: opts.ip, headers: opts.cookie ? { cookie: opts.cookie } : {} });
}

describe("sessions", () => {
  it("sets an HttpOnly, SameSite=Lax session cookie (not Secure on a loopback HTTP bind)", async () => {
    const e = email();
    await createUser(h, e);
    const res = await signInRequest({ email: e, password: PASSWORD });
    expect(res.statusCode).toBe(200);
    const cookie = res.cookies.find((c) => c.name === "slipway_session")!;
    expect(cookie.httpOnly).toBe(true);
    expect(cookie.sameSite).toBe("Lax");
    expect(cookie.secure).toBeFalsy();
    expect(res.json().csrfToken).toMatch(/.{20,}/);
  });

  it("rotates the session at sign-in: the session the browser came with stops working", async () => {
    const e = email();
    await createUser(h, e);
    const first = await signIn(h, e);
    expect((await first.get("/api/v1/me")).statusCode).toBe(200);
    const again = await signInRequest({ email: e, password: PASSWORD }, { cookie: first.auth.cookie });
    expect(again.statusCode).toBe(200);
    expect(cookieHeader(again)).not.toBe(first.auth.cookie);
    expect((await first.get("/api/v1/me")).statusCode).toBe(401);
    const second = new Client(h.app, { cookie: cookieHeader(again), csrf: again.json().csrfToken });
    expect((await second.get("/api/v1/me")).statusCode).toBe(200);
  });

  it("ends the session at sign-out", async () => {
    const e = email();
    await createUser(h, e);
    const c = await signIn(h, e);
    const out = await c.delete("/api/v1/session");
    expect(out.statusCode).toBe(204);
    expect(out.cookies.find((x) => x.name === "slipway_session")?.value).toBe("");
    expect((await c.get("/api/v1/me")).statusCode).toBe(401);
  });

  it("expires a session after the idle time", async () => {
    const e = email();
    const user = await createUser(h, e);
    const c = await signIn(h, e);
    expect((await c.get("/api/v1/me")).statusCode).toBe(200);
    const idle = new Date(Date.now() - (h.services.settings.sessionIdleMinutes + 1) * 60_000).toISOString();
    await h.services.store.db.updateTable("sessions").set({ last_seen_at: idle }).where("user_id", "=", user.id).execute();
    expect((await c.get("/api/v1/me")).statusCode).toBe(401);
  });

  it("requires the CSRF token of this session on browser writes", async () => {
    const e = email();
    await createUser(h, e);
    const c = await signIn(h, e);
    const other = await signIn(h, e);
    const noToken = new Client(h.app, { cookie: c.auth.cookie });
    const wrongToken = new Client(h.app, { cookie: c.auth.cookie, csrf: other.auth.csrf });
    for (const client of [noToken, wrongToken]) {
      const res = await client.post("/api/v1/orgs", { name: "x" });
      expect(res.statusCode).toBe(403);
      expect(res.json().error.code).toBe("csrf_invalid");
    }
    expect((await c.post("/api/v1/orgs", { name: "x" })).statusCode).toBe(201);
  });

  it("changing the password ends the user's other sessions", async () => {
    const e = email();
    await createUser(h, e);
    const a = await signIn(h, e);
    const b = await signIn(h, e);
    expect((await a.post("/api/v1/me/password", { currentPassword: "wrong password!!", newPassword: "another good password" })).statusCode).toBe(403);
    expect((await a.post("/api/v1/me/password", { currentPassword: PASSWORD, newPassword: "another good password" })).statusCode).toBe(204);
    expect((await a.get("/api/v1/me")).statusCode).toBe(200);
    expect((await b.get("/api/v1/me")).statusCode).toBe(401);
    await signIn(h, e, "another good password");
  });
});

describe("failed sign-ins", () => {
  it("answers an unknown email exactly like a wrong password (no account enumeration)", async () => {
    const e = email();
    await createUser(h, e);
    const wrong = await signInRequest({ email: e, password: "not the password" }, { ip: "127.0.0.2" });
    const unknown = await signInRequest({ email: `nobody-${e}`, password: "not the password" }, { ip: "127.0.0.2" });
    expect(wrong.statusCode).toBe(401);
    expect(unknown.statusCode).toBe(wrong.statusCode);
    expect(unknown.body).toBe(wrong.body);
  });

  it("locks an account after repeated failures, the same way for an unknown email", async () => {
    for (const [e, exists] of [[email(), true], [email(), false]] as const) {
      if (exists) await createUser(h, e);
      for (let i = 0; i < 5; i++) expect((await signInRequest({ email: e, password: "bad password" }, { ip: `127.0.1.${i}` })).statusCode).toBe(401);
      const locked = await signInRequest({ email: e, password: PASSWORD }, { ip: "127.0.1.99" });
      expect(locked.statusCode).toBe(429);
      expect(locked.json().error.code).toBe("too_many_attempts");
      expect(Number(locked.headers["retry-after"])).toBeGreaterThan(0);
    }
    const e = email();
    await createUser(h, e);
    for (let i = 0; i < 4; i++) await signInRequest({ email: e, password: "bad password" }, { ip: "127.0.2.1" });
    expect((await signInRequest({ email: e, password: PASSWORD }, { ip: "127.0.2.1" })).statusCode).toBe(200);
  });

  it("limits failures per source address across accounts", async () => {
    const ip = "127.0.3.7";
    for (let i = 0; i < 30; i++) await signInRequest({ email: email(), password: "bad password" }, { ip });
    const e = email();
    await createUser(h, e);
    expect((await signInRequest({ email: e, password: PASSWORD }, { ip })).statusCode).toBe(429);
    expect((await signInRequest({ email: e, password: PASSWORD }, { ip: "127.0.3.8" })).statusCode).toBe(200);
  });

  it("records sign-ins and failures in the audit log", async () => {
    const e = email();
    const user = await createUser(h, e);
    await signInRequest({ email: e, password: "bad password" });
    await signIn(h, e);
    const rows = await h.services.store.db.selectFrom("audit_log").select(["action", "ip"]).where("actor_id", "=", user.id).execute();
    expect(rows.map((r) => r.action)).toEqual(expect.arrayContaining(["auth.signin_failed", "auth.signin"]));
    expect(rows.filter((r) => r.action.startsWith("auth.signin")).every((r) => r.ip)).toBe(true);
  });
});

describe("two-factor authentication", () => {
  async function enable(c: Client) {
    const begin = await c.post("/api/v1/me/2fa", { password: PASSWORD });
    expect(begin.statusCode).toBe(200);
    const { otpauthUri, qrSvg } = begin.json();
    expect(otpauthUri).toMatch(/^otpauth:\/\/totp\/Slipway:/);
    expect(qrSvg).toContain("<svg");
    const confirm = await c.post("/api/v1/me/2fa/confirm", { code: totpCode(otpauthUri) });
    expect(confirm.statusCode).toBe(200);
    return { uri: otpauthUri as string, recoveryCodes: confirm.json().recoveryCodes as string[] };
  }

  it("P24: a user enables TOTP; sign-in without the code, or with a wrong or replayed one, is refused", async () => {
    const e = email();
    await createUser(h, e);
    const c = await signIn(h, e);
    const begin = await c.post("/api/v1/me/2fa", { password: PASSWORD });
    expect((await c.post("/api/v1/me/2fa/confirm", { code: "000000" })).statusCode).toBe(400);
    const confirm = await c.post("/api/v1/me/2fa/confirm", { code: totpCode(begin.json().otpauthUri) });
    expect(confirm.statusCode).toBe(200);
    expect(confirm.json().recoveryCodes).toHaveLength(10);
    expect((await c.get("/api/v1/me")).json().user.twoFactor).toBe(true);

    const without = await signInRequest({ email: e, password: PASSWORD });
    expect(without.statusCode).toBe(401);
    expect(without.json().error.code).toBe("totp_required");
    expect(without.cookies.find((x) => x.name === "slipway_session")).toBeUndefined();
    const wrong = await signInRequest({ email: e, password: PASSWORD, totp: "123456" });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error.code).toBe("invalid_code");
    // The confirm code was the current step: it is spent; the next step's code signs in, once.
    const next = totpCode(begin.json().otpauthUri, 1);
    expect((await signInRequest({ email: e, password: PASSWORD, totp: next })).statusCode).toBe(200);
    expect((await signInRequest({ email: e, password: PASSWORD, totp: next })).statusCode).toBe(401);
  });

  it("P24: recovery codes are shown once, stored hashed, and each works once", async () => {
    const e = email();
    const user = await createUser(h, e);
    const c = await signIn(h, e);
    const { recoveryCodes } = await enable(c);
    const stored = await h.services.store.db.selectFrom("recovery_codes").select("code_hash").where("user_id", "=", user.id).execute();
    expect(stored).toHaveLength(10);
    for (const code of recoveryCodes) expect(stored.map((s) => s.code_hash).join()).not.toContain(code.replace(/-/g, ""));
    expect((await signInRequest({ email: e, password: PASSWORD, totp: recoveryCodes[0] })).statusCode).toBe(200);
    expect((await signInRequest({ email: e, password: PASSWORD, totp: recoveryCodes[0] })).statusCode).toBe(401);
    expect((await c.get("/api/v1/me")).json().recoveryCodesLeft).toBe(9);
  });

  it("P24: turning 2FA off needs a valid code and is audited", async () => {
    const e = email();
    const user = await createUser(h, e);
    const c = await signIn(h, e);
    const { uri } = await enable(c);
    expect((await c.post("/api/v1/me/2fa/disable", { code: "999999" })).statusCode).toBe(400);
    expect((await c.post("/api/v1/me/2fa/disable", { code: totpCode(uri, 1) })).statusCode).toBe(204);
    expect((await signInRequest({ email: e, password: PASSWORD })).statusCode).toBe(200);
    const actions = (await h.services.store.db.selectFrom("audit_log").select("action").where("actor_id", "=", user.id).execute()).map((r) => r.action);
    expect(actions).toEqual(expect.arrayContaining(["auth.2fa_enabled", "auth.2fa_disabled"]));
  });
});

describe("API tokens", () => {
  it("shows a token once, keeps only its hash, and lets it act within its scopes until revoked", async () => {
    const e = email();
    await createUser(h, e);
    const c = await signIn(h, e);
    expect((await c.post("/api/v1/orgs", { name: "team" })).statusCode).toBe(201);
    const created = await c.post("/api/v1/tokens", { name: "ci", scopes: ["projects:read", "projects:write"] });
    expect(created.statusCode).toBe(201);
    const { id, token } = created.json();
    expect(token).toMatch(/^slw_/);
    const list = await c.get("/api/v1/tokens");
    expect(list.body).not.toContain(token);
    expect(list.json().tokens[0]).toMatchObject({ id, name: "ci", scopes: ["projects:read", "projects:write"], revokedAt: null });
    const row = await h.services.store.db.selectFrom("api_tokens").selectAll().where("id", "=", id).executeTakeFirstOrThrow();
    expect(JSON.stringify(row)).not.toContain(token);

    const bearer = new Client(h.app, { bearer: token });
    const project = await bearer.post("/api/v1/projects", { name: "from-token" });
    expect(project.statusCode).toBe(201);
    expect((await bearer.get(`/api/v1/projects/${project.json().id}`)).statusCode).toBe(200);
    expect((await bearer.get("/api/v1/orgs")).json().error.code).toBe("insufficient_scope");
    expect((await bearer.get("/api/v1/tokens")).json().error.code).toBe("session_required");

    expect((await c.delete(`/api/v1/tokens/${id}`)).statusCode).toBe(204);
    const after = await bearer.get(`/api/v1/projects/${project.json().id}`);
    expect(after.statusCode).toBe(401);
    expect(after.json().error.code).toBe("invalid_token");
  });

  it("refuses an expired token", async () => {
    const e = email();
    await createUser(h, e);
    const c = await signIn(h, e);
    expect((await c.post("/api/v1/tokens", { name: "old", scopes: ["projects:read"], expiresAt: "2001-01-01T00:00:00Z" })).statusCode).toBe(400);
    const t = await tokenClient(h, c, ["projects:read"]);
    expect((await t.get("/api/v1/projects")).statusCode).toBe(200);
    await h.services.store.db.updateTable("api_tokens").set({ expires_at: new Date(Date.now() - 1000).toISOString() }).execute();
    expect((await t.get("/api/v1/projects")).statusCode).toBe(401);
  });
});

describe("sign-up by email", () => {
  let open: Harness;
  beforeAll(async () => {
    open = await startHarness({ signup: true });
  });
  afterAll(() => open.close());

  it("is refused when the operator has not allowed it", async () => {
    const res = await anonymous(h).post("/api/v1/signup", { email: email(), password: PASSWORD });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe("signup_disabled");
  });

  it("mails a verification link to the outbox; the account signs in only once verified", async () => {
    const e = email();
    const res = await anonymous(open).post("/api/v1/signup", { email: e, password: PASSWORD });
    expect(res.statusCode).toBe(202);
    const token = await mailedToken(open, e, "verify-email");
    const early = await open.app.inject({ method: "POST", url: "/api/v1/session", payload: { email: e, password: PASSWORD } });
    expect(early.statusCode).toBe(403);
    expect(early.json().error.code).toBe("email_unverified");
    const verified = await anonymous(open).post("/api/v1/signup/verify", { token });
    expect(verified.statusCode).toBe(200);
    expect(verified.json().user.email).toBe(e);
    expect((await anonymous(open).post("/api/v1/signup/verify", { token })).statusCode).toBe(400);
    await signIn(open, e);
  });

  it("answers a taken address the same way, and tells its owner instead", async () => {
    const e = email();
    await createUser(open, e);
    const before = outbox(open).length;
    const res = await anonymous(open).post("/api/v1/signup", { email: e, password: PASSWORD });
    expect(res.statusCode).toBe(202);
    expect(res.json()).toEqual((await anonymous(open).post("/api/v1/signup", { email: email(), password: PASSWORD })).json());
    const mails = outbox(open).slice(before);
    expect(mails.some((m) => m.includes(`To: ${e}`) && m.includes("someone tried"))).toBe(true);
    expect(mails.filter((m) => m.includes(`To: ${e}`)).some((m) => m.includes("verify-email"))).toBe(false);
  });
});

describe("password reset", () => {
  it("mails a single-use link that sets a new password and ends every session; unknown addresses get the same answer", async () => {
    const e = email();
    await createUser(h, e);
    const before = await signIn(h, e);
    const known = await anonymous(h).post("/api/v1/password-reset", { email: e });
    const unknown = await anonymous(h).post("/api/v1/password-reset", { email: `nobody-${e}` });
    expect(known.statusCode).toBe(202);
    expect(unknown.statusCode).toBe(202);
    expect(unknown.body).toBe(known.body);
    const token = await mailedToken(h, e, "reset-password");

    expect((await anonymous(h).post("/api/v1/password-reset/confirm", { token, password: "short" })).statusCode).toBe(400);
    expect((await anonymous(h).post("/api/v1/password-reset/confirm", { token, password: "a brand new password" })).statusCode).toBe(204);
    expect((await anonymous(h).post("/api/v1/password-reset/confirm", { token, password: "yet another password" })).json().error.code).toBe("token_invalid");
    expect((await before.get("/api/v1/me")).statusCode).toBe(401);
    expect((await signInRequest({ email: e, password: PASSWORD })).statusCode).toBe(401);
    await signIn(h, e, "a brand new password");
  });
});

describe("guessing", () => {
  it("counts parallel guesses before checking them, so they cannot overtake the account limit", async () => {
    const e = email();
    await createUser(h, e);
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => signInRequest({ email: e, password: `guess number ${i}` }, { ip: `127.0.4.${i}` })));
    const codes = answers.map((a) => a.statusCode);
    expect(codes.filter((c) => c === 401).length).toBeLessThanOrEqual(5);
    expect(codes.filter((c) => c === 429).length).toBeGreaterThanOrEqual(15);
  });

  it("limits guesses of the current password within a signed-in session", async () => {
    const e = email();
    await createUser(h, e);
    const c = await signIn(h, e);
    for (let i = 0; i < 5; i++) expect((await c.post("/api/v1/me/password", { currentPassword: `wrong ${i} password`, newPassword: "a new long password" })).statusCode).toBe(403);
    const locked = await c.post("/api/v1/me/password", { currentPassword: PASSWORD, newPassword: "a new long password" });
    expect(locked.statusCode).toBe(429);
  });

  it("P24: starting two-factor set-up needs the password, so a stolen session cannot bind its own authenticator", async () => {
    const e = email();
    await createUser(h, e);
    const c = await signIn(h, e);
    const wrong = await c.post("/api/v1/me/2fa", { password: "not the password" });
    expect(wrong.statusCode).toBe(403);
    expect(wrong.json().error.code).toBe("invalid_credentials");
    expect((await c.post("/api/v1/me/2fa", {})).statusCode).toBe(400);
    expect((await c.post("/api/v1/me/2fa", { password: PASSWORD })).statusCode).toBe(200);
  });
});

describe("account recovery", () => {
  let open: Harness;
  beforeAll(async () => {
    open = await startHarness({ signup: true });
  });
  afterAll(() => open.close());

  it("lets the owner of an address claim it from someone who signed up with it and never verified it", async () => {
    const victim = email();
    expect((await anonymous(open).post("/api/v1/signup", { email: victim, password: "squatter's password" })).statusCode).toBe(202);
    expect((await anonymous(open).post("/api/v1/signup", { email: victim, password: PASSWORD })).statusCode).toBe(202);
    const token = await mailedToken(open, victim, "verify-email");
    expect((await anonymous(open).post("/api/v1/signup/verify", { token })).statusCode).toBe(200);
    await signIn(open, victim);
    expect((await open.app.inject({ method: "POST", url: "/api/v1/session", payload: { email: victim, password: "squatter's password" } })).statusCode).toBe(401);
    // Once verified, the address is taken: a new sign-up changes nothing.
    expect((await anonymous(open).post("/api/v1/signup", { email: victim, password: "squatter's password" })).statusCode).toBe(202);
    await signIn(open, victim);
  });

  it("a password reset revokes every API token and verifies the address it reached", async () => {
    const e = email();
    await createUser(open, e);
    const c = await signIn(open, e);
    expect((await c.post("/api/v1/orgs", { name: "t" })).statusCode).toBe(201);
    const t = await tokenClient(open, c, ["orgs:read"]);
    expect((await t.get("/api/v1/orgs")).statusCode).toBe(200);
    await anonymous(open).post("/api/v1/password-reset", { email: e });
    const token = await mailedToken(open, e, "reset-password");
    expect((await anonymous(open).post("/api/v1/password-reset/confirm", { token, password: "after the reset" })).statusCode).toBe(204);
    expect((await t.get("/api/v1/orgs")).statusCode).toBe(401);

    const unverified = email();
    await open.services.users.create({ email: unverified, password: PASSWORD, isAdmin: false, verified: false }, { actor: "test" });
    await anonymous(open).post("/api/v1/password-reset", { email: unverified });
    const reset = await mailedToken(open, unverified, "reset-password");
    expect((await anonymous(open).post("/api/v1/password-reset/confirm", { token: reset, password: "chosen by the owner" })).statusCode).toBe(204);
    await signIn(open, unverified, "chosen by the owner");
  });

  it("spends a mailed token once, even when two requests race with it", async () => {
    const e = email();
    await createUser(open, e);
    await anonymous(open).post("/api/v1/password-reset", { email: e });
    const token = await mailedToken(open, e, "reset-password");
    const [a, b] = await Promise.all([
      anonymous(open).post("/api/v1/password-reset/confirm", { token, password: "first new password" }),
      anonymous(open).post("/api/v1/password-reset/confirm", { token, password: "second new password" }),
    ]);
    expect([a.statusCode, b.statusCode].sort()).toEqual([204, 400]);
  });
});
