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
import { stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { z } from "zod";
import { normalize, type LogEvent } from "../sources/event.js";
import { SuppressReason } from "../incidents/model.js";
import { replay, type ReplayIncident } from "../replay.js";
import { dotted, loadRules, loadYamlDocument, RuleError, yamlFiles, type Segment, type YamlDocument } from "./load.js";

/** The rungs a ladder may name (schema.ts, LadderRung). */
const RUNGS = ["conservative", "probe", "force", "degrade", "restartPod"] as const;

const ExpectedIncident = z
  .object({
    rule: z.string().min(1),
    key: z.record(z.string(), z.union([z.string(), z.number()]).transform(String)).optional(),
    action: z.enum(["act", "dry_run", "suppressed"]).default("act"),
    firstRung: z.enum(RUNGS).optional(),
    /** When the incident opens (event time), ISO 8601. */
    at: z
      .string()
      .refine((t) => !Number.isNaN(Date.parse(t)), "expected a time such as 2026-11-26T12:00:00Z")
      .optional(),
    /** Later triggers suppressed, by reason (model.ts, SuppressReason). */
    suppressed: z.partialRecord(SuppressReason, z.number().int().min(0)).optional(),
  })
  .strict();

const TestCase = z
  .object({
    name: z.string().min(1),
    input: z.array(z.union([z.string(), z.record(z.string(), z.unknown())])).min(1),
    expect: z.object({ incidents: z.array(ExpectedIncident) }).strict(),
  })
  .strict();

/** A rule test file: the rule files it tests (relative to itself) and its cases. */
export const RuleTestFile = z
  .object({
    rules: z.array(z.string().min(1)).min(1),
    tests: z.array(TestCase).min(1),
  })
  .strict();
export type RuleTestFile = z.infer<typeof RuleTestFile>;

/** How one case went. */
export interface CaseResult {
  file: string;
  name: string;
  passed: boolean;
  /** Why it failed, one line each. */
  problems: string[];
}

/** What `runRuleTests` found. */
export interface RuleTestRun {
  results: CaseResult[];
  /**
   * Problems with the test files or the rules they name, each at its
   * `file:line:col` like `rules validate`'s (each is also a failure; a case
   * with a problem in its own input is not run).
   */
  errors: RuleError[];
  passed: number;
  failed: number;
}

/**
 * Runs every test in `paths`: files, or folders whose `*.yaml` / `*.yml`
 * files are tests (as `loadRules` reads a folder). A test file is checked
 * before anything runs: unknown keys, wrong types, missing keys, rule files
 * that cannot be read, expectations naming a rule the file does not load,
 * and input entries that are not log entries are errors at their position.
 */
export async function runRuleTests(paths: readonly string[]): Promise<RuleTestRun> {
  const results: CaseResult[] = [];
  const { files, errors } = await yamlFiles(paths);
  for (const file of files) {
    const doc = await loadYamlDocument(file, RuleTestFile, "a rule test file", errors);
    if (doc === null) continue;
    const at = (path: readonly Segment[], message: string): RuleError => {
      const p = doc.positionOf(path);
      return new RuleError(file, p.line, p.col, `${dotted(path)}: ${message}`);
    };
    const ruleFiles = await readableRuleFiles(file, doc, at, errors);
    if (ruleFiles === null) continue;
    const loaded = await loadRules(ruleFiles);
    if (loaded.errors.length > 0) {
      errors.push(...loaded.errors);
      continue;
    }
    const rules = loaded.rules.map((r) => r.compiled);
    const names = rules.map((r) => r.name);
    const problems: RuleError[] = [];
    for (const [t, test] of doc.value.tests.entries()) {
      const before = problems.length;
      const events = inputEvents(test.input, (k, message) => problems.push(at(["tests", t, "input", k], message)));
      test.expect.incidents.forEach((want, i) => {
        if (!names.includes(want.rule)) {
          problems.push(at(["tests", t, "expect", "incidents", i, "rule"], `no rule ${JSON.stringify(want.rule)} in this file's rules (${names.join(", ")})`));
        }
      });
      if (problems.length > before) continue;
      const report = await replay(rules, events);
      const failures = compare(test.expect.incidents, report.incidents);
      results.push({ file, name: test.name, passed: failures.length === 0, problems: failures });
    }
    errors.push(...problems);
  }
  const failed = results.filter((r) => !r.passed).length + errors.length;
  return { results, errors, passed: results.filter((r) => r.passed).length, failed };
}

/** The rule files a test file names, resolved against its folder; null after reporting those that cannot be read, at their entry. */
async function readableRuleFiles(
  file: string,
  doc: YamlDocument<RuleTestFile>,
  at: (path: readonly Segment[], message: string) => RuleError,
  errors: RuleError[],
): Promise<string[] | null> {
  const resolved = doc.value.rules.map((r) => resolve(dirname(file), r));
  let ok = true;
  for (const [i, path] of resolved.entries()) {
    const problem = await stat(path).then(
      () => null,
      (err: unknown) => ((err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file or folder" : err instanceof Error ? err.message : String(err)),
    );
    if (problem !== null) {
      errors.push(at(["rules", i], `cannot read ${path}: ${problem}`));
      ok = false;
    }
  }
  return ok ? resolved : null;
}

/** A case's input as log entries; `problem(k, message)` for each entry that is not one. */
function inputEvents(input: readonly (string | Record<string, unknown>)[], problem: (k: number, message: string) => void): LogEvent[] {
  const events: LogEvent[] = [];
  input.forEach((entry, k) => {
    let value: unknown = entry;
    if (typeof entry === "string") {
      try {
        value = JSON.parse(entry);
      } catch (err) {
        problem(k, `is not JSON (${err instanceof Error ? err.message : String(err)}); give a JSON line or a mapping`);
        return;
      }
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      problem(k, "is not a log entry: give a JSON object (a factory line or a Cloud Logging LogEntry)");
      return;
    }
    const event = normalize(value);
    if (event === null) problem(k, "is not a log entry: it needs a time (time, or timestamp for a Cloud Logging entry) between the years 0000 and 9999");
    else events.push(event);
  });
  return events;
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
