// The mutation groups (mutation/groups.json), read by stryker.config.mjs, vitest.mutate.config.ts and mutation/run.mjs.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** @returns {Record<string, { mutate: string[]; tests: string[] }>} */
export function groups() {
  return JSON.parse(readFileSync(join(here, "groups.json"), "utf8")).groups;
}

/** The group RECLAIM_MUTATE_GROUP names; throws, listing the groups, when it names none. */
export function currentGroup() {
  const name = process.env.RECLAIM_MUTATE_GROUP ?? "";
  const all = groups();
  const group = all[name];
  if (group === undefined) {
    throw new Error(`RECLAIM_MUTATE_GROUP must name a mutation group (${Object.keys(all).join(", ")}), got "${name}": run npm run mutate -- GROUP`);
  }
  return { name, ...group };
}
