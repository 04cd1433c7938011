/**
 * Rule unit tests, in the spirit of `promtool test rules`: a YAML file names
 * rule files (relative to itself), gives input log entries with their
 * timestamps, and says which incidents must open — for which key, acting or
 * not, with which first rung, and what the guards suppressed. The entries run
 * through replay, so a test checks exactly what the live operator would do.
 *
 * ```yaml
 * rules: [../factory-lockout.yaml]
 * tests:
 *   - name: HARD LIMIT and the factory error for one user make one incident
 *     input:
 *       - { time: "2026-11-26T12:00:00Z", severity: ERROR, event: factory.hard_limit, userId: u1, pod: p, message: "HARD LIMIT: …" }
 *       - '{"time":"2026-11-26T12:00:00.1Z","severity":"ERROR","event":"factory.error","userId":"u1","pod":"p","message":"…"}'
 *     expect:
 *       incidents:
 *         - { rule: factory-lockout, key: { userId: u1, pod: p }, action: act, firstRung: probe }
 * ```
 */
import { readFile, readdir, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { LineCounter, parseDocument } from "yaml";
import { z } from "zod";
import { normalize, type LogEvent } from "../sources/event.js";
import { replay, type ReplayIncident } from "../replay.js";
import { loadRules, RuleError } from "./load.js";

const ExpectedIncident = z
  .object({
    rule: z.string(),
    key: z.record(z.string(), z.union([z.string(), z.number()]).transform(String)).optional(),
    action: z.enum(["act", "dry_run", "suppressed"]).default("act"),
    firstRung: z.string().optional(),
    /** When the incident opens (event time), ISO 8601. */
    at: z.string().optional(),
    suppressed: z.record(z.string(), z.number().int()).optional(),
  })
  .strict();

const TestCase = z
  .object({
    name: z.string().min(1),
    input: z.array(z.union([z.string(), z.record(z.string(), z.unknown())])).min(1),
    expect: z.object({ incidents: z.array(ExpectedIncident) }).strict(),
  })
  .strict();

export const RuleTestFile = z
  .object({
    rules: z.array(z.string().min(1)).min(1),
    tests: z.array(TestCase).min(1),
  })
  .strict();

export interface CaseResult {
  file: string;
  name: string;
  passed: boolean;
  /** Why it failed, one line each. */
  problems: string[];
}

export interface RuleTestRun {
  results: CaseResult[];
  /** Problems with the test files or the rules they name (each is also a failure). */
  errors: RuleError[];
  passed: number;
  failed: number;
}

/** Test files in `paths` (files, or folders whose `*.yaml` / `*.yml` files are tests). */
async function testFiles(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const p of paths) {
    const s = await stat(p).catch(() => null);
    if (s?.isDirectory() === true) {
      for (const name of (await readdir(p)).sort()) if (/\.ya?ml$/.test(name)) files.push(join(p, name));
    } else {
      files.push(p);
    }
  }
  return files;
}

/** Runs every test in `paths`. */
export async function runRuleTests(paths: readonly string[]): Promise<RuleTestRun> {
  const results: CaseResult[] = [];
  const errors: RuleError[] = [];
  for (const file of await testFiles(paths)) {
    const parsed = await readTestFile(file, errors);
    if (parsed === null) continue;
    const loaded = await loadRules(parsed.rules.map((r) => resolve(dirname(file), r)));
    if (loaded.errors.length > 0) {
      errors.push(...loaded.errors);
      continue;
    }
    const rules = loaded.rules.map((r) => r.compiled);
    for (const test of parsed.tests) {
      const problems: string[] = [];
      const events: LogEvent[] = [];
      test.input.forEach((entry, i) => {
        let value: unknown = entry;
        if (typeof entry === "string") {
          try {
            value = JSON.parse(entry);
          } catch {
            problems.push(`input[${i}] is not JSON`);
            return;
          }
        }
        const event = normalize(value);
        if (event === null) problems.push(`input[${i}] is not a log entry with a time`);
        else events.push(event);
      });
      if (problems.length === 0) {
        const report = await replay(rules, events);
        problems.push(...compare(test.expect.incidents, report.incidents));
      }
      results.push({ file, name: test.name, passed: problems.length === 0, problems });
    }
  }
  const failed = results.filter((r) => !r.passed).length + errors.length;
  return { results, errors, passed: results.filter((r) => r.passed).length, failed };
}

async function readTestFile(file: string, errors: RuleError[]): Promise<z.infer<typeof RuleTestFile> | null> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    errors.push(new RuleError(file, 1, 1, `cannot read: ${err instanceof Error ? err.message : String(err)}`));
    return null;
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter });
  const at = (offset: number | undefined): { line: number; col: number } => {
    const pos = lineCounter.linePos(offset ?? 0);
    return { line: pos.line, col: pos.col };
  };
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const { line, col } = at(e.pos[0]);
      errors.push(new RuleError(file, line, col, e.message.split("\n")[0]!));
    }
    return null;
  }
  const result = RuleTestFile.safeParse(doc.toJS());
  if (result.success) return result.data;
  for (const issue of result.error.issues) {
    // Point at the deepest node of the path that exists.
    let path = issue.path as (string | number)[];
    let node = doc.getIn(path, true) as { range?: [number, number, number] } | undefined;
    while (node?.range === undefined && path.length > 0) {
      path = path.slice(0, -1);
      node = doc.getIn(path, true) as { range?: [number, number, number] } | undefined;
    }
    const { line, col } = at(node?.range?.[0]);
    errors.push(new RuleError(file, line, col, `${issue.path.join(".") || "(file)"}: ${issue.message}`));
  }
  return null;
}

/** Expected vs replayed incidents, in order. */
function compare(expected: readonly z.infer<typeof ExpectedIncident>[], actual: readonly ReplayIncident[]): string[] {
  const problems: string[] = [];
  if (expected.length !== actual.length) {
    problems.push(`expected ${expected.length} incident(s), got ${actual.length}: ${actual.map(describe).join("; ") || "none"}`);
  }
  expected.forEach((want, i) => {
    const got = actual[i];
    if (got === undefined) return;
    const where = `incident ${i + 1}`;
    if (got.rule !== want.rule) problems.push(`${where}: rule ${got.rule}, expected ${want.rule}`);
    if (got.action !== want.action) problems.push(`${where}: action ${got.action}, expected ${want.action}`);
    if (want.key !== undefined && JSON.stringify(got.key) !== JSON.stringify(sortedLike(want.key, got.key))) {
      problems.push(`${where}: key ${JSON.stringify(got.key)}, expected ${JSON.stringify(want.key)}`);
    }
    if (want.firstRung !== undefined && got.rungs[0] !== want.firstRung) {
      problems.push(`${where}: first rung ${got.rungs[0] ?? "none"}, expected ${want.firstRung}`);
    }
    if (want.at !== undefined && Date.parse(got.at) !== Date.parse(want.at)) problems.push(`${where}: opened at ${got.at}, expected ${want.at}`);
    if (want.suppressed !== undefined && JSON.stringify(got.suppressed) !== JSON.stringify(sortedLike(want.suppressed, got.suppressed))) {
      problems.push(`${where}: suppressed ${JSON.stringify(got.suppressed)}, expected ${JSON.stringify(want.suppressed)}`);
    }
  });
  return problems;
}

/** `want` with its keys in `got`'s order (extra keys last), so key order in the test file does not matter. */
function sortedLike<T>(want: Record<string, T>, got: Record<string, unknown>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const k of Object.keys(got)) if (k in want) out[k] = want[k]!;
  for (const k of Object.keys(want)) if (!(k in out)) out[k] = want[k]!;
  return out;
}

function describe(i: ReplayIncident): string {
  return `${i.rule} ${Object.entries(i.key)
    .map(([k, v]) => `${k}=${v}`)
    .join(",")} ${i.action}`;
}
