/**
 * `rules test` files are checked as precisely as rule files: every problem is
 * `file:line:col: path: message` at the node it is about (an unknown key at
 * the key, a wrong type at the value, a missing key at the mapping that lacks
 * it), and nothing runs from a file with a problem.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runRuleTests } from "../../../src/operator/rules/rule-tests.js";

const LOCKOUT = fileURLToPath(new URL("../../../rules/factory-lockout.yaml", import.meta.url));
const SHIPPED_TESTS = fileURLToPath(new URL("../../../rules/tests", import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-rule-tests-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// A passing test file; each case below changes one thing. Line numbers are those of this text.
const FILE = `rules: [${JSON.stringify(LOCKOUT)}]
tests:
  - name: one lockout
    input:
      - { time: "2026-11-26T12:00:00Z", severity: ERROR, event: factory.hard_limit, userId: u1, pod: p, message: x }
    expect:
      incidents:
        - { rule: factory-lockout, key: { userId: u1, pod: p }, firstRung: probe }
`;

let n = 0;
/** Runs `text` as a test file; its errors with the folder cut off, and the totals. */
async function run(text: string): Promise<{ errors: string[]; passed: number; failed: number; ran: number }> {
  const file = join(dir, `t${++n}.yaml`);
  await writeFile(file, text);
  const result = await runRuleTests([file]);
  return { errors: result.errors.map((e) => e.format().replace(`${file}:`, "t.yaml:")), passed: result.passed, failed: result.failed, ran: result.results.length };
}

describe("rules test: a test file's problems, at their node", () => {
  it("passes as written", async () => {
    expect(await run(FILE)).toEqual({ errors: [], passed: 1, failed: 0, ran: 1 });
  });

  it.each<[string, string, string[]]>([
    [
      "a misspelt key: unknown at the key, and the key it meant missing at its mapping",
      FILE.replace("    expect:", "    expct:"),
      ["t.yaml:3:5: tests[0].expect: is required", "t.yaml:6:5: tests[0].expct: unknown field (allowed here: name, input, expect)"],
    ],
    ["a misspelt top-level key", FILE.replace("tests:", "test:"), ["t.yaml:1:1: tests: is required", "t.yaml:2:1: test: unknown field (allowed here: rules, tests)"]],
    [
      "a misspelt key of an expected incident",
      FILE.replace("firstRung: probe", "firstrung: probe"),
      ["t.yaml:8:65: tests[0].expect.incidents[0].firstrung: unknown field (allowed here: rule, key, action, firstRung, at, suppressed)"],
    ],
    ["a wrong type, at the value", FILE.replace("  - name: one lockout", "  - name: [one, lockout]"), ["t.yaml:3:5: tests[0].name: expected a string, got a list"]],
    ["an input entry of the wrong type", FILE.replace("      - { time:", "      - 5\n      - { time:"), ["t.yaml:5:9: tests[0].input[0]: expected a string or a mapping, got 5"]],
    [
      "an unknown rung",
      FILE.replace("firstRung: probe", "firstRung: prob"),
      ['t.yaml:8:76: tests[0].expect.incidents[0].firstRung: must be one of "conservative", "probe", "force", "degrade", "restartPod", got "prob"'],
    ],
    ["a time that is not one", FILE.replace("firstRung: probe", "at: noon"), ['t.yaml:8:69: tests[0].expect.incidents[0].at: expected a time such as 2026-11-26T12:00:00Z, got "noon"']],
    [
      "an unknown suppression reason, at its key",
      FILE.replace("firstRung: probe", "suppressed: { cooldwn: 1 }"),
      [expect.stringMatching(/^t\.yaml:8:79: tests\[0\]\.expect\.incidents\[0\]\.suppressed\.cooldwn: unknown field \(allowed here: dry_run, cooldown, /)],
    ],
    ["an unquoted user id too large to be exact", FILE.replace("key: { userId: u1, pod: p }", "key: { userId: 105945141827451681156 }"), ["t.yaml:8:51: tests[0].expect.incidents[0].key.userId: this number is too large to be held exactly: quote it"]],
    ["no tests", FILE.slice(0, FILE.indexOf("tests:")) + "tests: []\n", ["t.yaml:2:1: tests: needs at least 1 item, got 0"]],
    ["YAML that does not parse", FILE.replace("name: one lockout", "name: one: lockout"), ["t.yaml:3:11: invalid YAML: Nested mappings are not allowed in compact mappings"]],
    ["a file that is not a mapping", "- rules\n", ["t.yaml:1:1: a rule test file must be a mapping with rules and tests, got a list"]],
    ["an empty file", "# nothing yet\n", ["t.yaml:1:1: the file is empty; a rule test file holds rules and tests"]],
    ["two documents", `${FILE}---\n${FILE}`, ["t.yaml:9:1: a second document: a rule test file holds one"]],
  ])("%s", async (_name, text, expected) => {
    const result = await run(text);
    expect(result.errors).toEqual(expected);
    expect(result.ran).toBe(0);
    expect(result.failed).toBe(expected.length);
  });

  it("a rule file that cannot be read, at its entry in rules", async () => {
    const { errors, ran } = await run(FILE.replace(`rules: [${JSON.stringify(LOCKOUT)}]`, `rules: [${JSON.stringify(LOCKOUT)}, ./nope.yaml]`));
    expect(errors).toEqual([`t.yaml:1:${11 + JSON.stringify(LOCKOUT).length}: rules[1]: cannot read ${join(dir, "nope.yaml")}: no such file or folder`]);
    expect(ran).toBe(0);
  });

  it("an expected incident of a rule the file does not load, and an input entry that is not a log entry; the case is not run", async () => {
    const text = FILE.replace("rule: factory-lockout", "rule: factory-lockot").replace(
      "      - { time:",
      '      - "not json"\n      - "[1]"\n      - { severity: ERROR, event: factory.hard_limit }\n      - { time:',
    );
    const { errors, ran } = await run(`${text}  - name: runs\n    input: [{ time: "2026-11-26T12:00:00Z" }]\n    expect: { incidents: [] }\n`);
    expect(errors).toEqual([
      't.yaml:5:9: tests[0].input[0]: is not JSON (Unexpected token \'o\', "not json" is not valid JSON); give a JSON line or a mapping',
      "t.yaml:6:9: tests[0].input[1]: is not a log entry: give a JSON object (a factory line or a Cloud Logging LogEntry)",
      "t.yaml:7:9: tests[0].input[2]: is not a log entry: it needs a time (time, or timestamp for a Cloud Logging entry) between the years 0000 and 9999",
      't.yaml:11:19: tests[0].expect.incidents[0].rule: no rule "factory-lockot" in this file\'s rules (factory-lockout)',
    ]);
    expect(ran).toBe(1); // the second case still runs
  });

  it("a path that cannot be read, and a folder without test files, at 1:1", async () => {
    const empty = join(dir, "empty");
    await mkdir(empty, { recursive: true });
    const result = await runRuleTests([join(dir, "missing.yaml"), empty]);
    expect(result.errors.map((e) => e.format())).toEqual([`${join(dir, "missing.yaml")}:1:1: cannot read: no such file or folder`, `${empty}:1:1: no YAML files (*.yaml, *.yml) in this folder`]);
    expect(result.failed).toBe(2);
  });

  it("the shipped rule tests still pass", async () => {
    const result = await runRuleTests([SHIPPED_TESTS]);
    expect(result.errors.map((e) => e.format())).toEqual([]);
    expect(result.failed).toBe(0);
    expect(result.passed).toBeGreaterThan(0);
  });
});
