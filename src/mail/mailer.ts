import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import nodemailer from "nodemailer";
import type { Logger } from "pino";

export interface Mail {
  to: string;
  subject: string;
  text: string;
}

/**
 * A link carrying a single-use token. The token rides in the URL fragment, which browsers never
 * send to a server, so no access log or proxy on the way records it.
 */
export function tokenLink(publicUrl: string, page: string, token: string): string {
  return `${publicUrl}/${page}#token=${token}`;
}

export interface Mailer {
  send(mail: Mail): Promise<void>;
  /** Sends without making the caller wait, so response times do not tell whether a mail went out. */
  sendLater(mail: Mail): void;
  /** Where mail goes, for the start-up log. */
  describe(): string;
}

/**
 * SMTP when the operator configured it; otherwise each message is written as an .eml file into
 * the outbox folder of the data dir, so a fresh install can still verify addresses.
 */
export function createMailer(opts: { smtpUrl?: string; from: string; dataDir: string; log: Logger }): Mailer {
  const transport = opts.smtpUrl ? smtpMailer(opts.smtpUrl, opts.from) : outboxMailer(opts.dataDir, opts.from, opts.log);
  return {
    ...transport,
    sendLater(mail) {
      transport.send(mail).catch((err: unknown) => opts.log.error({ err, subject: mail.subject }, "sending mail failed; check SLIPWAY_SMTP_URL"));
    },
  };
}

function smtpMailer(smtpUrl: string, from: string): Omit<Mailer, "sendLater"> {
  const transport = nodemailer.createTransport(smtpUrl);
  const host = new URL(smtpUrl).host;
  return {
    async send(mail) {
      await transport.sendMail({ from, ...mail });
    },
    describe: () => `SMTP server ${host}`,
  };
}

function outboxMailer(dataDir: string, from: string, log: Logger): Omit<Mailer, "sendLater"> {
  const outbox = path.join(dataDir, "outbox");
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "unix" });
  return {
    async send(mail) {
      const info = await transport.sendMail({ from, ...mail });
      mkdirSync(outbox, { recursive: true, mode: 0o700 });
      const file = path.join(outbox, `${new Date().toISOString().replace(/[:.]/g, "-")}-${info.messageId.replace(/[^A-Za-z0-9]/g, "").slice(0, 24)}.eml`);
      writeFileSync(file, info.message as Buffer, { mode: 0o600 });
      log.info({ file }, "no SMTP server configured (SLIPWAY_SMTP_URL): mail written to the outbox");
    },
    describe: () => `outbox folder ${outbox} (set SLIPWAY_SMTP_URL to send mail)`,
  };
}
