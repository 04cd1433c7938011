import { defineConfig } from "vitest/config";
import base from "./vitest.config.js";

// The tests Stryker runs against the mutated modules (stryker.config.mjs): those that load them in this process.
// Tests that run bin/reclaim from dist/ never see a mutant, and the model-based lifecycle test (two minutes a run)
// is left to `npm test`; it would be run once for every mutant it covers.
export const MUTATION_TESTS = [
  "test/operator/decide/**/*.test.ts",
  "test/operator/verify/**/*.test.ts",
  "test/operator/act/**/*.test.ts",
  "test/operator/detect/detector.test.ts",
  "test/operator/incidents/rollup.test.ts",
  "test/operator/store-hold.test.ts",
  "test/operator/text-backend-confirm.test.ts",
  "test/operator/circuit.test.ts",
  "test/operator/fail-safe.test.ts",
  "test/operator/operator.test.ts",
  "test/operator/k8s/leader.test.ts",
  "test/mutation/**/*.test.ts",
  "test/factory/**/*.test.ts",
];

// Replaced, not merged: vitest's mergeConfig would add these to the base include list.
export default defineConfig({ ...base, test: { ...base.test, include: MUTATION_TESTS, reporters: ["default"] } });
