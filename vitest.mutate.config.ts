import { readFileSync } from "node:fs";
import { defineConfig } from "vitest/config";
import base from "./vitest.config.js";

// The tests Stryker runs against one mutation group's modules (mutation/groups.json, stryker.config.mjs): the group
// named by RECLAIM_MUTATE_GROUP, which Stryker's test runner processes inherit.
const file = JSON.parse(readFileSync(new URL("./mutation/groups.json", import.meta.url), "utf8")) as { groups: Record<string, { tests: string[] }> };
const name = process.env.RECLAIM_MUTATE_GROUP ?? "";
const group = file.groups[name];
if (group === undefined) throw new Error(`RECLAIM_MUTATE_GROUP must name a mutation group (${Object.keys(file.groups).join(", ")}), got "${name}"`);

// Replaced, not merged: vitest's mergeConfig would add these to the base include list.
export default defineConfig({ ...base, test: { ...base.test, include: group.tests, reporters: ["default"] } });
