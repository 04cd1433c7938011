/**
 * mutation/check.mjs, the per-file mutation score gate CI runs after the
 * incremental Stryker run (issue 20): run as CI runs it, on report files
 * written here in Stryker's JSON report format.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const SCRIPT = join(import.meta.dirname, "../../mutation/check.mjs");

type Status = "Killed" | "Timeout" | "Survived" | "NoCoverage" | "Ignored" | "CompileError" | "RuntimeError";

function report(files: Record<string, Status[]>): string {
  const out: Record<string, unknown> = {};
  for (const [file, statuses] of Object.entries(files)) {
    out[file] = { language: "typescript", source: "", mutants: statuses.map((status, i) => ({ id: `${file}#${i}`, mutatorName: "BooleanLiteral", status, location: { start: { line: 1, column: 1 }, end: { line: 1, column: 2 } } })) };
  }
  return JSON.stringify({ schemaVersion: "2", thresholds: { high: 90, low: 80 }, files: out });
}

async function run(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, ...args], { cwd }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : -1, stdout, stderr });
    });
  });
}

async function setUp(files: Record<string, Status[]>, scores?: Record<string, number> | string): Promise<{ dir: string; args: string[] }> {
  const dir = await mkdtemp(join(tmpdir(), "reclaim-mutation-"));
  await writeFile(join(dir, "mutation.json"), report(files));
  if (scores !== undefined) await writeFile(join(dir, "scores.json"), typeof scores === "string" ? scores : JSON.stringify({ files: scores }));
  return { dir, args: ["--report", join(dir, "mutation.json"), "--scores", join(dir, "scores.json")] };
}

describe("mutation/check.mjs", () => {
  it("--write records each file's score: killed and timed out over killed, timed out, survived and uncovered; ignored and broken mutants count for neither", async () => {
    const { dir, args } = await setUp({
      "src/a.ts": ["Killed", "Timeout", "Survived", "NoCoverage", "Ignored", "CompileError", "RuntimeError"],
      "src/b.ts": ["Killed", "Killed", "Killed"],
      "src/c.ts": ["Survived", "Killed", "Killed"],
      "src/none.ts": ["Ignored"],
    });
    const written = await run([...args, "--write"]);
    expect(written.code).toBe(0);
    const scores = JSON.parse(await readFile(join(dir, "scores.json"), "utf8")) as { files: Record<string, number> };
    // 2/4 = 50 %; 3/3; 2/3 floored to the hundredth (66.66, not 66.67: a score is never rounded up past its record).
    expect(scores.files).toEqual({ "src/a.ts": 50, "src/b.ts": 100, "src/c.ts": 66.66, "src/none.ts": 100 });
  });

  it("passes when every recorded file scores at least its figure, and names each file's score", async () => {
    const { args } = await setUp({ "src/a.ts": ["Killed", "Killed", "Survived"], "src/b.ts": ["Killed"] }, { "src/a.ts": 66.66, "src/b.ts": 90 });
    const { code, stdout } = await run(args);
    expect(code).toBe(0);
    expect(stdout).toContain(" 66.66 %  src/a.ts  recorded 66.66 %");
    expect(stdout).toContain("2 files at or above their recorded scores");
  });

  it("fails, naming the file and its survivors, when a file's score drops below its record", async () => {
    const { args } = await setUp({ "src/a.ts": ["Killed", "Survived", "Survived", "NoCoverage"], "src/b.ts": ["Killed"] }, { "src/a.ts": 50, "src/b.ts": 100 });
    const { code, stderr, stdout } = await run(args);
    expect(code).toBe(1);
    expect(stderr).toContain("src/a.ts: 25.00 %, below its recorded 50.00 % (2 survived, 1 without coverage)");
    expect(stderr).not.toContain("src/b.ts");
    expect(stdout).toContain("DROPPED from 50.00 %");
  });

  it("fails when a recorded file is missing from the report (a module dropped from the mutate list must be dropped from the record on purpose)", async () => {
    const { args } = await setUp({ "src/b.ts": ["Killed"] }, { "src/a.ts": 50, "src/b.ts": 100 });
    const { code, stderr } = await run(args);
    expect(code).toBe(1);
    expect(stderr).toContain("src/a.ts: recorded at 50.00 %, missing from the report");
  });

  it("reads one report per group: a drop in any fails; --only-reported leaves out files of groups not run", async () => {
    const { dir, args } = await setUp({ "src/a.ts": ["Killed"] }, { "src/a.ts": 100, "src/b.ts": 100, "src/c.ts": 50 });
    await writeFile(join(dir, "other.json"), report({ "src/b.ts": ["Killed", "Survived"] }));
    const both = await run([...args, "--report", join(dir, "other.json")]);
    expect(both.code).toBe(1);
    expect(both.stderr).toContain("src/b.ts: 50.00 %, below its recorded 100.00 %");
    expect(both.stderr).toContain("src/c.ts: recorded at 50.00 %, missing from the report");
    const one = await run([...args, "--only-reported"]);
    expect(one.code).toBe(0);
    expect(one.stdout).toContain("1 files at or above their recorded scores");
  });

  it("--write records the reported files and keeps the record of the others", async () => {
    const { dir, args } = await setUp({ "src/b.ts": ["Killed", "Survived"] }, { "src/a.ts": 77.5, "src/b.ts": 100 });
    expect((await run([...args, "--write"])).code).toBe(0);
    const scores = JSON.parse(await readFile(join(dir, "scores.json"), "utf8")) as { files: Record<string, number> };
    expect(scores.files).toEqual({ "src/a.ts": 77.5, "src/b.ts": 50 });
  });

  it("reads every report in reports/mutation when none is named, and says so when there is none", async () => {
    const dir = await mkdtemp(join(tmpdir(), "reclaim-mutation-cwd-"));
    const empty = await run(["--scores", join(dir, "scores.json")], dir);
    expect(empty.code).toBe(2);
    expect(empty.stderr.trim()).toBe("mutation check: no report in reports/mutation: run npm run mutate first");
    await mkdir(join(dir, "reports/mutation"), { recursive: true });
    await writeFile(join(dir, "reports/mutation/g1.json"), report({ "src/a.ts": ["Killed"] }));
    await writeFile(join(dir, "reports/mutation/g2.json"), report({ "src/b.ts": ["Survived"] }));
    await writeFile(join(dir, "scores.json"), JSON.stringify({ files: { "src/a.ts": 100, "src/b.ts": 0 } }));
    const both = await run(["--scores", join(dir, "scores.json")], dir);
    expect(both.code).toBe(0);
    expect(both.stdout).toContain("2 files at or above their recorded scores");
  });

  it.each([
    ["a missing report", (args: string[]): string[] => ["--report", "/nonexistent/mutation.json", ...args.slice(2)], "cannot read the report /nonexistent/mutation.json: ENOENT"],
    ["a recorded score that is not a number", (args: string[]): string[] => args, "the score of src/a.ts is not a number"],
    ["an unknown option", (args: string[]): string[] => [...args, "--bogus"], "unknown option --bogus"],
    ["an option without its value", (): string[] => ["--report"], "--report needs a value"],
  ])("exits 2 with one clear line on %s", async (_name, argsOf, message) => {
    const { args } = await setUp({ "src/a.ts": ["Killed"] }, '{"files":{"src/a.ts":"high"}}');
    const { code, stderr } = await run(argsOf(args));
    expect(code).toBe(2);
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]!.startsWith("mutation check: ") && lines[0]!.endsWith(message)).toBe(true);
  });

  it("exits 2 on a report that is not a Stryker JSON report", async () => {
    const { dir, args } = await setUp({}, { "src/a.ts": 50 });
    await writeFile(join(dir, "mutation.json"), '{"schemaVersion":"2"}');
    const { code, stderr } = await run(args);
    expect(code).toBe(2);
    expect(stderr).toContain('has no "files": not a Stryker JSON report');
  });
});
