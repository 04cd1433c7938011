/**
 * mutation/run.mjs, which runs Stryker per mutation group: what it refuses
 * before starting anything, and the groups file it reads (every group names
 * modules and test files that exist).
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["mutation/run.mjs", ...args], { cwd: ROOT, env: { ...process.env, ...env } }, (err, _stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : -1, stderr });
    });
  });
}

describe("mutation/run.mjs", () => {
  it.each([
    [["no-such-group"], {}, /^mutation: no mutation group "no-such-group" \(groups: guards, verify, detector/],
    [["--bogus"], {}, /^mutation: unknown option --bogus$/],
    [["guards"], { RECLAIM_MUTATE_BUDGET_S: "soon" }, /^mutation: RECLAIM_MUTATE_BUDGET_S must be a positive number of seconds, got soon$/],
  ])("refuses %j with exit 2 and one line, before running anything", async (args, env, message) => {
    const { code, stderr } = await run(args, env);
    expect(code).toBe(2);
    expect(stderr.trim()).toMatch(message);
  });

  it("every group mutates modules that exist, and each of its test patterns names tests that exist", () => {
    const { groups } = JSON.parse(readFileSync(join(ROOT, "mutation/groups.json"), "utf8")) as { groups: Record<string, { mutate: string[]; tests: string[] }> };
    const mutated = Object.values(groups).flatMap((g) => g.mutate);
    expect(new Set(mutated).size).toBe(mutated.length); // a module is in one group only: its score has one home
    for (const file of mutated) expect(existsSync(join(ROOT, file)), file).toBe(true);
    for (const [name, group] of Object.entries(groups)) {
      // Plain paths must exist; a glob must be under test/ (the group's own test/mutation/NAME* files may come later).
      for (const pattern of group.tests) {
        if (pattern.includes("*")) expect(pattern.startsWith("test/"), `${name}: ${pattern}`).toBe(true);
        else expect(existsSync(join(ROOT, pattern)), `${name}: ${pattern}`).toBe(true);
      }
    }
  });
});
