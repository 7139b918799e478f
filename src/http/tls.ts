import { createHash, webcrypto, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type * as X509 from "@peculiar/x509";
import type { SecretSlot } from "../secrets/secret-variables.js";

export interface TlsMaterial {
  cert: string;
  key: string;
  fingerprint: string;
  selfSigned: boolean;
}

const RENEW_BEFORE_MS = 30 * 86_400_000;

export function fingerprintOf(certPem: string): string {
  const der = new X509Certificate(certPem).raw;
  return createHash("sha256").update(der).digest("hex").toUpperCase().match(/../g)!.join(":");
}

/**
 * The operator's certificate when given; otherwise a self-signed one made on first start. Its
 * private key is sealed by the secret box in the database, never written to disk in plaintext.
 */
export async function loadTls(opts: { certFile?: string; keyFile?: string; host: string; slot: SecretSlot }): Promise<TlsMaterial> {
  if (opts.certFile || opts.keyFile) {
    if (!opts.certFile || !opts.keyFile) throw new Error("set both SLIPWAY_TLS_CERT and SLIPWAY_TLS_KEY, or neither to use a self-signed certificate");
    const cert = readFileSync(opts.certFile, "utf8");
    return { cert, key: readFileSync(opts.keyFile, "utf8"), fingerprint: fingerprintOf(cert), selfSigned: false };
  }
  const stored = await opts.slot.get();
  if (stored) {
    const { cert, key } = JSON.parse(stored) as { cert: string; key: string };
    // Renewed a month before it expires, at the next start.
    if (Date.parse(new X509Certificate(cert).validTo) - Date.now() > RENEW_BEFORE_MS) return { cert, key, fingerprint: fingerprintOf(cert), selfSigned: true };
  }
  const made = await selfSigned(opts.host);
  await opts.slot.put(JSON.stringify(made));
  return { ...made, fingerprint: fingerprintOf(made.cert), selfSigned: true };
}

async function selfSigned(host: string): Promise<{ cert: string; key: string }> {
  // Loaded only when a certificate is made: the library needs the reflect polyfill installed first.
  await import("reflect-metadata");
  const x509 = await import("@peculiar/x509");
  x509.cryptoProvider.set(webcrypto as never);
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const names: X509.JsonGeneralNames = [
    { type: "dns", value: "localhost" },
    { type: "ip", value: "127.0.0.1" },
  ];
  const wildcard = host === "0.0.0.0" || host === "::";
  if (!wildcard && host !== "localhost") names.push({ type: isIP(host) ? "ip" : "dns", value: host });
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString("hex").replace(/^[89a-f]/, "1"),
    name: `CN=${wildcard ? "localhost" : host}, O=Slipway self-signed`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 365 * 86_400_000),
    keys: keys as never,
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.SubjectAlternativeNameExtension(names)],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey as never));
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString("base64").match(/.{1,64}/g)!.join("\n")}\n-----END PRIVATE KEY-----\n`;
  return { cert: cert.toString("pem"), key };
}
