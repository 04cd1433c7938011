/**
 * `reclaim rules test` and `reclaim rules replay` as a user runs them.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";

const line = (t: string, userId: string, event = "factory.hard_limit", pod = "p0"): string =>
  JSON.stringify({ severity: "ERROR", time: t, pod, event, userId, managers: 20, limit: 20, message: `HARD LIMIT: User ${userId}` });

describe("reclaim rules test", () => {
  it("runs the shipped rule tests and ends with the totals line", async () => {
    const { code, stdout } = await runCli(["rules", "test", "rules/tests"]);
    expect(code).toBe(0);
    expect(stdout.trim().split("\n").at(-1)).toMatch(/^[1-9]\d* passed, 0 failed$/);
  });

  it("reports a failing expectation and exits 1", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-rt-"));
    await writeFile(
      join(dir, "t.yaml"),
      `rules: [${JSON.stringify(join(process.cwd(), "rules/factory-lockout.yaml"))}]
tests:
  - name: expects the wrong first rung
    input:
      - { time: "2026-11-26T12:00:00Z", severity: ERROR, event: factory.hard_limit, userId: u1, pod: p, message: x }
    expect:
      incidents:
        - { rule: factory-lockout, firstRung: force }
  - name: passes
    input:
      - { time: "2026-11-26T12:00:00Z", severity: INFO, event: factory.hard_limit, userId: u1, pod: p, message: x }
    expect: { incidents: [] }
`,
    );
    const { code, stdout } = await runCli(["rules", "test", dir]);
    expect(code).toBe(1);
    expect(stdout).toContain("✘");
    expect(stdout).toContain("first rung probe, expected force");
    expect(stdout.trim().split("\n").at(-1)).toBe("1 passed, 1 failed");
  });

  it("points at the line of a malformed test file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-rt-"));
    await writeFile(join(dir, "bad.yaml"), "rules: [x.yaml]\ntests:\n  - name: no input\n    expect: { incidents: [] }\n");
    const { code, stdout } = await runCli(["rules", "test", join(dir, "bad.yaml")]);
    expect(code).toBe(1);
    expect(stdout).toMatch(/bad\.yaml:3:5: tests\[0\]\.input: is required/);
  });

  it("names the line and column of a misspelt key, as rules validate does, and runs nothing", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-rt-"));
    const file = join(dir, "typo.yaml");
    await writeFile(
      file,
      `rules: [${JSON.stringify(join(process.cwd(), "rules/factory-lockout.yaml"))}]
tests:
  - name: a misspelt key
    input:
      - { time: "2026-11-26T12:00:00Z", severity: ERROR, event: factory.hard_limit, userId: u1, pod: p, message: x }
    expect:
      incidents:
        - { rule: factory-lockout, firstRnug: probe }
`,
    );
    const { code, stdout } = await runCli(["rules", "test", file]);
    expect(code).toBe(1);
    expect(stdout.trim().split("\n")).toEqual([
      `✘ ${file}:8:36: tests[0].expect.incidents[0].firstRnug: unknown field (allowed here: rule, key, action, firstRung, at, suppressed)`,
      "0 passed, 1 failed",
    ]);
  });
});

describe("reclaim rules replay", () => {
  it("reports the incidents a recorded log would have opened, the same every run", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-replay-"));
    const logs = join(dir, "factory.log");
    await writeFile(
      logs,
      [
        line("2026-11-26T12:00:00Z", "u1"),
        line("2026-11-26T12:00:00.001Z", "u1", "factory.error"),
        "not json at all",
        line("2026-11-26T12:03:00Z", "u1"),
        line("2026-11-26T12:04:00Z", "u2", "factory.hard_limit", "p1"),
        JSON.stringify({ severity: "INFO", time: "2026-11-26T12:04:30Z", event: "factory.connection_opened", userId: "u3" }),
        "",
      ].join("\n"),
    );
    const first = await runCli(["rules", "replay", "--rules", "rules", "--logs", logs]);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain("2026-11-26T12:00:00.000Z  factory-lockout  userId=u1,pod=p0  act  probe → force → degrade  (later suppressed: cooldown 2)");
    expect(first.stdout).toContain("2026-11-26T12:04:00.000Z  factory-lockout  userId=u2,pod=p1  act");
    expect(first.stdout).toContain("2 incident(s) would have opened (2 acting)");
    const again = await runCli(["rules", "replay", "--rules", "rules", "--logs", logs]);
    expect(again.stdout).toBe(first.stdout);

    const json = await runCli(["rules", "replay", "--rules", "rules", "--logs", logs, "--json"]);
    const report = JSON.parse(json.stdout) as { incidents: { key: { userId: string } }[]; lines: { read: number; malformed: number; shapes: Record<string, number> } };
    expect(report.incidents.map((i) => i.key.userId)).toEqual(["u1", "u2"]);
    expect(report.lines).toMatchObject({ read: 6, malformed: 0 });
    expect(Object.values(report.lines.shapes).reduce((a, b) => a + b, 0)).toBe(6);
  });

  it("explains a result of 0 before the totals line, which stays the last line", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-replay-"));
    const logs = join(dir, "factory.log");
    await writeFile(logs, `${JSON.stringify({ severity: "WARNING", time: "2026-11-26T12:00:00Z", pod: "p0", event: "factory.hard_limit", userId: "u1", message: "x" })}\n`);
    const { code, stdout } = await runCli(["rules", "replay", "--rules", "rules", "--logs", logs]);
    expect(code).toBe(0);
    expect(stdout).toContain("Why no incident opened:\n");
    expect(stdout).toContain("  factory-lockout:\n    1 of 1 entry had its events (factory.hard_limit 1, factory.error 0)\n    of those: 1 below minSeverity ERROR, 0 where not met; 0 matched\n");
    expect(stdout.trim().split("\n").at(-1)).toBe("0 incident(s) would have opened (0 acting); dropped entries: 0 duplicate, 0 without a user id, 0 stale");
  });

  it("refuses invalid rules with file:line:col and a missing log with a clear error", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-replay-"));
    await writeFile(join(dir, "bad.yaml"), "apiVersion: reclaim.dev/v1\nkind: RemediationRule\nmetadata: { name: x }\nspec: { ladder: [] }\n");
    const bad = await runCli(["rules", "replay", "--rules", join(dir, "bad.yaml"), "--logs", "/dev/null"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/bad\.yaml:4:\d+: /);
    const missing = await runCli(["rules", "replay", "--rules", "rules", "--logs", join(dir, "nope.log")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("cannot read");
  });
});
