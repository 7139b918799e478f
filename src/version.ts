import { existsSync, readFileSync } from "node:fs";

// src/ when run from source, dist/src/ when built: package.json is one or two levels up.
const file = [new URL("../package.json", import.meta.url), new URL("../../package.json", import.meta.url)].find((u) => existsSync(u))!;

export const version: string = (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
