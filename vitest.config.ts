import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    // Vitest's default is one worker fewer than the CPUs: on a 2-CPU machine, one. Most tests wait
    // on sandboxes, sshd, browsers and git rather than compute, so two share two CPUs well.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    reporters: ["default", "./test/helpers/summary-reporter.ts"],
  },
});
