import { pino, type Logger, type LevelWithSilent } from "pino";

interface LoggedRequest {
  method?: string;
  url?: string;
  ip?: string;
}

/**
 * JSON logs for the server. Requests are logged by method and path only: query strings and
 * headers can carry tokens, and none of them reach the log.
 */
export function createLogger(level: LevelWithSilent): Logger {
  return pino({
    level,
    serializers: {
      req: (req: LoggedRequest) => ({ method: req.method, url: req.url?.split("?")[0], remoteAddress: req.ip }),
    },
  });
}
