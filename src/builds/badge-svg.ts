import type { Build } from "./builds.js";

/** What a badge says for a build's status, and in which colour (shields.io's palette, for familiarity). */
const looks: Record<string, [string, string]> = {
  success: ["passing", "#4c1"],
  failed: ["failing", "#e05d44"],
  error: ["error", "#e05d44"],
  running: ["running", "#007ec6"],
  queued: ["queued", "#007ec6"],
  "waiting-for-approval": ["waiting", "#dfb317"],
  canceled: ["canceled", "#9f9f9f"],
  skipped: ["skipped", "#9f9f9f"],
};

// Verdana 11px averages about 6.5 px a character; badges are sized from that, as shields.io does.
const widthOf = (text: string) => Math.round(text.length * 6.5 + 10);

/** A flat "build | passing" badge for the latest build (or "no builds"). Every word in it is Slipway's own. */
export function badgeSvg(build: Pick<Build, "status"> | undefined): string {
  const [message, colour] = build ? (looks[build.status] ?? ["unknown", "#9f9f9f"]) : ["no builds", "#9f9f9f"];
  const label = "build";
  const lw = widthOf(label);
  const mw = widthOf(message);
  const w = lw + mw;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="20" role="img" aria-label="${label}: ${message}">
<title>${label}: ${message}</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="${w}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="${lw}" height="20" fill="#555"/><rect x="${lw}" width="${mw}" height="20" fill="${colour}"/><rect width="${w}" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
<text x="${lw / 2}" y="14">${label}</text><text x="${lw + mw / 2}" y="14">${message}</text>
</g>
</svg>
`;
}
