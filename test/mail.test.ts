import { existsSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, expect, it } from "vitest";
import { anonymous, PASSWORD, startHarness, type Harness } from "./helpers/harness.js";

let smtp: SMTPServer;
let h: Harness;
const received: Array<{ to: string[]; data: string }> = [];

beforeAll(async () => {
  smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        received.push({ to: session.envelope.rcptTo.map((r) => r.address), data: Buffer.concat(chunks).toString("utf8") });
        done();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, "127.0.0.1", resolve));
  const port = (smtp.server.address() as AddressInfo).port;
  h = await startHarness({ signup: true, smtpUrl: `smtp://127.0.0.1:${port}`, mailFrom: "Slipway <ci@example.com>" });
});

afterAll(async () => {
  await h.close();
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
});

it("sends mail through the configured SMTP server, and writes no outbox", async () => {
  const res = await anonymous(h).post("/api/v1/signup", { email: "smtp-user@example.com", password: PASSWORD });
  expect(res.statusCode).toBe(202);
  expect(received).toHaveLength(1);
  expect(received[0]!.to).toEqual(["smtp-user@example.com"]);
  expect(received[0]!.data).toContain("Subject: Slipway: confirm your email address");
  expect(received[0]!.data).toContain("verify-email#token=");
  expect(existsSync(`${h.dataDir}/outbox`)).toBe(false);
});
