import { existsSync, mkdtempSync, symlinkSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";

/**
 * The small Debian image (mmdebstrap --variant=minbase) the tests run steps in, as an OCI layout
 * tagged `bookworm`. It is built once, outside the tests, by scripts/build-test-image (which
 * `scripts/install-system-packages --test` runs), because building it needs Debian's mirror.
 */
export function testImageLayout(): string {
  const dir = process.env.SLIPWAY_TEST_IMAGE || path.join(process.env.XDG_CACHE_HOME || path.join(homedir(), ".cache"), "slipway", "test-image", "layout");
  if (!existsSync(path.join(dir, "index.json"))) throw new Error(`the test image is missing at ${dir}: build it with scripts/build-test-image (scripts/install-system-packages --test does it)`);
  return dir;
}

/** A folder of local layouts in which the test image is `debian:bookworm`. */
export function testLayoutsDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "slipway-layouts-"));
  symlinkSync(testImageLayout(), path.join(dir, "debian"));
  return dir;
}
