import { defineConfig } from "vitest/config";

// The JSON report is what .ci/run reads to print its "N passed, N failed" line.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ["default", ["json", { outputFile: "reports/vitest.json" }]],
    pool: "forks",
    // No GCE metadata server here: without this the Google auth library probes for one and warns.
    env: { METADATA_SERVER_DETECTION: "none" },
  },
});
