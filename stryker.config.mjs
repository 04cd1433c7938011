// Mutation testing of the safety-critical modules (issue 20; TESTING.md says how to run it and what each file scored).
// `npm run mutate` runs it. Not yet: the per-file score check and the CI step (TESTING.md lists what is left).
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.mutate.config.ts", related: false },
  coverageAnalysis: "perTest",
  // The modules that decide when the operator or the factory acts on a user.
  mutate: [
    "src/operator/decide/guards.ts",
    "src/operator/verify/verify.ts",
    "src/operator/act/ladder.ts",
    "src/operator/detect/detector.ts",
    "src/operator/term.ts",
    "src/factory/rungs/runner.ts",
    "src/factory/rungs/probe.ts",
    "src/factory/evict.ts",
    "src/factory/admission.ts",
    "src/factory/registry.ts",
  ],
  // Only what the tests need: no dist/, reports or local state in the sandbox. Anchored with a leading slash: a bare
  // "incidents" also drops src/operator/incidents/ and every mutant then survives.
  ignorePatterns: ["/dist", "/reports", "/coverage", "/.reclaim", "/incidents", "/bench", "/docs", "/manifests", "/examples", "/.stryker-tmp", "/mutation"],
  // Incremental by default (CI reuses the committed results of unchanged code and tests); RECLAIM_MUTATE_FULL=1 runs every mutant.
  incremental: process.env.RECLAIM_MUTATE_FULL !== "1",
  incrementalFile: "mutation/incremental.json",
  reporters: ["clear-text", "json", "progress"],
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  concurrency: 2,
  // Over the mutant's covering tests' own time (x timeoutFactor): a mutant that hangs a test costs this much, not the default 10 s.
  timeoutMS: 3000,
  timeoutFactor: 2,
  thresholds: { high: 90, low: 80, break: null },
  cleanTempDir: "always",
  tempDirName: ".stryker-tmp",
};
