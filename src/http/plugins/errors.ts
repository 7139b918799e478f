import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from "fastify-type-provider-zod";
import { AppError } from "../../errors.js";

export const SEGMENT_TOO_LONG = "a path segment of the URL is too long";

/** The longest path segment a route parameter takes; a longer one is 414 rather than a miss. */
export const MAX_PARAM_LENGTH = 200;

const fastifyCodes: Record<string, [number, string, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, "body_too_large", "the request body is too large"],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, "unsupported_media_type", "send the body as application/json"],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, "invalid_request", "Content-Length does not match the body"],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, "invalid_json", "the body is empty; send a JSON object or no Content-Type header"],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, "invalid_json", "the body is not valid JSON"],
  FST_ERR_BAD_URL: [400, "invalid_request", "the URL is malformed"],
  FST_ERR_MAX_PARAM_LENGTH: [414, "uri_too_long", SEGMENT_TOO_LONG],
  FST_ERR_ASYNC_CONSTRAINT: [400, "invalid_request", "the request could not be routed"],
  FST_CSRF_MISSING_SECRET: [403, "csrf_invalid", "the CSRF token is missing or wrong; send the csrfToken from sign-in as the X-CSRF-Token header"],
  FST_CSRF_INVALID_TOKEN: [403, "csrf_invalid", "the CSRF token is missing or wrong; send the csrfToken from sign-in as the X-CSRF-Token header"],
};

/**
 * Errors the router raises before any route or hook runs (a malformed URL, an overlong path
 * segment): Fastify answers them in its own shape unless given this as `frameworkErrors`.
 */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const [status, code, message] = fastifyCodes[err.code] ?? [400, "invalid_request", "the request could not be routed"];
  void reply.code(status).send({ error: { code, message } });
}

/** A write that lost a race to a unique key: SQLite and PostgreSQL say so in their own words. */
function isUniqueViolation(err: { code?: string }): boolean {
  return err.code === "SQLITE_CONSTRAINT_UNIQUE" || err.code === "SQLITE_CONSTRAINT_PRIMARYKEY" || err.code === "23505";
}

/** One shape for every error: `{ error: { code, message } }`; 5xx only for our own faults, never their details. */
export const errorsPlugin = fp(async (app: FastifyInstance) => {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (err instanceof AppError) {
      if (err.status >= 500) request.log.error({ err }, "internal error");
      return reply.code(err.status).headers(err.headers).send({ error: { code: err.code, message: err.message } });
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const details = err.validation.map((v) => `${[err.validationContext ?? "request", ...v.instancePath.split("/").filter(Boolean)].join(".")}: ${v.message}`);
      return reply.code(400).send({ error: { code: "invalid_request", message: details.join("; ") } });
    }
    if (err instanceof SyntaxError && err.statusCode === 400) {
      return reply.code(400).send({ error: { code: "invalid_json", message: "the body is not valid JSON" } });
    }
    if (isUniqueViolation(err)) {
      return reply.code(409).send({ error: { code: "conflict", message: "that already exists (perhaps made by a request at the same moment); reload and try again" } });
    }
    const known = err.code ? fastifyCodes[err.code] : undefined;
    if (known) return reply.code(known[0]).send({ error: { code: known[1], message: known[2] } });
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send({ error: { code: (err.code ?? "bad_request").toLowerCase(), message: err.message } });
    }
    if (isResponseSerializationError(err)) request.log.error({ err: err.cause, route: request.routeOptions.url }, "response did not match its schema");
    else request.log.error({ err }, "internal error");
    return reply.code(500).send({ error: { code: "internal", message: `something went wrong on our side; the server log has request id ${request.id}` } });
  });

  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: { code: "not_found", message: `no route ${request.method} ${request.url.split("?")[0]}; see /api/v1/openapi.json` } }),
  );
});
