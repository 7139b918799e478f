import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createMasker, maskableSecretValueSchema, MaskingTransform, SecretValueError, validateSecretValue, type Masker } from "./masking.js";
import { seededInts as prng } from "../../test/helpers/prng.js";

/** Has a multi-byte character, a space, + and /, so its encoded forms all differ from each other. */
const SECRET = "Tök€n pass/word+?~>!";

/**
 * The forms P21 names, computed here with Node's own encoders rather than taken from the masker,
 * so a form the masker forgot shows up as a failure.
 */
function encodedForms(secret: string): Record<string, string> {
  const raw = Buffer.from(secret, "utf8");
  const b64 = raw.toString("base64");
  const b64b64 = Buffer.from(b64).toString("base64");
  return {
    raw: secret,
    base64: b64,
    "base64 unpadded": b64.replace(/=+$/, ""),
    base64url: raw.toString("base64url"),
    "base64url padded": raw.toString("base64url") + "=".repeat((4 - (raw.toString("base64url").length % 4)) % 4),
    encodeURIComponent: encodeURIComponent(secret),
    "form-encoded": new URLSearchParams({ v: secret }).toString().slice("v=".length),
    hex: raw.toString("hex"),
    HEX: raw.toString("hex").toUpperCase(),
    "base64 of base64": b64b64,
    "base64 of base64 unpadded": b64b64.replace(/=+$/, ""),
  };
}

const FORMS = encodedForms(SECRET);

/** Writes `pieces` one by one and returns everything the masker emitted, including the final flush. */
function streamed(masker: Masker, pieces: Buffer[]): string {
  return Buffer.concat([...pieces.map((p) => masker.write(p)), masker.end()]).toString("utf8");
}

function splitAt(buf: Buffer, ...points: number[]): Buffer[] {
  const edges = [0, ...points, buf.length];
  return edges.slice(1).map((end, i) => buf.subarray(edges[i]!, end));
}

describe("log masking", () => {
  it("P21: the test secret's forms are all distinct, so each case below tests something of its own", () => {
    const values = Object.values(FORMS);
    expect(new Set(values).size).toBe(values.length);
  });

  it("P21: masks the secret and each of its encoded forms", () => {
    const masker = createMasker([SECRET]);
    for (const [name, form] of Object.entries(FORMS)) {
      const line = `echo ${form} done\n`;
      expect(masker.mask(line).toString(), name).toBe("echo *** done\n");
    }
  });

  it("P21: masks base64 of a secret inside a larger base64 blob, at every alignment", () => {
    const secret = "inner-secret-value-1234567890";
    const masker = createMasker([secret]);
    const random = prng(21);
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => random(256)));
    // What a reader could recover: decode each run of base64 left in the text, at each of the 4
    // character offsets, and look for any 4 consecutive bytes of the secret.
    const recoverable = (text: string) =>
      text.split("***").some((run) =>
        [0, 1, 2, 3].some((offset) => {
          const chars = run.slice(offset);
          const decoded = Buffer.from(chars.slice(0, chars.length - (chars.length % 4)).replace(/-/g, "+").replace(/_/g, "/"), "base64");
          return Array.from({ length: secret.length - 3 }, (_, i) => secret.slice(i, i + 4)).some((gram) => decoded.includes(gram));
        }),
      );
    for (let before = 0; before < 6; before++) {
      for (const encoding of ["base64", "base64url"] as const) {
        const blob = Buffer.concat([bytes(before), Buffer.from(secret), bytes(7)]).toString(encoding);
        expect(recoverable(blob), `control: unmasked blob, ${before} bytes before, ${encoding}`).toBe(true);
        const masked = masker.mask(`data: ${blob}\n`).toString();
        expect(masked).toContain("***");
        expect(recoverable(masked), `${before} bytes before, ${encoding}`).toBe(false);
      }
    }
  });

  it("P21: masks a form split across two writes, at every byte position", () => {
    const masker = createMasker([SECRET]);
    for (const [name, form] of Object.entries(FORMS)) {
      const line = Buffer.from(`log: ${form}\n`);
      for (let i = 0; i <= line.length; i++) expect(streamed(masker, splitAt(line, i)), `${name} split at ${i}`).toBe("log: ***\n");
    }
  });

  it("P21: masks a form split across three writes, at every pair of byte positions", () => {
    const masker = createMasker([SECRET]);
    for (const [name, form] of Object.entries(FORMS)) {
      const line = Buffer.from(`${form}\n`);
      for (let i = 0; i <= line.length; i++) {
        for (let j = i; j <= line.length; j++) expect(streamed(masker, splitAt(line, i, j)), `${name} split at ${i}, ${j}`).toBe("***\n");
      }
    }
  });

  it("P21: masks a secret written one byte at a time", () => {
    const line = Buffer.from(`start ${SECRET} end\n`);
    const bytes = Array.from(line, (_, i) => line.subarray(i, i + 1));
    expect(streamed(createMasker([SECRET]), bytes)).toBe("start *** end\n");
  });

  it("P21: a secret that is a prefix of another: the longer one is masked whole, in either order", () => {
    for (const secrets of [["password", "password-longer"], ["password-longer", "password"]]) {
      const masker = createMasker(secrets);
      expect(masker.mask("a password-longer b\n").toString()).toBe("a *** b\n");
      expect(masker.mask("a password-long b\n").toString()).toBe("a ***-long b\n");
    }
  });

  it("P21: overlapping and adjacent secrets are all masked", () => {
    const [a, b] = ["abcdefgh", "efghijkl"];
    const masker = createMasker([a, b]);
    // Overlapping: masking only the leftmost match would leave "ijkl" of b in the log.
    expect(masker.mask("x abcdefghijkl y").toString()).toBe("x *** y");
    expect(masker.mask(`x ${a}${b} y`).toString()).toBe("x ****** y");
    expect(masker.mask(`x ${b}${a} y`).toString()).toBe("x ****** y");
    expect(masker.mask(`${a}${a}${a}`).toString()).toBe("*********");
  });

  it("P21: text without secrets is emitted at once, except a tail shorter than the longest pattern that could start one", () => {
    const masker = createMasker([SECRET, "ghp_0123456789abcdefghijABCDEFGHIJ"]);
    const longestForm = Math.max(...[SECRET, "ghp_0123456789abcdefghijABCDEFGHIJ"].flatMap((s) => Object.values(encodedForms(s)).map((f) => Buffer.byteLength(f))));
    expect(masker.longestPattern).toBe(longestForm);
    const log = Buffer.from(
      Array.from({ length: 200 }, (_, i) => `\x1b[32m[${i}/200]\x1b[0m Compiling module_${i}.ts -> dist/module_${i}.js (${i * 3} ms) ✓\n`).join(""),
    );
    let emitted = 0;
    let written = 0;
    for (const piece of splitAt(log, ...Array.from({ length: Math.floor(log.length / 7) }, (_, i) => (i + 1) * 7))) {
      const out = masker.write(piece);
      emitted += out.length;
      written += piece.length;
      expect(emitted + masker.heldBytes).toBe(written);
      expect(masker.heldBytes).toBeLessThanOrEqual(masker.longestPattern - 1);
    }
    expect(emitted + masker.end().length).toBe(log.length);
    // A whole line is emitted in full: nothing in "\n" could be the start of a secret.
    expect(masker.write("Compiling module_x.ts\n").toString()).toBe("Compiling module_x.ts\n");
    expect(masker.heldBytes).toBe(0);
    // Control: the start of a secret is held back (and then masked), so the bound above is a real one.
    expect(masker.write(`leak: ${SECRET.slice(0, 6)}`).toString()).toBe("leak: ");
    expect(masker.heldBytes).toBe(Buffer.byteLength(SECRET.slice(0, 6)));
    expect(Buffer.concat([masker.write(`${SECRET.slice(6)}\n`), masker.end()]).toString()).toBe("***\n");
  });

  it("P21: multi-byte UTF-8 and ANSI colour codes around and between secrets are kept", () => {
    const secret = "pässwörd-ünïcødé";
    const text = `\x1b[1;31mERROR\x1b[0m ✓ 日本語 ${secret}\x1b[0m 🚀 ${encodedForms(secret).hex} ✗\n`;
    const expected = `\x1b[1;31mERROR\x1b[0m ✓ 日本語 ***\x1b[0m 🚀 *** ✗\n`;
    const bytes = Buffer.from(text);
    const masker = createMasker([secret]);
    expect(streamed(masker, Array.from(bytes, (_, i) => bytes.subarray(i, i + 1)))).toBe(expected);
    expect(masker.mask(text).toString()).toBe(expected);
  });

  it("P21: random logs in random chunks: streaming equals one-shot masking and no form survives", () => {
    const random = prng(0x5eed);
    const pick = <T>(items: readonly T[]) => items[random(items.length)]!;
    const alphabet = [..."abcXYZ019+/=-_ .%€ü日\n", "\x1b[31m", "\x1b[0m"];
    const word = (min: number, max: number) => Array.from({ length: min + random(max - min + 1) }, () => pick(alphabet)).join("");
    let formsSeen = 0;
    for (let round = 0; round < 150; round++) {
      const secrets = Array.from({ length: 1 + random(3) }, () => word(4, 12)).filter((s) => [...s].length >= 4);
      if (secrets.length === 0) continue;
      if (random(2) === 0) secrets.push(secrets[0]! + word(1, 4)); // one secret a prefix of another
      const forms = secrets.flatMap((s) => Object.values(encodedForms(s)));
      const pieces = Array.from({ length: 5 + random(20) }, () => {
        const form = pick(forms);
        return pick([() => word(0, 10), () => form, () => form.slice(0, 1 + random(form.length - 1)), () => form.slice(random(form.length - 1))])();
      });
      pieces.push(pick(forms));
      const input = Buffer.from(pieces.join(""));
      const cuts = Array.from({ length: random(8) }, () => random(input.length + 1)).sort((x, y) => x - y);

      const oneShot = createMasker(secrets).mask(input).toString();
      expect(streamed(createMasker(secrets), splitAt(input, ...cuts)), `round ${round}`).toBe(oneShot);
      for (const form of forms) {
        if (input.toString().includes(form)) formsSeen++;
        expect(oneShot.includes(form), `round ${round}: ${JSON.stringify(form)} survived`).toBe(false);
      }
    }
    // Control: the inputs did carry secrets in their encoded forms.
    expect(formsSeen).toBeGreaterThan(150);
  });

  it("P21: as a Node Transform stream", async () => {
    const line = Buffer.from(`token=${FORMS["base64"]}; url=${FORMS["encodeURIComponent"]}\n`);
    const chunks = await Readable.from(splitAt(line, 9, 20, 33)).pipe(new MaskingTransform([SECRET])).toArray();
    expect(Buffer.concat(chunks).toString()).toBe("token=***; url=***\n");
  });

  it("P21: refuses secret values shorter than 4 characters and says why", () => {
    for (const short of ["", "abc", "€€€"]) {
      expect(() => validateSecretValue(short)).toThrow(SecretValueError);
      expect(() => createMasker([short])).toThrow(/at least 4 characters/);
      const result = maskableSecretValueSchema.safeParse(short);
      expect(result.success).toBe(false);
      expect(result.error?.issues[0]?.message).toMatch(/at least 4 characters.*mask ordinary text.*reveal/);
    }
    for (const ok of ["abcd", "😀😀😀😀"]) {
      expect(() => validateSecretValue(ok)).not.toThrow();
      expect(maskableSecretValueSchema.safeParse(ok).success).toBe(true);
    }
  });
});
