/**
 * The demo (`npm start`): every scenario shows what it claims, and the
 * command's exit code and JSON say so.
 */
import { describe, expect, it } from "vitest";
import { runDemo, SCENARIOS } from "../../src/demo/demo.js";
import { runCli } from "../support/cli.js";

describe("the demo", () => {
  it("reproduces the outage and shows each fix", async () => {
    const printed: string[] = [];
    const results = await runDemo({ lockoutWaitMs: 300, print: (l) => printed.push(l) });
    expect(results.map((r) => r.name)).toEqual([...SCENARIOS]);
    for (const r of results) expect({ name: r.name, passed: r.passed, checks: r.checks }).toMatchObject({ passed: true });
    expect(results.find((r) => r.name === "outage")?.outcome).toBe("locked out (503)");
    expect(printed.join("\n")).toContain("HARD LIMIT: User 105945141827451681156 still over limit after cleanup (20/20)");
  });

  it("`reclaim demo --scenario ghosts --json` prints a machine-readable result and exits 0", async () => {
    const { code, stdout } = await runCli(["demo", "--scenario", "ghosts", "--json"]);
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as { passed: boolean; scenarios: { name: string; passed: boolean }[] };
    expect(result.passed).toBe(true);
    expect(result.scenarios.map((s) => [s.name, s.passed])).toEqual([["ghosts", true]]);
  });

  it("rejects an unknown scenario", async () => {
    const { code, stderr } = await runCli(["demo", "--scenario", "nope"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--scenario/);
  });
});
