/**
 * Turns a validated rule into a matcher over `LogEvent`s, plus the literal
 * needles a raw line must contain to be worth parsing at all (scan.ts finds
 * them in the bytes before any JSON is decoded). Patterns run on RE2 (re2js):
 * linear time on any input, because log text is attacker-influenced.
 */
import { RE2JS } from "re2js";
import { severityRank, type LogEvent } from "../sources/event.js";
import type { FieldCondition, RemediationRule } from "./schema.js";

/** What a matching entry yields besides the fact that it matched. */
export interface Match {
  /** Named groups of the trigger's pattern (for the title; never for targeting). */
  groups: Record<string, string>;
}

/**
 * Why an entry did not match, in the order the trigger checks: `event` (not
 * one of its events), `severity` (below minSeverity), `where:FIELD` (that
 * condition failed; the first failing one), `pattern` (not found in the
 * message), `metric` (a metric rule matches no log entry).
 */
export type Miss = "event" | "severity" | `where:${string}` | "pattern" | "metric";

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

/** Compiles a trigger pattern with RE2, or throws a `PatternError` naming the problem. */
export function compilePattern(pattern: string): RE2JS {
  try {
    return RE2JS.compile(pattern);
  } catch (err) {
    throw new PatternError(`invalid RE2 pattern: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** The value of a field of the entry: `resource.X` reads a resource label, anything else the structured payload. */
export function fieldValue(event: LogEvent, name: string): unknown {
  if (name.startsWith("resource.")) return event.resource[name.slice("resource.".length)];
  if (name === "event") return event.event ?? undefined;
  return event.fields[name];
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

/** Compiles one validated rule. Throws a `PatternError` for an invalid pattern. */
export function compileRule(rule: RemediationRule): CompiledRule {
  const trigger = rule.spec.trigger.log;
  // A metric rule matches no log line (no needles: no candidate lines either); its evaluator fires it.
  if (trigger === undefined) return { name: rule.metadata.name, rule, needles: [], match: () => null, explain: () => "metric" };
  const events = trigger.event === undefined ? null : new Set(Array.isArray(trigger.event) ? trigger.event : [trigger.event]);
  const minRank = trigger.minSeverity === undefined ? -1 : severityRank(trigger.minSeverity);
  // Each condition with its Miss made once, so that explaining a miss allocates nothing.
  const where = Object.entries(trigger.where ?? {}).map(([name, condition]) => ({ name, condition, miss: `where:${name}` as const }));
  const pattern = trigger.pattern === undefined ? null : compilePattern(trigger.pattern);
  const groupNames = pattern === null ? [] : Object.keys(pattern.namedGroups());
  const explain = (event: LogEvent): Match | Miss => {
    if (events !== null && (event.event === null || !events.has(event.event))) return "event";
    if (severityRank(event.severity) < minRank) return "severity";
    for (const { name, condition, miss } of where) if (!holds(condition, fieldValue(event, name))) return miss;
    if (pattern === null) return { groups: {} };
    const matcher = pattern.matcher(event.message);
    if (!matcher.find()) return "pattern";
    const groups: Record<string, string> = {};
    for (const name of groupNames) {
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
