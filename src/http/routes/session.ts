import type { FastifyReply } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { passwordSchema } from "../../auth/passwords.js";
import { displayNameSchema, emailSchema, type User } from "../../auth/users.js";
import { tokenHash } from "../../crypto/secret-box.js";
import { actorOf } from "../../audit/audit-log.js";
import { AppError } from "../../errors.js";
import type { Services } from "../../services.js";
import { SESSION_COOKIE, contextOf } from "../plugins/access.js";
import { messageSchema, sessionResponseSchema, userSchema } from "../schemas.js";

const authRateLimit = { max: 30, timeWindow: "1 minute" };
const sessionResponse = sessionResponseSchema;

/** Sets the session cookie of a new session; returns the CSRF token bound to it. */
export function setSessionCookie(reply: FastifyReply, token: string, opts: { tls: boolean; maxDays: number }): string {
  reply.setCookie(SESSION_COOKIE, token, { path: "/", httpOnly: true, sameSite: "lax", secure: opts.tls, maxAge: opts.maxDays * 86_400 });
  return reply.generateCsrf({ userInfo: tokenHash(token) });
}

/** Sign-in and sign-out, self sign-up and email verification. */
export const sessionRoutes: FastifyPluginAsyncZod<{ services: Services; tls: boolean }> = async (app, { services, tls }) => {
  const { settings } = services;

  const startSession = (reply: FastifyReply, token: string, user: User) => ({ user, csrfToken: setSessionCookie(reply, token, { tls, maxDays: settings.sessionMaxDays }) });

  app.post(
    "/session",
    {
      config: { access: { kind: "public" }, rateLimit: authRateLimit },
      schema: {
        summary: "Sign in",
        description: "Email and password, plus `totp` (a 6-digit code or a recovery code) when the account has two-factor authentication. Sets the session cookie and returns the CSRF token to send as `X-CSRF-Token` on writes.",
        body: z.object({ email: emailSchema, password: z.string().min(1).max(256), totp: z.string().min(1).max(64).optional() }).strict(),
        response: { 200: sessionResponse },
      },
    },
    async (request, reply) => {
      const { user, sessionToken } = await services.signIn.signIn(request.body, request.ip);
      // A new session at every sign-in (fixation): the session the browser came with, if any, ends.
      if (request.principal?.sessionHash) await services.sessions.destroy(request.principal.sessionHash);
      return startSession(reply, sessionToken, user);
    },
  );

  app.get(
    "/session",
    { config: { access: { kind: "account", sessionOnly: true } }, schema: { summary: "The signed-in user and a CSRF token", response: { 200: sessionResponse } } },
    async (request, reply) => {
      const user = await services.users.byId(services.store.db, contextOf(request).principal.userId);
      return { user, csrfToken: reply.generateCsrf({ userInfo: request.principal!.sessionHash! }) };
    },
  );

  app.delete(
    "/session",
    { config: { access: { kind: "account", sessionOnly: true } }, schema: { summary: "Sign out" } },
    async (request, reply) => {
      const ctx = contextOf(request);
      await services.sessions.destroy(ctx.principal.sessionHash!);
      await services.audit.record({ action: "auth.signout", ...actorOf(ctx), target: ctx.principal.userId });
      reply.clearCookie(SESSION_COOKIE, { path: "/" }).clearCookie("slipway_csrf", { path: "/" });
      return reply.code(204).send();
    },
  );

  app.post(
    "/signup",
    {
      config: { access: { kind: "public" }, rateLimit: { max: 10, timeWindow: "1 minute" } },
      schema: {
        summary: "Sign up (when the operator allows it)",
        description: "Always answers 202; a verification link is mailed to the address.",
        body: z.object({ email: emailSchema, password: passwordSchema, name: displayNameSchema.optional() }).strict(),
        response: { 202: messageSchema },
      },
    },
    async (request, reply) => {
      if (!settings.signup) throw new AppError(403, "signup_disabled", "sign-up is turned off on this server; ask its operator for an account");
      await services.users.signUp(request.body, request.ip);
      return reply.code(202).send({ message: "check your email for a link to confirm your address" });
    },
  );

  app.post(
    "/password-reset",
    {
      config: { access: { kind: "public" }, rateLimit: { max: 10, timeWindow: "1 minute" } },
      schema: { summary: "Ask for a password reset link", description: "Always answers 202; a verified account gets a link by mail, valid for an hour.", body: z.object({ email: emailSchema }).strict(), response: { 202: messageSchema } },
    },
    async (request, reply) => {
      // Answered before the lookup, so the response time does not tell whether the account exists.
      services.users.requestPasswordReset(request.body.email).catch((err: unknown) => request.log.error({ err }, "password reset failed"));
      return reply.code(202).send({ message: "if an account has this address, a reset link is on its way" });
    },
  );

  app.post(
    "/password-reset/confirm",
    {
      config: { access: { kind: "public" }, rateLimit: authRateLimit },
      schema: { summary: "Set a new password from a reset link", description: "Ends every session and revokes every API token of the account.", body: z.object({ token: z.string().min(1).max(200), password: passwordSchema }).strict() },
    },
    async (request, reply) => {
      const user = await services.users.resetPassword(request.body.token, request.body.password, request.ip);
      // Whoever knew the old password may have signed in or made tokens: none of it survives.
      await services.sessions.destroyAllOf(services.store.db, user.id);
      await services.tokens.revokeAll(services.store.db, user.id);
      return reply.code(204).send();
    },
  );

  app.post(
    "/signup/verify",
    {
      config: { access: { kind: "public" }, rateLimit: authRateLimit },
      schema: { summary: "Confirm an email address", body: z.object({ token: z.string().min(1).max(200) }).strict(), response: { 200: z.object({ user: userSchema }) } },
    },
    async (request) => ({ user: await services.users.verifyEmail(request.body.token, request.ip) }),
  );
};
