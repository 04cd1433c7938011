/**
 * `rules validate` refuses an incident title placeholder that nothing fills
 * in (it would show "?" on every incident), at the placeholder's `{`, naming
 * what is available; and only warns where it cannot be known.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRules } from "../../../src/operator/rules/load.js";
import { placeholders, titleSources } from "../../../src/operator/rules/template.js";
import { AT_LIMIT_METRIC_RULE, LOCKOUT_RULE } from "../../support/operator.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-title-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
/** Loads `text` as a rule file; errors and warnings formatted, the folder cut off. */
async function load(text: string): Promise<{ errors: string[]; warnings: string[]; loaded: number }> {
  const file = join(dir, `r${++n}.yaml`);
  await writeFile(file, text);
  const { errors, warnings, rules } = await loadRules([file]);
  const cut = (s: string): string => s.replace(`${file}:`, "r.yaml:");
  return { errors: errors.map((e) => cut(e.format())), warnings: warnings.map((w) => cut(w.format())), loaded: rules.length };
}

/** A log rule on the lockout events; line 9 is the title's line. */
const rule = (title: string, trigger = "{ log: { event: [factory.hard_limit, factory.error], minSeverity: ERROR } }", key = "[userId, pod]"): string => `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: titled }
spec:
  trigger: ${trigger}
  key: ${key}
  ladder: [{ rung: probe }]
  incident:
    title: ${title}
`;

const AVAILABLE = "(available: rule, userId, pod, event, managers, limit, effectiveLimit, managerId)";

describe("a title placeholder nothing fills in", () => {
  it("is refused at its {, naming what the factory writes on the rule's events and what is available", async () => {
    const { errors, loaded } = await load(rule('"Lockout {{userId}} ({{reason}})"'));
    expect(errors).toEqual([
      `r.yaml:9:33: spec.incident.title: {{reason}} is filled in by nothing: it is not a key field, no where condition requires it, and the factory never writes it on factory.hard_limit or factory.error; every title would show "?" ${AVAILABLE}`,
    ]);
    expect(loaded).toBe(0);
  });

  it.each<[string, string, string[]]>([
    ["each one, in a plain scalar, with spaces inside the braces", "Lockout {{ reason }} {{userId}} {{kind}}", ["9:20", "9:44"]],
    ["in a single-quoted scalar", "'It''s {{userId}}: {{severity}}'", ["9:31"]],
    ["the same placeholder twice", '"{{message}} / {{message}}"', ["9:13", "9:27"]],
  ])("is refused %s", async (_name, title, at) => {
    const { errors } = await load(rule(title));
    expect(errors.map((e) => e.split(": ")[0]!.replace("r.yaml:", ""))).toEqual(at);
  });

  it("is found on its own line in a folded block scalar", async () => {
    const { errors } = await load(rule(">-\n      Lockout of {{userId}}\n      because {{reason}}"));
    expect(errors.map((e) => e.slice(0, e.indexOf(": ")))).toEqual(["r.yaml:11:15"]);
  });

  it("of a resource label is refused unless the key names it: labels reach a title only through the key", async () => {
    const refused = await load(rule('"{{userId}} in {{resource.namespace_name}}"'));
    expect(refused.errors).toEqual([expect.stringMatching(/^r\.yaml:9:27: spec\.incident\.title: \{\{resource\.namespace_name\}\} is filled in by nothing: .*resource labels reach a title only as a key field \(spec\.key\)/)]);
    const keyed = await load(rule('"{{userId}} in {{resource.namespace_name}}"', undefined, "[userId, resource.namespace_name]"));
    expect(keyed).toEqual({ errors: [], warnings: [], loaded: 1 });
  });
});

describe("a title placeholder something fills in", () => {
  it.each<[string, string, string?, string?]>([
    ["a field the factory writes on one of the events", '"{{userId}} at {{managers}}/{{effectiveLimit}} on {{pod}} ({{event}})"'],
    ["the rule's name", '"{{rule}}: {{userId}}"'],
    ["a key field", '"{{userId}} {{managerId}}"', undefined, "[userId, managerId]"],
    ["a field a where condition requires", '"{{userId}}: {{tenant}}"', "{ log: { event: factory.hard_limit, where: { tenant: { exists: true } } } }"],
    ["a field a where equality requires", '"{{userId}}: {{tenant}}"', "{ log: { event: factory.hard_limit, where: { tenant: acme } } }"],
    ["a pattern group (checked against the pattern)", '"{{userId}}: {{match.n}}"', "{ log: { event: factory.hard_limit, pattern: '(?P<n>\\d+)' } }"],
    ["a field of an event named by where instead of event", '"{{userId}} {{reason}}"', "{ log: { where: { event: factory.refused } } }"],
  ])("is accepted: %s", async (_name, title, trigger, key) => {
    expect(await load(rule(title, trigger, key))).toEqual({ errors: [], warnings: [], loaded: 1 });
  });

  it("is refused when the where condition does not require the field (ne holds when it is absent)", async () => {
    const { errors } = await load(rule('"{{userId}}: {{tenant}}"', "{ log: { event: factory.hard_limit, where: { tenant: { ne: acme } } } }"));
    expect(errors).toEqual([expect.stringContaining("r.yaml:9:25: spec.incident.title: {{tenant}} is filled in by nothing")]);
  });

  it("is refused when where narrows the events to ones that do not carry it", async () => {
    const { errors } = await load(rule('"{{userId}} {{reason}}"', "{ log: { event: [factory.hard_limit, factory.refused], where: { event: factory.hard_limit } } }"));
    expect(errors).toEqual([expect.stringContaining("r.yaml:9:24: spec.incident.title: {{reason}} is filled in by nothing: it is not a key field, no where condition requires it, and the factory never writes it on factory.hard_limit;")]);
  });
});

describe("a title placeholder that cannot be checked is a warning, and the rule loads", () => {
  it.each<[string, string, RegExp]>([
    ["an event the factory never writes", "{ log: { event: [factory.hard_limit, billing.failed] } }", /the factory never writes "billing\.failed", so the fields of those entries are not known/],
    ["no event at all", "{ log: { where: { userId: { exists: true } } } }", /the trigger names no event, so the fields of the entries it matches are not known/],
    ["a metric rule", '{ metric: { query: "max by (pod) (reclaim_factory_users_at_limit)" } }', /a metric rule's entries also carry the labels of its query's series/],
  ])("%s", async (_name, trigger, why) => {
    const { errors, warnings, loaded } = await load(rule('"{{userId}} on {{cluster}}"', trigger));
    expect(errors).toEqual([]);
    expect(loaded).toBe(1);
    expect(warnings.filter((w) => w.includes("spec.incident.title"))).toEqual([expect.stringMatching(/^r\.yaml:9:27: warning: spec\.incident\.title: \{\{cluster\}\} cannot be checked: /)]);
    expect(warnings.find((w) => w.includes("spec.incident.title"))).toMatch(why);
  });

  it("a metric rule's title may name the user's managers and limit, and its key (the sweep and the evaluator both give them)", async () => {
    const { errors, warnings } = await load(rule('"{{userId}} at {{managers}}/{{limit}} on {{pod}}"', '{ metric: { query: "max by (pod) (x)" } }'));
    expect({ errors, warnings }).toEqual({ errors: [], warnings: [] });
  });
});

describe("titles that must stay valid", () => {
  it("the default title", async () => {
    expect(await load(rule('"x"').replace("  incident:\n    title: \"x\"\n", ""))).toEqual({ errors: [], warnings: [], loaded: 1 });
  });

  it("the shipped rules, and the rules the tests run the operator with", async () => {
    const shipped = fileURLToPath(new URL("../../../rules", import.meta.url));
    const { errors, warnings } = await loadRules([shipped]);
    expect([...errors, ...warnings].map((e) => e.format())).toEqual([]);
    for (const text of [LOCKOUT_RULE, AT_LIMIT_METRIC_RULE]) expect(await load(text)).toEqual({ errors: [], warnings: [], loaded: 1 });
  });
});

describe("titleSources", () => {
  it("knows a closed rule's fields, and says why an open one is open", () => {
    const parse = (trigger: unknown, key = ["userId", "pod"]) =>
      titleSources({
        apiVersion: "reclaim.dev/v1",
        kind: "RemediationRule",
        metadata: { name: "x" },
        spec: { trigger, key, incident: { title: "t", severity: "high" } },
      } as never);
    const closed = parse({ log: { event: "factory.refused" } });
    expect(closed.open).toBeNull();
    expect([...closed.provided].sort()).toEqual(["event", "limit", "managers", "pod", "reason", "rule", "userId"]);
    expect(parse({ log: { event: "svc.x" } }).open).toMatch(/svc\.x/);
  });

  it("finds every placeholder with its index", () => {
    expect(placeholders("a {{ b }} {{match.c}}")).toEqual([
      { name: "b", index: 2, text: "{{ b }}" },
      { name: "match.c", index: 10, text: "{{match.c}}" },
    ]);
  });
});
