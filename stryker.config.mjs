// Mutation testing of the safety-critical modules (issue 20; TESTING.md says how to run it and what each file scored).
// One run per mutation group (mutation/groups.json): `npm run mutate -- GROUP…` (mutation/run.mjs) sets
// RECLAIM_MUTATE_GROUP and runs this; `npm run mutate:check` compares each file's score with mutation/scores.json.
import { currentGroup } from "./mutation/groups.mjs";

const group = currentGroup();

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.mutate.config.ts", related: false },
  coverageAnalysis: "perTest",
  mutate: group.mutate,
  // Only what the tests need: no dist/, reports or local state in the sandbox. Anchored with a leading slash: a bare
  // "incidents" also drops src/operator/incidents/ and every mutant then survives.
  ignorePatterns: ["/dist", "/reports", "/coverage", "/.reclaim", "/incidents", "/bench", "/docs", "/manifests", "/examples", "/.stryker-tmp", "/mutation/*.incremental.json"],
  // Incremental (CI reuses the committed results of unchanged code and tests); RECLAIM_MUTATE_FULL=1 runs every mutant
  // (`force`) and still writes the state: with `incremental: false` Stryker would write none.
  incremental: true,
  force: process.env.RECLAIM_MUTATE_FULL === "1",
  incrementalFile: `mutation/${group.name}.incremental.json`,
  reporters: ["clear-text", "json", "progress"],
  clearTextReporter: { reportMutants: false, reportTests: false },
  jsonReporter: { fileName: `reports/mutation/${group.name}.json` },
  concurrency: Number(process.env.RECLAIM_MUTATE_CONCURRENCY ?? 2),
  // Over the mutant's covering tests' own time (x timeoutFactor): a mutant that hangs a test costs this much, not the default 10 s.
  timeoutMS: 3000,
  timeoutFactor: 2,
  thresholds: { high: 90, low: 80, break: null },
  cleanTempDir: "always",
  tempDirName: `.stryker-tmp/${group.name}`,
};
