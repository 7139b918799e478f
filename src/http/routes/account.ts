import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { newSshKeySchema, sshKeySchema } from "../../auth/ssh-keys.js";
import { variableScopeSchema, workspaceVariableSchema } from "../../workspaces/variables.js";
import { passwordSchema } from "../../auth/passwords.js";
import { displayNameSchema } from "../../auth/users.js";
import { secretNameSchema, secretValueSchema } from "../../secrets/secret-variables.js";
import type { Services } from "../../services.js";
import { contextOf } from "../plugins/access.js";
import { createdTokenSchema, meSchema, userSchema, newTokenSchema, orgWithRoleSchema, recoveryCodesSchema, secretNameListSchema, tokenSchema, twoFactorSetupSchema } from "../schemas.js";

const sessionOnly = { access: { kind: "account", sessionOnly: true } } as const;
/** For routes that check a password or code: few tries per minute for one account from one address. */
const guarded = {
  ...sessionOnly,
  rateLimit: { max: 10, timeWindow: "1 minute", keyGenerator: (request: FastifyRequest) => `${request.ip}|${request.principal?.userId ?? ""}` },
} as const;

/** The caller's own account: profile, password, two-factor, API tokens, personal secrets, invitations. */
export const accountRoutes: FastifyPluginAsyncZod<{ services: Services }> = async (app, { services }) => {
  app.get(
    "/me",
    { config: { access: { kind: "account" } }, schema: { summary: "The caller's account and organizations", response: { 200: meSchema } } },
    async (request) => {
      const { principal } = contextOf(request);
      return {
        user: await services.users.byId(services.store.db, principal.userId),
        organizations: await services.orgs.listFor(principal.userId),
        recoveryCodesLeft: await services.twoFactor.recoveryCodesLeft(principal.userId),
      };
    },
  );

  app.patch(
    "/me",
    {
      config: sessionOnly,
      schema: { summary: "Change your display name", description: "The name other members see on builds and in member lists.", body: z.object({ name: displayNameSchema }).strict(), response: { 200: userSchema } },
    },
    async (request) => services.users.rename(contextOf(request), request.body.name),
  );

  app.post(
    "/me/password",
    { config: guarded, schema: { summary: "Change password (ends your other sessions)", body: z.object({ currentPassword: z.string().min(1).max(256), newPassword: passwordSchema }).strict() } },
    async (request, reply) => {
      const ctx = contextOf(request);
      await services.throttle.guard(ctx.principal.email, ctx.ip, () => services.users.changePassword(ctx, request.body.currentPassword, request.body.newPassword));
      await services.sessions.destroyAllOf(services.store.db, ctx.principal.userId, ctx.principal.sessionHash);
      return reply.code(204).send();
    },
  );

  app.post(
    "/me/2fa",
    {
      config: guarded,
      schema: {
        summary: "Start two-factor set-up",
        description: "Needs the account's password, so a stolen session alone cannot bind its own authenticator. Returns the otpauth:// URI and a QR code (SVG) for an authenticator app; confirm with a code to turn it on.",
        body: z.object({ password: z.string().min(1).max(256) }).strict(),
        response: { 200: twoFactorSetupSchema },
      },
    },
    async (request) => {
      const ctx = contextOf(request);
      await services.throttle.guard(ctx.principal.email, ctx.ip, () => services.users.confirmPassword(ctx.principal.userId, request.body.password));
      return services.twoFactor.begin(ctx);
    },
  );

  app.post(
    "/me/2fa/confirm",
    { config: guarded, schema: { summary: "Turn two-factor on", description: "Returns recovery codes, shown only this once.", body: z.object({ code: z.string().regex(/^\d{6}$/, "a 6-digit code") }).strict(), response: { 200: recoveryCodesSchema } } },
    async (request) => services.twoFactor.confirm(contextOf(request), request.body.code),
  );

  app.post(
    "/me/2fa/disable",
    { config: guarded, schema: { summary: "Turn two-factor off", body: z.object({ code: z.string().min(1).max(64) }).strict() } },
    async (request, reply) => {
      const ctx = contextOf(request);
      await services.throttle.guard(ctx.principal.email, ctx.ip, () => services.twoFactor.disable(ctx, request.body.code));
      return reply.code(204).send();
    },
  );

  app.get("/tokens", { config: sessionOnly, schema: { summary: "List your API tokens", response: { 200: z.object({ tokens: z.array(tokenSchema) }) } } }, async (request) => ({
    tokens: await services.tokens.list(contextOf(request).principal.userId),
  }));

  app.post(
    "/tokens",
    {
      config: sessionOnly,
      schema: {
        summary: "Create an API token",
        description: "The token is in this response only; Slipway keeps a hash. Send it as `Authorization: Bearer <token>`.",
        body: newTokenSchema,
        response: { 201: createdTokenSchema },
      },
    },
    async (request, reply) => reply.code(201).send(await services.tokens.create(contextOf(request), request.body.name, request.body.scopes, request.body.expiresAt ?? null)),
  );

  app.delete("/tokens/:tokenId", { config: sessionOnly, schema: { summary: "Revoke an API token", params: z.object({ tokenId: z.string().min(1).max(64) }) } }, async (request, reply) => {
    await services.tokens.revoke(contextOf(request), request.params.tokenId);
    return reply.code(204).send();
  });

  app.get("/me/ssh-keys", { config: sessionOnly, schema: { summary: "Your SSH public keys", response: { 200: z.object({ keys: z.array(sshKeySchema) }) } } }, async (request) => ({
    keys: await services.sshKeys.list(contextOf(request).principal.userId),
  }));

  app.post(
    "/me/ssh-keys",
    {
      config: sessionOnly,
      schema: {
        summary: "Register an SSH public key",
        description: "One line of your .pub file (ssh-ed25519, ecdsa, or RSA of 2048 bits or more). It lets you into your workspaces: `ssh <workspace id>@<host> -p <ssh port>`.",
        body: newSshKeySchema,
        response: { 201: sshKeySchema },
      },
    },
    async (request, reply) => reply.code(201).send(await services.sshKeys.add(contextOf(request), request.body.name, request.body.publicKey)),
  );

  app.delete("/me/ssh-keys/:keyId", { config: sessionOnly, schema: { summary: "Remove an SSH public key", params: z.object({ keyId: z.string().min(1).max(64) }) } }, async (request, reply) => {
    await services.sshKeys.remove(contextOf(request), request.params.keyId);
    return reply.code(204).send();
  });

  app.get(
    "/me/workspace-variables",
    { config: { access: { kind: "account", scope: "secrets:read" } }, schema: { summary: "Your workspace variables: names and scopes, never values", response: { 200: z.object({ variables: z.array(workspaceVariableSchema) }) } } },
    async (request) => ({ variables: await services.workspaceVariables.list(contextOf(request).principal.userId) }),
  );

  app.put(
    "/me/workspace-variables/:name",
    {
      config: { access: { kind: "account", scope: "secrets:write" } },
      schema: {
        summary: "Set a variable for your workspaces (write-only)",
        description:
          "P17: sealed with your key, masked in task output. `scope` names the repositories whose workspaces get it: `owner/repo`, `owner/*` or `*/*` (the default). A workspace's variables, later winning: its config's `env`, the project's secrets, then yours (`*/*`, then `owner/*`, then `owner/repo`).",
        params: z.object({ name: secretNameSchema }),
        body: z.object({ value: secretValueSchema, scope: variableScopeSchema.default("*/*") }).strict(),
      },
    },
    async (request, reply) => {
      await services.workspaceVariables.set(contextOf(request), request.params.name, request.body.scope, request.body.value);
      return reply.code(204).send();
    },
  );

  app.delete(
    "/me/workspace-variables/:name",
    {
      config: { access: { kind: "account", scope: "secrets:write" } },
      schema: { summary: "Delete a workspace variable", params: z.object({ name: secretNameSchema }), querystring: z.object({ scope: variableScopeSchema.default("*/*") }).strict() },
    },
    async (request, reply) => {
      await services.workspaceVariables.delete(contextOf(request), request.params.name, request.query.scope);
      return reply.code(204).send();
    },
  );

  const self = (userId: string) => ({ kind: "user", id: userId }) as const;

  app.get("/me/secrets", { config: { access: { kind: "account", scope: "secrets:read" } }, schema: { summary: "Names of your personal secrets", response: { 200: secretNameListSchema } } }, async (request) => ({
    secrets: await services.secrets.list(self(contextOf(request).principal.userId)),
  }));

  app.put(
    "/me/secrets/:name",
    { config: { access: { kind: "account", scope: "secrets:write" } }, schema: { summary: "Set a personal secret (write-only)", params: z.object({ name: secretNameSchema }), body: z.object({ value: secretValueSchema }).strict() } },
    async (request, reply) => {
      const ctx = contextOf(request);
      const { created } = await services.secrets.set(ctx, self(ctx.principal.userId), null, request.params.name, request.body.value);
      return reply.code(created ? 201 : 204).send();
    },
  );

  app.delete("/me/secrets/:name", { config: { access: { kind: "account", scope: "secrets:write" } }, schema: { summary: "Delete a personal secret", params: z.object({ name: secretNameSchema }) } }, async (request, reply) => {
    const ctx = contextOf(request);
    await services.secrets.delete(ctx, self(ctx.principal.userId), null, request.params.name);
    return reply.code(204).send();
  });

  app.post(
    "/invitations/accept",
    { config: sessionOnly, schema: { summary: "Join an organization you were invited to", body: z.object({ token: z.string().min(1).max(200) }).strict(), response: { 200: z.object({ organization: orgWithRoleSchema }) } } },
    async (request) => ({ organization: await services.orgs.acceptInvitation(contextOf(request), request.body.token) }),
  );
};
