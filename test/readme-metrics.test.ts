/**
 * Every metric the factory and the operator define is in the README's
 * Metrics tables: a metric added (or renamed) without a line there fails
 * here. The names are read from the sources' `name: "reclaim_…"`
 * declarations, so the check cannot go stale by itself.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sources(path)));
    else if (entry.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

it("lists every metric the factory and the operator define", async () => {
  const names = new Set<string>();
  for (const file of await sources(join(ROOT, "src"))) {
    for (const m of (await readFile(file, "utf8")).matchAll(/name:\s*"(reclaim_(?:factory|operator)_[a-z0-9_]+)"/g)) names.add(m[1]!);
  }
  expect(names.size).toBeGreaterThan(40);
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const missing = [...names].filter((name) => !readme.includes(name)).sort();
  expect(missing).toEqual([]);
});
