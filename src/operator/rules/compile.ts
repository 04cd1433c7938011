/**
 * Turns a validated rule into a matcher over `LogEvent`s, plus the literal
 * needles a raw line must contain to be worth parsing at all (scan.ts finds
 * them in the bytes before any JSON is decoded). Patterns run on RE2 (re2js):
 * linear time on any input, because log text is attacker-influenced.
 * re2js (263 KB of source and the Unicode tables it builds: ~0.8 MiB of an
 * idle operator) is loaded the first time a pattern is compiled, so an
 * operator whose rules have none never holds it (ADR 40).
 */
import { createRequire } from "node:module";
import type { RE2JS } from "re2js";
import { severityRank, type LogEvent } from "../sources/event.js";
import { textPatterns, type FieldCondition, type RemediationRule, type TextTrigger } from "./schema.js";
import { anchoringProblem, userIdGroupProblem } from "./text-pattern.js";
import { dotted, type Segment } from "./yaml-position.js";

/** What a matching entry yields besides the fact that it matched. */
export interface Match {
  /** Named groups of the trigger's pattern (for the title). */
  groups: Record<string, string>;
  /**
   * Key fields taken from the message by a text trigger (`trigger.log.text`):
   * the named groups that are key fields, from an entry its `trust` admits.
   * Absent for every other trigger, whose key fields come from the entry's
   * structured fields only. The detector reads a key field here first.
   */
  keys?: Readonly<Record<string, string>>;
}

/**
 * Why an entry did not match, in the order the trigger checks: `event` (not
 * one of its events), `severity` (below minSeverity), `where:FIELD` (that
 * condition failed; the first failing one), `pattern` (not found in the
 * message; for a text trigger, none of its patterns matched the whole
 * message), `trust:FIELD` (a text trigger's pattern matched, but the entry
 * came from a source its `trust` does not admit: FIELD is the first source
 * field that did not hold), `metric` (a metric rule matches no log entry).
 */
export type Miss = "event" | "severity" | `where:${string}` | "pattern" | `trust:${string}` | "metric";

export interface CompiledRule {
  readonly name: string;
  readonly rule: RemediationRule;
  /**
   * Literal strings one of which every matching raw line contains (the JSON
   * spelling of the trigger's event names), or null when the rule cannot say
   * (every line is a candidate).
   */
  readonly needles: string[] | null;
  match(event: LogEvent): Match | null;
  /** `match`, saying why when the entry does not match (replay explains a result of 0 with it); as cheap. */
  explain(event: LogEvent): Match | Miss;
}

/** A pattern that is not valid RE2 syntax. */
export class PatternError extends Error {
  readonly code = "ERR_RECLAIM_PATTERN";
}

let engine: typeof RE2JS | null = null;

/**
 * re2js's RE2JS, required on first use: its CommonJS build, so that this
 * stays synchronous (no caller has to load it first). Nothing else in the
 * operator loads re2js (crds.ts, which imports its ES build, runs only for
 * `reclaim manifests`), so its objects never meet those of the other build.
 */
function re2(): typeof RE2JS {
  engine ??= (createRequire(import.meta.url)("re2js") as { RE2JS: typeof RE2JS }).RE2JS;
  return engine;
}

/** Compiles a trigger pattern with RE2, or throws a `PatternError` naming the problem. */
export function compilePattern(pattern: string): RE2JS {
  const RE2 = re2(); // outside the try: a failure to load re2js is not the pattern's fault
  try {
    return RE2.compile(pattern);
  } catch (err) {
    throw new PatternError(`invalid RE2 pattern: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** A problem of a text trigger found at compile time, with the path of the rule node it is about. */
export interface TextProblem {
  path: Segment[];
  message: string;
}

const TEXT_PATH: readonly Segment[] = ["spec", "trigger", "log", "text"];

/** Source fields a text entry carries besides its message: set by the logging agent, never parsed from text. */
function isSourceField(name: string): boolean {
  return name === "pod" || name.startsWith("resource.");
}

/** Whether `rule` takes key fields (the user it acts on among them) from a message's text: `trigger.log.text`. */
export function takesKeyFromText(rule: RemediationRule): boolean {
  return rule.spec.trigger.log?.text !== undefined;
}

/**
 * Everything wrong with `rule`'s text trigger (none without one): a pattern
 * that is not RE2 or not anchored as a whole, a key field that no pattern's
 * named group supplies (or only some do), and a user id group that could
 * capture a character a user id may not hold. `trust` is checked by the schema.
 */
export function textProblems(rule: RemediationRule): TextProblem[] {
  const text = rule.spec.trigger.log?.text;
  if (text === undefined) return [];
  const problems: TextProblem[] = [];
  const patterns = textPatterns(text);
  const pathOf = (i: number): Segment[] => (typeof text.pattern === "string" ? [...TEXT_PATH, "pattern"] : [...TEXT_PATH, "pattern", i]);
  // Group names as RE2 reads them: the scanner of text-pattern.ts only judges anchoring and the user id group.
  const groups: (string[] | null)[] = patterns.map((pattern, i) => {
    let names: string[];
    try {
      names = Object.keys(compilePattern(pattern).namedGroups());
    } catch (err) {
      problems.push({ path: pathOf(i), message: (err as Error).message });
      return null;
    }
    const anchoring = anchoringProblem(pattern);
    if (anchoring !== null) problems.push({ path: pathOf(i), message: anchoring });
    return names;
  });
  rule.spec.key.forEach((field, k) => {
    const having = groups.map((g) => g?.includes(field) ?? true);
    if (having.every(Boolean)) return;
    if (having.some(Boolean)) {
      having.forEach((has, i) => {
        if (!has) problems.push({ path: pathOf(i), message: `has no named group (?P<${field}>…), but another pattern takes key field ${field} from the text: every pattern must supply the same key fields` });
      });
      return;
    }
    if (isSourceField(field)) return;
    const named = [...new Set(groups.flatMap((g) => g ?? []))];
    problems.push({
      path: ["spec", "key", k],
      message:
        `key field ${field} is not a named group of ${dotted(TEXT_PATH)}.pattern (its groups: ${named.length === 0 ? "none" : named.join(", ")}), ` +
        `and a text entry has no other field to take it from (only pod and resource.LABEL come from the source)` +
        (field === "userId" ? `: name the user with (?P<userId>…)` : ""),
    });
  });
  patterns.forEach((pattern, i) => {
    if (groups[i]?.includes("userId") !== true) return;
    const unsafe = userIdGroupProblem(pattern, "userId");
    if (unsafe !== null) problems.push({ path: pathOf(i), message: unsafe });
  });
  return problems;
}

/** A text trigger compiled: its patterns, the key fields they supply, and its trust selector. */
interface CompiledText {
  patterns: { re: RE2JS; groups: string[] }[];
  keyGroups: string[];
  trust: { field: string; values: readonly string[]; miss: `trust:${string}` }[];
}

function compileText(rule: RemediationRule, text: TextTrigger): CompiledText {
  const problems = textProblems(rule);
  if (problems.length > 0) throw new PatternError(problems.map((p) => `${dotted(p.path)}: ${p.message}`).join("; "));
  const patterns = textPatterns(text).map((source) => {
    const re = compilePattern(source);
    return { re, groups: Object.keys(re.namedGroups()) };
  });
  return {
    patterns,
    keyGroups: rule.spec.key.filter((field) => patterns.every((p) => p.groups.includes(field))),
    trust: Object.entries(text.trust).map(([field, value]) => ({ field, values: typeof value === "string" ? [value] : value, miss: `trust:${field}` as const })),
  };
}

/** A message without the one line break that ends it, if it has one (some pipelines keep it; `$` would not match before it). */
function withoutLineEnd(message: string): string {
  if (!message.endsWith("\n")) return message;
  return message.endsWith("\r\n") ? message.slice(0, -2) : message.slice(0, -1);
}

/**
 * A text trigger on one entry: the first pattern that matches the whole
 * message (with every key group captured), then the trust selector. The
 * pattern is tried first so that an entry from an untrusted source that
 * looks like the trigger is told apart (`trust:FIELD`) from any other line.
 */
function matchText(text: CompiledText, event: LogEvent): Match | Miss {
  const message = withoutLineEnd(event.message);
  let found: Match | null = null;
  for (const { re, groups: names } of text.patterns) {
    const matcher = re.matcher(message);
    if (!matcher.find()) continue;
    const groups: Record<string, string> = {};
    for (const name of names) {
      const value = matcher.group(name);
      if (value !== null) groups[name] = value;
    }
    // A key group inside an optional part that did not take part: this line names no complete key.
    if (!text.keyGroups.every((k) => groups[k] !== undefined)) continue;
    const keys: Record<string, string> = {};
    for (const k of text.keyGroups) keys[k] = groups[k]!;
    found = { groups, keys };
    break;
  }
  if (found === null) return "pattern";
  for (const { field, values, miss } of text.trust) {
    const value = fieldValue(event, field);
    if (typeof value !== "string" || !values.includes(value)) return miss;
  }
  return found;
}

/** The value of a field of the entry: `resource.X` reads a resource label, anything else the structured payload. */
export function fieldValue(event: LogEvent, name: string): unknown {
  if (name.startsWith("resource.")) return own(event.resource, name.slice("resource.".length));
  if (name === "event") return event.event ?? undefined;
  return own(event.fields, name);
}

/** `record[name]` when the record itself has it: never an inherited property (`toString`, `constructor`) as a field's value. */
function own(record: Readonly<Record<string, unknown>>, name: string): unknown {
  return Object.hasOwn(record, name) ? record[name] : undefined;
}

function holds(condition: FieldCondition, value: unknown): boolean {
  if (typeof condition !== "object") return value === condition;
  const c = condition;
  if (c.exists !== undefined && (value !== undefined && value !== null) !== c.exists) return false;
  if (c.eq !== undefined && value !== c.eq) return false;
  if (c.ne !== undefined && value === c.ne) return false;
  if (c.in !== undefined && !c.in.some((v) => v === value)) return false;
  if (c.notIn !== undefined && c.notIn.some((v) => v === value)) return false;
  if (c.gt !== undefined || c.gte !== undefined || c.lt !== undefined || c.lte !== undefined) {
    if (typeof value !== "number") return false;
    if (c.gt !== undefined && !(value > c.gt)) return false;
    if (c.gte !== undefined && !(value >= c.gte)) return false;
    if (c.lt !== undefined && !(value < c.lt)) return false;
    if (c.lte !== undefined && !(value <= c.lte)) return false;
  }
  return true;
}

/**
 * Compiles one validated rule. Throws a `PatternError` for an invalid
 * pattern, and for any of `textProblems` (a text trigger is refused here too,
 * not only by the loader, so no way of building a rule skips its checks).
 */
export function compileRule(rule: RemediationRule): CompiledRule {
  const trigger = rule.spec.trigger.log;
  // A metric rule matches no log line (no needles: no candidate lines either); its evaluator fires it.
  if (trigger === undefined) return { name: rule.metadata.name, rule, needles: [], match: () => null, explain: () => "metric" };
  const events = trigger.event === undefined ? null : new Set(Array.isArray(trigger.event) ? trigger.event : [trigger.event]);
  const minRank = trigger.minSeverity === undefined ? -1 : severityRank(trigger.minSeverity);
  // Each condition with its Miss made once, so that explaining a miss allocates nothing.
  const where = Object.entries(trigger.where ?? {}).map(([name, condition]) => ({ name, condition, miss: `where:${name}` as const }));
  const pattern = trigger.pattern === undefined ? null : compilePattern(trigger.pattern);
  const patternGroups = pattern === null ? [] : Object.keys(pattern.namedGroups());
  const text = trigger.text === undefined ? null : compileText(rule, trigger.text);
  const explain = (event: LogEvent): Match | Miss => {
    if (events !== null && (event.event === null || !events.has(event.event))) return "event";
    if (severityRank(event.severity) < minRank) return "severity";
    for (const { name, condition, miss } of where) if (!holds(condition, fieldValue(event, name))) return miss;
    if (text !== null) return matchText(text, event);
    if (pattern === null) return { groups: {} };
    const matcher = pattern.matcher(event.message);
    if (!matcher.find()) return "pattern";
    const groups: Record<string, string> = {};
    for (const name of patternGroups) {
      const value = matcher.group(name);
      if (value !== null) groups[name] = value;
    }
    return { groups };
  };
  return {
    name: rule.metadata.name,
    rule,
    needles: events === null ? null : [...events].map((e) => JSON.stringify(e)),
    match(event) {
      const result = explain(event);
      return typeof result === "string" ? null : result;
    },
    explain,
  };
}

/** The union of the rules' needles, or null when any rule needs every line. */
export function combinedNeedles(rules: readonly CompiledRule[]): string[] | null {
  const all = new Set<string>();
  for (const rule of rules) {
    if (rule.needles === null) return null;
    for (const n of rule.needles) all.add(n);
  }
  return [...all];
}
