/**
 * loadRules: every problem in a rule file is reported at the exact
 * `file:line:col` of the YAML node it is about, with a message an SRE can act
 * on; files, folders and multi-document files load as documented.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRules, RuleError } from "../../../src/operator/rules/load.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-rules-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes `files` into a fresh folder under the temp dir and returns the folder. */
let fixtures = 0;
async function folder(files: Record<string, string>): Promise<string> {
  const root = join(dir, `case-${++fixtures}`);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(root, name, ".."), { recursive: true });
    await writeFile(join(root, name), text);
  }
  return root;
}

/** Loads `paths` (relative to `root`) and returns the errors formatted, with `root/` cut off. */
async function problems(root: string, paths: string[]): Promise<string[]> {
  const { errors } = await loadRules(paths.map((p) => join(root, p)));
  return errors.map((e) => e.format().replaceAll(`${root}/`, ""));
}

// A valid rule; each case below changes one thing. Line numbers are those of this text.
const RULE = `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata:
  name: lockout
spec:
  trigger:
    log:
      event: [factory.hard_limit, factory.error]
      minSeverity: ERROR
  threshold: { count: 1, window: 1m }
  key: [userId, pod]
  ladder:
    - rung: probe
    - rung: force
      params: { max: 2 }
  incident:
    title: "Lockout: {{userId}}"
`;

const SPEC_FIELDS = "description, runbook, trigger, threshold, key, maxAge, ladder, verify, guards, incident";

describe("loadRules: one problem, at its node", () => {
  it.each<[string, string, string[]]>([
    [
      "a YAML syntax error",
      RULE.replace("key: [userId, pod]", "key: [userId, pod"),
      ["r.yaml:12:3: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]"],
    ],
    [
      "a duplicate key",
      RULE.replace("  key: [userId, pod]", "  key: [userId, pod]\n  key: [userId]"),
      ["r.yaml:12:3: invalid YAML: Map keys must be unique"],
    ],
    ["a wrong apiVersion", RULE.replace("reclaim.dev/v1", "reclaim.dev/v2"), ['r.yaml:1:13: apiVersion: must be "reclaim.dev/v1", got "reclaim.dev/v2"']],
    ["a missing apiVersion (at the document)", RULE.replace("apiVersion: reclaim.dev/v1\n", ""), ['r.yaml:1:1: apiVersion: is required; use "reclaim.dev/v1"']],
    ["a wrong kind", RULE.replace("kind: RemediationRule", "kind: Rule"), ['r.yaml:2:7: kind: must be "RemediationRule", got "Rule"']],
    ["a missing metadata.name (at metadata)", RULE.replace("  name: lockout", "  labels: { team: chat }"), ["r.yaml:3:1: metadata.name: is required"]],
    ["an empty metadata.name", RULE.replace("  name: lockout", "  name:"), ["r.yaml:4:3: metadata.name: expected a string, got nothing"]],
    [
      "a bad name",
      RULE.replace("name: lockout", "name: Lockout_1"),
      ['r.yaml:4:9: metadata.name: expected a DNS label: lower-case letters, digits and -, at most 63, got "Lockout_1"'],
    ],
    ["a missing spec (at the document)", RULE.slice(0, RULE.indexOf("spec:")), ["r.yaml:1:1: spec: is required"]],
    [
      "a document that is not a mapping",
      "- apiVersion: reclaim.dev/v1\n",
      ["r.yaml:1:1: a rule must be a mapping with apiVersion, kind, metadata and spec, got a list"],
    ],
    [
      "unknown keys in spec (at each key)",
      RULE.replace("  key: [userId, pod]", "  key: [userId, pod]\n  keys: [pod]\n  cooldown: 5m"),
      [`r.yaml:12:3: spec.keys: unknown field (allowed here: ${SPEC_FIELDS})`, `r.yaml:13:3: spec.cooldown: unknown field (allowed here: ${SPEC_FIELDS})`],
    ],
    [
      "an unknown key in a rung (fields of that rung)",
      RULE.replace("      params: { max: 2 }", "      parms: { max: 2 }"),
      ["r.yaml:15:7: spec.ladder[1].parms: unknown field (allowed here: rung, params, timeout)"],
    ],
    [
      "an unknown rung parameter",
      RULE.replace("params: { max: 2 }", "params: { mx: 2 }"),
      ["r.yaml:15:17: spec.ladder[1].params.mx: unknown field (allowed here: max, freeSlots)"],
    ],
    [
      "a bad duration",
      RULE.replace("window: 1m", "window: 5 minutes"),
      ['r.yaml:10:34: spec.threshold.window: expected a duration such as 30s, 5m or 1h, got "5 minutes"'],
    ],
    ["a duration of the wrong type", RULE.replace("window: 1m", "window: true"), ["r.yaml:10:34: spec.threshold.window: expected a string or a number, got true"]],
    [
      "an unknown rung",
      RULE.replace("rung: probe", "rung: reboot"),
      ["r.yaml:13:13: spec.ladder[0].rung: rung must be one of conservative, probe, force, degrade, restartPod"],
    ],
    ["force with max 0", RULE.replace("params: { max: 2 }", "params: { max: 0 }"), ["r.yaml:15:22: spec.ladder[1].params.max: must be at least 1, got 0"]],
    ["an empty ladder (at the key)", RULE.replace("  ladder:\n    - rung: probe\n    - rung: force\n      params: { max: 2 }", "  ladder: []"), ["r.yaml:12:3: spec.ladder: needs at least 1 item, got 0"]],
    ["a key without userId (at the key)", RULE.replace("key: [userId, pod]", "key: [pod]"), ["r.yaml:11:3: spec.key: key must include userId: the ladder acts on one user"]],
    [
      "a count that is not a whole number",
      RULE.replace("count: 1,", "count: 1.5,"),
      ["r.yaml:10:23: spec.threshold.count: expected a whole number, got 1.5"],
    ],
    [
      "an unknown severity",
      RULE.replace("minSeverity: ERROR", "minSeverity: ERR"),
      [
        'r.yaml:9:20: spec.trigger.log.minSeverity: must be one of "DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY", got "ERR"',
      ],
    ],
    [
      "a bad field name in where (at the key)",
      RULE.replace("      minSeverity: ERROR", "      where: { bad-key: 1 }"),
      ['r.yaml:9:16: spec.trigger.log.where["bad-key"]: expected a field name (letters, digits, _), or resource.LABEL, got "bad-key"'],
    ],
    [
      "a where condition of the wrong type",
      RULE.replace("      minSeverity: ERROR", "      where: { userId: [a, b] }"),
      ["r.yaml:9:16: spec.trigger.log.where.userId: expected a string, a number, a boolean or a mapping, got a list"],
    ],
    [
      "an unquoted user id too large to be exact",
      RULE.replace("      minSeverity: ERROR", "      where: { userId: 105945141827451681156 }"),
      ["r.yaml:9:24: spec.trigger.log.where.userId: this number is too large to be held exactly: quote it"],
    ],
    [
      "an unknown where operator",
      RULE.replace("      minSeverity: ERROR", "      where: { managers: { gt: 1, above: 2 } }"),
      ["r.yaml:9:35: spec.trigger.log.where.managers.above: unknown field (allowed here: eq, ne, in, notIn, gt, gte, lt, lte, exists)"],
    ],
    [
      "an invalid RE2 pattern: a backreference",
      RULE.replace("      minSeverity: ERROR", "      pattern: '(a)\\1'"),
      ["r.yaml:9:16: spec.trigger.log.pattern: invalid RE2 pattern: error parsing regexp: invalid escape sequence: `\\1`"],
    ],
    [
      "an invalid RE2 pattern: a lookbehind",
      RULE.replace("      minSeverity: ERROR", "      pattern: (?<=x)y"),
      ["r.yaml:9:16: spec.trigger.log.pattern: invalid RE2 pattern: error parsing regexp: invalid named capture: `(?<=x)y`"],
    ],
    [
      "a title with a stray {{",
      RULE.replace('"Lockout: {{userId}}"', '"Lockout: {{userId}} {{"'),
      ["r.yaml:17:12: spec.incident.title: placeholders are {{field}} or {{match.group}} only"],
    ],
    [
      "a title naming a group the pattern lacks",
      RULE.replace("      minSeverity: ERROR", "      pattern: 'HARD LIMIT: User (?P<user>\\d+)'").replace("{{userId}}", "{{match.usr}}"),
      ["r.yaml:17:12: spec.incident.title: {{match.usr}} needs a named group (?P<usr>…) in spec.trigger.log.pattern"],
    ],
    [
      "several problems, in file order",
      RULE.replace("reclaim.dev/v1", "v1").replace("window: 1m", "window: soon").replace("max: 2", "max: 0"),
      [
        'r.yaml:1:13: apiVersion: must be "reclaim.dev/v1", got "v1"',
        'r.yaml:10:34: spec.threshold.window: expected a duration such as 30s, 5m or 1h, got "soon"',
        "r.yaml:15:22: spec.ladder[1].params.max: must be at least 1, got 0",
      ],
    ],
  ])("%s", async (_name, text, expected) => {
    const root = await folder({ "r.yaml": text });
    expect(await problems(root, ["r.yaml"])).toEqual(expected);
  });
});

describe("loadRules: restartPod", () => {
  const withRestart = RULE.replace("    - rung: force\n      params: { max: 2 }", "    - rung: restartPod");

  it("is a valid rung (rules validate, Kubernetes mode)", async () => {
    const root = await folder({ "r.yaml": withRestart });
    const { rules, errors } = await loadRules([join(root, "r.yaml")]);
    expect(errors).toEqual([]);
    expect(rules[0]!.rule.spec.ladder[1]).toMatchObject({ rung: "restartPod", params: { waitReady: 120_000, maxPerHour: 1 } });
  });

  it("is refused, at the rung, by an operator that acts through --control URL", async () => {
    const root = await folder({ "r.yaml": withRestart });
    const { rules, errors } = await loadRules([join(root, "r.yaml")], { kubernetes: false });
    expect(rules).toEqual([]);
    expect(errors.map((e) => e.format().replace(`${root}/`, ""))).toEqual([
      "r.yaml:14:13: spec.ladder[1].rung: restartPod needs Kubernetes mode (--target pod); this operator acts through --control URL",
    ]);
  });
});

describe("loadRules: files, folders and documents", () => {
  it("reports a duplicate name at its second use, across files", async () => {
    const root = await folder({ "a.yaml": RULE, "b.yaml": `# the same rule again\n${RULE}` });
    expect(await problems(root, ["."])).toEqual([`b.yaml:5:9: metadata.name: duplicate rule name "lockout", first defined at a.yaml:4`]);
    const { rules } = await loadRules([root]);
    expect(rules.map((r) => [r.rule.metadata.name, r.file])).toEqual([["lockout", join(root, "a.yaml")]]);
  });

  it("gives line numbers of the second document for an error in it", async () => {
    const second = RULE.replace("name: lockout", "name: lockout-2").replace("max: 2", "max: 0");
    const root = await folder({ "multi.yaml": `${RULE}---\n${second}` });
    // RULE is 17 lines; the second document starts on line 19, so its line 15 is line 33.
    expect(await problems(root, ["multi.yaml"])).toEqual(["multi.yaml:33:22: spec.ladder[1].params.max: must be at least 1, got 0"]);
    const { rules } = await loadRules([join(root, "multi.yaml")]);
    expect(rules.map((r) => [r.rule.metadata.name, r.line])).toEqual([["lockout", 1]]);
  });

  it("gives the YAML syntax error of the second document its own line", async () => {
    const root = await folder({ "multi.yaml": `${RULE}---\nkind: [RemediationRule\n` });
    expect(await problems(root, ["multi.yaml"])).toEqual(["multi.yaml:20:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]"]);
  });

  it("loads a valid multi-document file, skipping empty and comment-only documents", async () => {
    const text = `# yaml-language-server: $schema=./schema.json\n---\n${RULE}---\n# nothing here yet\n---\n${RULE.replace("name: lockout", "name: lockout-2")}---\n`;
    const root = await folder({ "multi.yaml": text });
    const { rules, errors, files } = await loadRules([join(root, "multi.yaml")]);
    expect(errors).toEqual([]);
    expect(files).toEqual([join(root, "multi.yaml")]);
    expect(rules.map((r) => [r.rule.metadata.name, r.line])).toEqual([
      ["lockout", 3],
      ["lockout-2", 23],
    ]);
    // Parsed with defaults filled in, and compiled.
    const [first] = rules;
    expect(first?.rule.spec.threshold).toEqual({ count: 1, window: 60_000 });
    expect(first?.rule.spec.guards.cooldown).toBe(600_000);
    expect(first?.compiled.name).toBe("lockout");
  });

  it("loads a folder's *.yaml and *.yml files, sorted, ignoring subfolders, other files and dotfiles", async () => {
    const root = await folder({
      "b.yml": RULE.replace("name: lockout", "name: from-b"),
      "a.yaml": RULE.replace("name: lockout", "name: from-a"),
      "schema.json": "{ not a rule",
      "README.md": "# rules",
      ".draft.yaml": "this: is not a rule",
      "tests/a.test.yaml": "cases: []",
    });
    const { rules, errors, files } = await loadRules([root]);
    expect(errors).toEqual([]);
    expect(files).toEqual([join(root, "a.yaml"), join(root, "b.yml")]);
    expect(rules.map((r) => r.rule.metadata.name)).toEqual(["from-a", "from-b"]);
  });

  it("follows symlinked files, as in a ConfigMap mount", async () => {
    const root = await folder({ "..data/lockout.yaml": RULE });
    await symlink(join("..data", "lockout.yaml"), join(root, "lockout.yaml"));
    await symlink(join("..data", "gone.yaml"), join(root, "gone.yaml"));
    const { rules, errors } = await loadRules([root]);
    expect(rules.map((r) => r.file)).toEqual([join(root, "lockout.yaml")]);
    // A dangling link is reported as the file it is, not as an unreadable folder.
    expect(errors.map((e) => e.format())).toEqual([`${join(root, "gone.yaml")}:1:1: cannot read: no such file or folder`]);
  });

  it("reads a file named twice (or a file and its folder) once", async () => {
    const root = await folder({ "r.yaml": RULE });
    const { rules, errors, files } = await loadRules([join(root, "r.yaml"), root, join(root, "r.yaml")]);
    expect(errors).toEqual([]);
    expect(files).toHaveLength(1);
    expect(rules).toHaveLength(1);
  });

  it.each([
    ["an empty file", ""],
    ["a file of comments and empty documents", "# nothing here yet\n---\n---\n"],
  ])("refuses %s at 1:1: a rule file holds at least one rule (a half-written file must not switch its rules off)", async (_name, text) => {
    const root = await folder({ "r.yaml": text });
    expect(await problems(root, ["r.yaml"])).toEqual([
      "r.yaml:1:1: no RemediationRule in this file (it is empty or holds only comments); a rule file holds at least one rule",
    ]);
  });

  it("reports unreadable paths and folders without rule files at 1:1, and goes on", async () => {
    const root = await folder({ "empty/README.md": "nothing", "r.yaml": RULE });
    expect(await problems(root, ["missing.yaml", "empty", "r.yaml"])).toEqual([
      "missing.yaml:1:1: cannot read: no such file or folder",
      "empty:1:1: no rule files (*.yaml, *.yml) in this folder",
    ]);
    expect((await loadRules([join(root, "missing"), join(root, "r.yaml")])).rules).toHaveLength(1);
  });

  it("formats an error as file:line:col: message", () => {
    const error = new RuleError("rules/x.yaml", 3, 7, "kind: must be \"RemediationRule\"");
    expect(error.format()).toBe('rules/x.yaml:3:7: kind: must be "RemediationRule"');
    expect(String(error)).toBe(error.format());
  });
});

describe("the shipped rules", () => {
  const shipped = fileURLToPath(new URL("../../../rules", import.meta.url));

  it("validate, as a folder", async () => {
    const { rules, errors, files } = await loadRules([shipped]);
    expect(errors.map((e) => e.format())).toEqual([]);
    expect(files).toEqual([join(shipped, "factory-lockout.yaml"), join(shipped, "factory-users-at-limit.yaml")]);
    expect(rules.map((r) => r.rule.metadata.name)).toEqual(["factory-lockout", "factory-users-at-limit"]);
  });

  it("collapse HARD LIMIT and UNEXPECTED FACTORY ERROR of one user into one key, and act on users only", async () => {
    const { rules } = await loadRules([shipped]);
    const lockout = rules.find((r) => r.rule.metadata.name === "factory-lockout");
    expect(lockout?.rule.spec.key).toEqual(["userId", "pod"]);
    const entry = (event: string, fields: Record<string, unknown>, severity: "ERROR" | "WARNING" = "ERROR") => ({
      time: 0,
      severity,
      message: "",
      event,
      fields,
      resource: {},
      insertId: null,
    });
    const user = { userId: "105945141827451681156", managers: 20, limit: 20, pod: "factory-0" };
    expect(lockout?.compiled.match(entry("factory.hard_limit", user))).not.toBeNull();
    expect(lockout?.compiled.match(entry("factory.error", user))).not.toBeNull();
    expect(lockout?.compiled.match(entry("factory.error", { pod: "factory-0" }))).toBeNull(); // an upgrade failure names no user
    expect(lockout?.compiled.match(entry("factory.refused", user, "WARNING"))).toBeNull();
    expect(lockout?.rule.spec.ladder.map((r) => r.rung)).toEqual(["probe", "force", "degrade"]);
  });
});
