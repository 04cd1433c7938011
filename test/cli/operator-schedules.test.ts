/**
 * The operator's schedule flags (ADR 36): a cron expression that does not
 * parse or never runs, and a time zone that does not exist, stop the real
 * `reclaim operator` at start with exit 2 and one line naming the flag, the
 * job, the expression and why.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "reclaim-operator-schedules-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, "factory.log"), "");

/** A file-mode operator with `extra` flags (every case here stops it at start). */
function operator(extra: string[]): ReturnType<typeof runCli> {
  return runCli(
    [
      ...["operator", "--rules", "rules", "--source", `file:${join(dir, "factory.log")}`],
      ...["--incidents", join(dir, "incidents"), "--state", join(dir, "state"), "--control", "http://127.0.0.1:9", "--metrics-port", "0"],
      ...extra,
    ],
    { RECLAIM_CONTROL_TOKEN: "tok-0123456789abcdef-0123456789" },
  );
}

describe("reclaim operator: the schedule flags", () => {
  it.each([
    ["--digest-schedule", "0 25 * * *", 'reclaim operator: --digest-schedule: digest: invalid cron expression "0 25 * * *" (Invalid value for hour: 25)'],
    ["--sweep-schedule", "every 5 min", 'reclaim operator: --sweep-schedule: sweep: invalid cron expression "every 5 min" (expected 5 or 6 fields but got 3)'],
    ["--retention-schedule", "0 0 31 2 *", 'reclaim operator: --retention-schedule: retention: invalid cron expression "0 0 31 2 *" (it never runs: an impossible day of month for the given month, or days of month and of week that never meet)'],
  ])("%s %j: exit 2, one line", async (flag, value, line) => {
    const result = await operator([flag, value]);
    expect(result.stderr.split("\n").filter((l) => l !== "")).toEqual([line]);
    expect(result.code).toBe(2);
  });

  it("an unknown --jobs-timezone stops the start, naming it", async () => {
    const result = await operator(["--jobs-timezone", "Mars/Olympus_Mons"]);
    expect(result.stderr).toContain('reclaim operator: cannot start: invalid time zone "Mars/Olympus_Mons"');
    expect(result.code).toBe(2);
  });
});
