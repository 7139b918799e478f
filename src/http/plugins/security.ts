import cookie from "@fastify/cookie";
import csrf from "@fastify/csrf-protection";
import helmet from "@fastify/helmet";
import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { AppError } from "../../errors.js";

/** Headers (CSP, HSTS on TLS, …), signed cookies, CSRF tokens and per-route rate limits. */
export const securityPlugin = fp(async (app: FastifyInstance, opts: { tls: boolean; cookieSecret: Buffer; csrfKey: Buffer }) => {
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        ...(opts.tls ? { "upgrade-insecure-requests": [] } : {}),
      },
    },
    hsts: opts.tls ? { maxAge: 31_536_000, includeSubDomains: true } : false,
    referrerPolicy: { policy: "no-referrer" },
  });
  await app.register(cookie, { secret: opts.cookieSecret.toString("hex") });
  await app.register(csrf, {
    sessionPlugin: "@fastify/cookie",
    cookieKey: "slipway_csrf",
    csrfOpts: { hmacKey: opts.csrfKey, userInfo: true },
    cookieOpts: { path: "/", sameSite: "strict", httpOnly: true, secure: opts.tls, signed: true },
    getToken: (req) => req.headers["x-csrf-token"] as string | undefined,
    getUserInfo: (req) => req.principal?.sessionHash ?? "",
  });
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_req, ctx) => new AppError(429, "rate_limited", `too many requests; try again in ${ctx.after}`, { "retry-after": String(Math.ceil(ctx.ttl / 1000)) }),
  });
});
