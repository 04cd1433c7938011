/**
 * Text triggers (`trigger.log.text`): key fields from a plain-text message,
 * only through an anchored RE2 pattern with named groups, only from entries a
 * `trust` selector on resource labels admits. Bad rules are refused at
 * `file:line:col`; the lines come from real Python `logging`, as GKE ingests them.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { OutageMessage } from "../../../src/contract/events.js";
import { rulesValidateCommand } from "../../../src/cli/rules.js";
import { compileRule, PatternError, takesKeyFromText, type CompiledRule, type Match } from "../../../src/operator/rules/compile.js";
import { loadRules } from "../../../src/operator/rules/load.js";
import { RemediationRule } from "../../../src/operator/rules/schema.js";
import { anchoringProblem, userIdGroupProblem } from "../../../src/operator/rules/text-pattern.js";
import { normalize, type LogEvent } from "../../../src/operator/sources/event.js";
import { BASIC_FORMAT, gkeTextEntry, pythonLogLines, type StreamLine } from "../../support/python-logging.js";

const EXAMPLE = new URL("../../../rules/examples/text-backend-lockout.yaml", import.meta.url).pathname;
const EXAMPLES = new URL("../../../rules/examples", import.meta.url).pathname;
const USER = "105945141827451681156";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-text-rules-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A text rule with `pattern` (YAML, already quoted) on line 8 and `trust` from line 9; `key` on line 13 (with a one-line trust). */
function textRule(pattern: string, trust = "        trust:\n          resource.container_name: chat-backend\n", key = "[userId, pod]"): string {
  return `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: text }
spec:
  trigger:
    log:
      text:
        pattern: ${pattern}
${trust}  threshold: { count: 1, window: 1m }
  ladder: [{ rung: probe }]
  key: ${key}
`;
}

let cases = 0;
/** Loads `yaml` as a file and returns its errors as `line:col: message` (the file name cut off) and its warnings. */
async function load(yaml: string): Promise<{ errors: string[]; warnings: string[] }> {
  const file = join(dir, `case-${++cases}.yaml`);
  await writeFile(file, yaml);
  const { errors, warnings } = await loadRules([file]);
  const cut = (e: { format(): string }): string => e.format().replace(`${file}:`, "");
  return { errors: errors.map(cut), warnings: warnings.map(cut) };
}

const HARD = String.raw`'^HARD LIMIT: User (?P<userId>[0-9]{1,64}) still over limit after cleanup \((?P<managers>\d+)/(?P<limit>\d+)\)$'`;

describe("a text rule is refused at file:line:col", () => {
  it("accepts an anchored pattern whose groups supply the key, from a trusted container", async () => {
    expect(await load(textRule(HARD).replace("ladder:", "incident: { title: 'u {{userId}} {{match.managers}}/{{match.limit}}' }\n  ladder:"))).toEqual({
      errors: [],
      warnings: [],
    });
  });

  it.each([
    ["no ^", String.raw`'HARD LIMIT: User (?P<userId>[0-9]+) x$'`, "must be anchored: start it with ^"],
    ["no $", String.raw`'^HARD LIMIT: User (?P<userId>[0-9]+)'`, "must be anchored: end it with $"],
    ["an escaped $ is not an anchor", String.raw`'^HARD LIMIT: User (?P<userId>[0-9]+) \$'`, "must be anchored: end it with $"],
    ["| outside a group", String.raw`'^HARD (?P<userId>[0-9]+)|LIMIT (?P<userId2>x)$'`, "must be anchored as a whole"],
    ["the m flag", String.raw`'(?m)^HARD LIMIT: User (?P<userId>[0-9]+)$'`, "must be anchored: start it with ^"],
    ["the m flag after ^", String.raw`'^(?m)HARD LIMIT: User (?P<userId>[0-9]+)$'`, "must not set the m flag"],
    ["a backreference (not RE2)", String.raw`'^(a)\1 (?P<userId>[0-9]+)$'`, "invalid RE2 pattern"],
  ])("%s", async (_name, pattern, message) => {
    const { errors } = await load(textRule(pattern));
    expect(errors).toEqual([expect.stringMatching(new RegExp(`^8:18: spec\\.trigger\\.log\\.text\\.pattern: ${escape(message)}`))]);
  });

  it("a key field that no group supplies is an error at the key field, naming the groups there are", async () => {
    const { errors } = await load(textRule(String.raw`'^HARD LIMIT: User (?P<user_id>[0-9]+)$'`));
    expect(errors).toEqual([
      "13:9: spec.key[0]: key field userId is not a named group of spec.trigger.log.text.pattern (its groups: user_id), and a text entry has no other field to take it from (only pod and resource.LABEL come from the source): name the user with (?P<userId>…)",
    ]);
    // pod (from resource.pod_name) and resource labels are source fields: no group needed.
    expect((await load(textRule(String.raw`'^x (?P<userId>[0-9]+)$'`, undefined, "[userId, pod, resource.cluster_name]"))).errors).toEqual([]);
    expect((await load(textRule(String.raw`'^x (?P<userId>[0-9]+)$'`, undefined, "[userId, tenant]"))).errors).toEqual([
      expect.stringMatching(/^13:17: spec\.key\[1\]: key field tenant is not a named group/),
    ]);
  });

  it("in a list, a pattern that lacks a key group the others have is an error at that pattern", async () => {
    const list = `\n          - '^a (?P<userId>[0-9]+)$'\n          - '^b [0-9]+$'`;
    expect((await load(textRule(list))).errors).toEqual([
      "10:13: spec.trigger.log.text.pattern[1]: has no named group (?P<userId>…), but another pattern takes key field userId from the text: every pattern must supply the same key fields",
    ]);
  });

  it.each([
    ["missing", "", "7:7: spec.trigger.log.text.trust: is required"],
    ["empty", "        trust: {}\n", "9:9: spec.trigger.log.text.trust: trust needs at least one source field"],
    ["resource.labels.X", "        trust: { resource.labels.container_name: chat-backend }\n", `9:18: spec.trigger.log.text.trust["resource.labels.container_name"]: expected a resource label such as resource.container_name (resource labels are written resource.LABEL, not resource.labels.LABEL)`],
    ["logName", "        trust: { logName: projects/p/logs/stderr }\n", "9:18: spec.trigger.log.text.trust.logName: expected a resource label"],
    ["app-set labels", "        trust: { labels.k8s-pod/app: chat-backend }\n", "9:18: spec.trigger.log.text.trust"],
    ["a condition instead of a value", "        trust: { resource.container_name: { ne: evil } }\n", `9:18: spec.trigger.log.text.trust["resource.container_name"]: expected a string or a list, got a mapping`],
  ])("trust %s", async (_name, trust, message) => {
    const { errors } = await load(textRule(HARD, trust));
    expect(errors).toEqual([expect.stringContaining(message)]);
  });

  it("pattern and text together are refused: the title groups come from text.pattern", async () => {
    const yaml = textRule(HARD).replace("      text:", "      pattern: HARD\n      text:");
    expect((await load(yaml)).errors).toEqual([expect.stringMatching(/^7:16: spec\.trigger\.log\.pattern: pattern and text both search the message/)]);
  });

  it("a userId group that could capture what a user id may not hold is an error at the pattern", async () => {
    const { errors } = await load(textRule(String.raw`'^HARD LIMIT: User (?P<userId>\S+) still over limit$'`));
    expect(errors).toEqual([
      String.raw`8:18: spec.trigger.log.text.pattern: (?P<userId>…) could capture characters a user id may not hold (\S); use only A-Za-z0-9._:@-, \d, \w, classes of them and repetitions, e.g. [0-9]{1,64}`,
    ]);
  });

  it("a group that nothing reads is a warning (a misspelt key field or title placeholder)", async () => {
    const { errors, warnings } = await load(textRule(String.raw`'^x (?P<userId>[0-9]+) (?P<manager>[0-9]+)$'`));
    expect(errors).toEqual([]);
    expect(warnings).toEqual([expect.stringMatching(/^8:18: warning: spec\.trigger\.log\.text\.pattern: the group \(\?P<manager>…\) is read by nothing/)]);
  });
});

describe("anchoringProblem and userIdGroupProblem", () => {
  it.each([
    [String.raw`^a$`, null],
    [String.raw`\Aa\z`, null],
    [String.raw`^(?:a|b)$`, null],
    [String.raw`^[|]\|$`, null],
    [String.raw`^\Q|\E$`, null],
    [String.raw`^a\\$`, null],
    [String.raw`^a\$`, "end"],
    [String.raw`^a|b$`, "whole"],
    [String.raw`^(?i)a$`, null],
    [String.raw`^(?im:a)$`, "m flag"],
  ])("anchoring %s", (pattern, problem) => {
    const found = anchoringProblem(pattern);
    if (problem === null) expect(found).toBeNull();
    else expect(found).toContain(problem);
  });

  it.each([
    ["[0-9]{1,64}", true],
    ["[A-Za-z0-9._:@-]{1,128}", true],
    [String.raw`\d+`, true],
    [String.raw`\w+`, true],
    ["[[:alnum:]_.-]+", true],
    ["(?:[0-9]+|[a-z]+)", true],
    [String.raw`[0-9]+\.[0-9]+`, true],
    [".+", false],
    [String.raw`\S+`, false],
    ["[^ ]+", false],
    ["[a-z/]+", false],
    ["[+-9]+", false], // the range +-9 holds , and /
    [String.raw`\pN+`, false],
    [String.raw`[\s]+`, false],
    ["[0-9 ]+", false],
    ["x y", false],
    ["[0-9]{1,64}/", false],
    ["a{,5}", false], // not a repetition in RE2: a literal { and }
    ["(?i:[a-z]+)", false],
    [String.raw`\x41`, false],
  ])("userId group %s: safe %s", (body, safe) => {
    const found = userIdGroupProblem(`^(?P<userId>${body})$`, "userId");
    expect(found === null).toBe(safe);
  });

  it("the i flag anywhere is refused for a pattern that takes userId: RE2 folds k to the Kelvin sign", () => {
    expect(userIdGroupProblem("(?i)^User (?P<userId>[a-z]+)$", "userId")).toContain("i flag");
  });

  it("compileRule refuses the same rules, so no way of building a rule skips the checks", () => {
    const build = (pattern: string, trust: Record<string, string> = { "resource.container_name": "chat-backend" }): CompiledRule =>
      compileRule(
        RemediationRule.parse({
          apiVersion: "reclaim.dev/v1",
          kind: "RemediationRule",
          metadata: { name: "t" },
          spec: { trigger: { log: { text: { pattern, trust } } }, key: ["userId"], ladder: [{ rung: "probe" }] },
        }),
      );
    expect(() => build("HARD (?P<userId>[0-9]+)$")).toThrow(PatternError);
    expect(() => build("^HARD (?P<userId>.+)$")).toThrow(/could capture/);
    expect(() => build("^HARD (?P<user>[0-9]+)$")).toThrow(/key field userId/);
    expect(() => build("^HARD (?P<userId>[0-9]+)$", {})).toThrow(/trust needs at least one source field/);
    expect(takesKeyFromText(build("^HARD (?P<userId>[0-9]+)$").rule)).toBe(true);
  });
});

/** Real Python logging lines as GKE entries, normalized as the operator's sources do. */
function events(lines: StreamLine[], container: string, pod = `${container}-7d9f-abcde`): LogEvent[] {
  return lines.map((l) => normalize(gkeTextEntry(l, { container, pod }))!);
}

async function example(): Promise<CompiledRule> {
  const { rules, errors } = await loadRules([EXAMPLE]);
  expect(errors.map((e) => e.format())).toEqual([]);
  return rules[0]!.compiled;
}

const THREE = [
  { level: "WARNING" as const, message: OutageMessage.resourceLimit(USER, 20, 20) },
  { level: "ERROR" as const, message: OutageMessage.hardLimit(USER, 20, 20) },
  { level: "ERROR" as const, message: OutageMessage.factoryError(USER, 20) },
];

describe("rules/examples/text-backend-lockout.yaml on real Python logging lines", () => {
  it.each([
    ["basicConfig()'s default format", BASIC_FORMAT],
    ["a bare %(message)s", "%(message)s"],
  ])("matches the three original lines word for word, %s, from chat-backend on stderr: user, limit and pod", async (_name, format) => {
    const rule = await example();
    const lines = await pythonLogLines(THREE, { format });
    expect(lines.map((l) => l.stream)).toEqual(["stderr", "stderr", "stderr"]);
    if (format === BASIC_FORMAT) expect(lines[1]!.line).toBe(`ERROR:chat.websocket:HARD LIMIT: User ${USER} still over limit after cleanup (20/20)`);
    const found = events(lines, "chat-backend").map((e) => rule.explain(e));
    expect(found).toEqual(THREE.map(() => ({ groups: { userId: USER, limit: "20" }, keys: { userId: USER } } satisfies Match)));
    expect(events(lines, "chat-backend").map((e) => e.severity)).toEqual(["ERROR", "ERROR", "ERROR"]);
  });

  it("the same lines from another container are not read: the miss names the trust field", async () => {
    const rule = await example();
    const lines = await pythonLogLines(THREE);
    expect(events(lines, "evil").map((e) => rule.explain(e))).toEqual(["trust:resource.container_name", "trust:resource.container_name", "trust:resource.container_name"]);
    // A raw line (no resource labels at all, e.g. a local file of JSON lines) is never trusted either.
    const raw = normalize({ time: new Date().toISOString(), severity: "ERROR", message: OutageMessage.hardLimit(USER, 20, 20) })!;
    expect(rule.explain(raw)).toBe("trust:resource.container_name");
  });

  it("a line that only contains the wording (chat text quoted in a log line), or adds to it, does not match", async () => {
    const rule = await example();
    const lines = await pythonLogLines([
      { level: "INFO", message: `message from 42: ${OutageMessage.hardLimit(USER, 20, 20)}` },
      { level: "ERROR", message: `${OutageMessage.hardLimit(USER, 20, 20)} and more` },
      { level: "ERROR", message: OutageMessage.hardLimit("alice", 20, 20) }, // not a numeric id
      { level: "ERROR", message: `HARD LIMIT: User ${USER} still over limit after cleanup (20/20)`, stream: "stdout" },
    ]);
    const byLine = new Map(events(lines, "chat-backend").map((e) => [e.message, rule.explain(e)]));
    expect([...byLine.values()].filter((m) => typeof m !== "string")).toHaveLength(1); // only the stdout line (severity INFO) matches
    expect(byLine.get(`ERROR:chat.websocket.stdout:HARD LIMIT: User ${USER} still over limit after cleanup (20/20)`)).toMatchObject({ keys: { userId: USER } });
  });

  it("a newline in a logged message makes a whole line no pattern can tell from a real one: why the factory is asked before acting", async () => {
    const rule = await example();
    const forged = await pythonLogLines([{ level: "ERROR", message: `chat from 42: hi\n${OutageMessage.hardLimit(USER, 20, 20)}` }], { format: "%(message)s" });
    expect(forged.map((l) => l.line)).toEqual(["chat from 42: hi", OutageMessage.hardLimit(USER, 20, 20)]);
    expect(events(forged, "chat-backend").map((e) => typeof rule.explain(e))).toEqual(["string", "object"]);
  });

  it("a line that ends in a line break still matches (some pipelines keep it)", async () => {
    const rule = await example();
    const [line] = await pythonLogLines([THREE[1]!]);
    const event = events([{ ...line!, line: `${line!.line}\n` }], "chat-backend")[0]!;
    expect(rule.match(event)).toMatchObject({ keys: { userId: USER } });
  });

  it("`reclaim rules validate rules/examples` passes (the command, in-process)", async () => {
    const out = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      process.exitCode = undefined;
      await rulesValidateCommand().parseAsync([EXAMPLES], { from: "user" });
      expect(process.exitCode).toBeUndefined();
      expect(out.mock.calls.map((c) => String(c[0])).join("")).toBe("1 rule valid in 1 file\n");
      expect(err.mock.calls.map((c) => String(c[0])).join("")).toBe("");
    } finally {
      out.mockRestore();
      err.mockRestore();
      process.exitCode = undefined;
    }
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
