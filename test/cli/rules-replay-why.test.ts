/**
 * `reclaim rules replay` explains a result of 0: where each rule's entries
 * went. The explanation comes before the totals line, which stays the last
 * line (scripts read it); `--json` carries the same counts as `diagnosis`.
 * The command runs in this process (its sources, not dist/).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { rulesReplayCommand } from "../../src/cli/rules-replay.js";

const RULES = fileURLToPath(new URL("../../rules", import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-replay-why-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs `rules replay ARGS` in this process; what it wrote to stdout, and the exit code it set. */
async function replay(args: string[]): Promise<{ stdout: string; exitCode: number | undefined }> {
  let stdout = "";
  const before = process.exitCode;
  process.exitCode = undefined;
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  try {
    await rulesReplayCommand().parseAsync(args, { from: "user" });
  } finally {
    spy.mockRestore();
  }
  const exitCode = process.exitCode as number | undefined;
  process.exitCode = before;
  return { stdout, exitCode };
}

const line = (fields: Record<string, unknown>): string =>
  JSON.stringify({ severity: "ERROR", time: "2026-11-26T12:00:00Z", pod: "p0", event: "factory.hard_limit", userId: "u1", managers: 20, limit: 20, message: "HARD LIMIT", ...fields });

describe("rules replay: a result of 0 explained", () => {
  it("says, per rule, at which step its entries fell; the totals line stays last and the exit code 0", async () => {
    const logs = join(dir, "zero.log");
    await writeFile(
      logs,
      [
        line({ severity: "WARNING" }), // below minSeverity ERROR
        line({ event: "factory.error", userId: undefined, message: "upgrade failed" }), // where userId not met
        line({ pod: undefined, time: "2026-11-26T12:00:01Z" }), // no pod: a key field
        JSON.stringify({ severity: "INFO", time: "2026-11-26T12:00:02Z", event: "factory.connection_opened", userId: "u1" }), // not a candidate line
        "",
      ].join("\n"),
    );
    const { stdout, exitCode } = await replay(["--rules", RULES, "--logs", logs]);
    expect(exitCode).toBeUndefined();
    const lines = stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("Replayed 4 line(s) (1 matched, 0 malformed skipped) against 2 rule(s): factory-lockout, factory-users-at-limit");
    expect(lines.slice(1, -1)).toEqual([
      "Shapes: 4 json (JSON log lines such as the factory writes)",
      "Why no incident opened:",
      "  3 entries by event: factory.hard_limit 2, factory.error 1",
      '  (only lines naming one of the rules\' events are read as entries: "factory.hard_limit", "factory.error")',
      "  factory-lockout:",
      "    3 of 3 entries had its events (factory.hard_limit 2, factory.error 1)",
      "    of those: 1 below minSeverity ERROR, 1 where not met (userId 1); 1 matched",
      "    of the matched: 1 without a key field (pod 1), 0 older than maxAge 15m, 0 counted without reaching the threshold (1 within 1m)",
      "  factory-users-at-limit: a metric rule; replay reads logs only, so it never fires here",
    ]);
    expect(lines.at(-1)).toBe("0 incident(s) would have opened (0 acting); dropped entries: 0 duplicate, 1 without a user id, 0 stale");
  });

  it("says when no line names the rules' events at all", async () => {
    const logs = join(dir, "none.log");
    await writeFile(logs, `${JSON.stringify({ severity: "INFO", time: "2026-11-26T12:00:00Z", event: "factory.connection_opened", userId: "u1" })}\n`);
    const { stdout } = await replay(["--rules", RULES, "--logs", logs]);
    expect(stdout).toContain(
      'Why no incident opened:\n  no entry to look at: no line names one of the rules\' events ("factory.hard_limit", "factory.error"); only such lines are read as entries\n',
    );
    expect(stdout).toContain("  factory-lockout:\n    0 of 0 entries had its events (factory.hard_limit 0, factory.error 0)\n");
  });

  it("prints no explanation when an incident opened", async () => {
    const logs = join(dir, "one.log");
    await writeFile(logs, `${line({})}\n`);
    const { stdout } = await replay(["--rules", RULES, "--logs", logs]);
    expect(stdout).not.toContain("Why no incident opened");
    expect(stdout.trimEnd().split("\n").at(-1)).toMatch(/^1 incident\(s\) would have opened \(1 acting\)/);
  });

  it("--json carries the counts as diagnosis, beside the report it had", async () => {
    const logs = join(dir, "json.log");
    await writeFile(logs, `${line({ severity: "WARNING" })}\n`);
    const { stdout } = await replay(["--rules", RULES, "--logs", logs, "--json"]);
    const report = JSON.parse(stdout) as Record<string, unknown> & { diagnosis: { events: Record<string, number>; rules: { rule: string; belowSeverity: number }[] } };
    expect(Object.keys(report)).toEqual(["rules", "entries", "matched", "dropped", "incidents", "diagnosis", "lines"]);
    expect(report.diagnosis.events).toEqual({ "factory.hard_limit": 1, "factory.error": 0 });
    expect(report.diagnosis.rules.map((r) => [r.rule, r.belowSeverity])).toEqual([
      ["factory-lockout", 1],
      ["factory-users-at-limit", 0],
    ]);
  });
});
