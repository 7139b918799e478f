/**
 * An expected failure with the status and code the API shows and a message that says what to
 * do next. Concerns throw it; the HTTP layer and the CLI render it the same way.
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const notFound = (what: string) => new AppError(404, "not_found", `${what} not found`);
export const forbidden = (message: string, code = "forbidden") => new AppError(403, code, message);
export const conflict = (message: string) => new AppError(409, "conflict", message);
export const badRequest = (message: string, code = "invalid_request") => new AppError(400, code, message);
