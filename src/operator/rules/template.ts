/**
 * Incident titles: `{{field}}` substitution only — no expressions, no code.
 * `{{rule}}` is the rule's name, `{{match.NAME}}` a named group of the
 * trigger's pattern, anything else a key or structured field of the entry.
 *
 * Also what a rule's title can be filled in from (`titleSources`), so that
 * `rules validate` refuses a placeholder nothing provides: it would show "?"
 * on every incident, which on-call only finds out at the first lockout.
 */
import { FactoryEvent, type FactoryLogFields } from "../../contract/events.js";
import type { FieldCondition, RemediationRule } from "./schema.js";

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*\}\}/g;
/** Longest text one placeholder contributes: log fields are attacker-influenced. */
const MAX_VALUE = 80;

/** Renders `template`, replacing each placeholder by its value ("?" when absent). */
export function renderTitle(template: string, values: Record<string, unknown>): string {
  return template.replace(PLACEHOLDER, (_all, name: string) => {
    const value = values[name];
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") return "?";
    // Control characters could forge lines in a Markdown or terminal rendering.
    // eslint-disable-next-line no-control-regex -- matching control characters is the point
    const text = String(value).replace(/[\u0000-\u001f\u007f]/g, " ");
    return text.length > MAX_VALUE ? `${text.slice(0, MAX_VALUE)}…` : text;
  });
}

/** One `{{name}}` of a template. */
export interface Placeholder {
  /** What is between the braces, e.g. `userId`, `match.user`. */
  name: string;
  /** Where its first `{` is in the template (0-based). */
  index: number;
  /** The placeholder as written, spaces included: `{{ userId }}`. */
  text: string;
}

/** The placeholders of `template`, in order. */
export function placeholders(template: string): Placeholder[] {
  return [...template.matchAll(PLACEHOLDER)].map((m) => ({ name: m[1]!, index: m.index, text: m[0] }));
}

type FieldName = Exclude<keyof FactoryLogFields, "event">;

/**
 * The typed fields the factory writes on each event (src/factory: every
 * `log.<level>(FactoryEvent.X, { … })` call), besides `event` and the `pod`
 * every line carries. An event written from more than one place lists the
 * union. test/operator/rules/title-fields.test.ts checks this table against
 * the lines a real factory writes.
 */
export const FACTORY_EVENT_FIELDS: Readonly<Record<FactoryEvent, readonly FieldName[]>> = {
  [FactoryEvent.started]: ["limit", "port", "controlPort", "metricsPort"],
  [FactoryEvent.stopping]: [],
  [FactoryEvent.stopped]: [],
  [FactoryEvent.faultEnabled]: ["reason"],
  [FactoryEvent.devMode]: [],
  [FactoryEvent.connectionOpened]: ["userId", "managerId", "managers", "limit"],
  [FactoryEvent.connectionClosed]: ["userId", "managerId", "reason"],
  [FactoryEvent.authFailed]: ["reason"],
  [FactoryEvent.resourceLimit]: ["userId", "managers", "limit"],
  [FactoryEvent.hardLimit]: ["userId", "managers", "limit", "effectiveLimit"],
  [FactoryEvent.error]: ["userId", "managerId", "managers", "limit", "effectiveLimit"],
  [FactoryEvent.cleanup]: ["userId", "rung", "trigger", "removed", "managers", "limit", "effectiveLimit"],
  [FactoryEvent.zombie]: ["userId", "managerId", "reason", "managers", "limit", "kind"],
  [FactoryEvent.evicted]: ["userId", "managerId", "reason", "managers", "limit"],
  [FactoryEvent.degraded]: ["userId", "managers", "limit", "effectiveLimit"],
  [FactoryEvent.degradeExpired]: ["userId", "managers", "limit", "effectiveLimit"],
  [FactoryEvent.queued]: ["userId", "managers", "limit", "effectiveLimit"],
  [FactoryEvent.dequeued]: ["userId", "managers", "limit"],
  [FactoryEvent.refused]: ["userId", "reason", "managers", "limit"],
  [FactoryEvent.heartbeatTerminated]: ["userId", "managerId", "reason", "managers", "limit"],
  [FactoryEvent.slowReader]: ["userId", "managerId", "reason", "managers", "limit"],
  [FactoryEvent.originRefused]: ["reason"],
  [FactoryEvent.upstreamFailed]: ["userId", "managerId", "reason"],
  [FactoryEvent.refusalsSuppressed]: ["userId", "suppressed", "suppressedLines"],
};

/** Fields on every factory line, whatever its event. */
const EVERY_FACTORY_LINE = ["event", "pod"] as const;

/**
 * Fields every trigger of a metric rule carries, whether the metric evaluator
 * or the sweep raised it (src/operator/detect/metric-evaluator.ts,
 * src/operator/jobs/sweep.ts, synthetic.ts): the user, and the user's managers
 * and limit. Not `pod` (the sweep of a `--control` factory knows none) nor
 * `value` (the sweep has no sample).
 */
const METRIC_TRIGGER_FIELDS = ["userId", "managers", "limit"] as const;

/** What a rule's title placeholders can be filled in from. */
export interface TitleSources {
  /** Names that are always provided (key fields, `rule`, fields every matched entry carries). */
  provided: ReadonlySet<string>;
  /**
   * Null when `provided` is all there is (the entries are the factory's own,
   * of known events): anything else would always show "?". Otherwise why
   * other names may be provided too, so that a title naming one can only be
   * warned about.
   */
  open: string | null;
  /** The events the rule's entries can have (`event`, narrowed by a `where` on `event`); null when any. */
  events: readonly string[] | null;
}

/** Whether a `where` condition holds only for an entry that has the field. */
function requiresPresence(condition: FieldCondition): boolean {
  if (typeof condition !== "object") return true;
  return (
    condition.exists === true ||
    condition.eq !== undefined ||
    condition.in !== undefined ||
    condition.gt !== undefined ||
    condition.gte !== undefined ||
    condition.lt !== undefined ||
    condition.lte !== undefined
  );
}

/** The values a `where` condition on `event` allows, or null when it allows any. */
function eventsAllowed(condition: FieldCondition | undefined): string[] | null {
  if (condition === undefined) return null;
  if (typeof condition === "string") return [condition];
  if (typeof condition !== "object") return [];
  if (typeof condition.eq === "string") return [condition.eq];
  if (condition.in !== undefined) return condition.in.filter((v): v is string => typeof v === "string");
  return null;
}

/**
 * What `rule`'s title can be filled in from. The title of an incident is
 * rendered from the last entry's fields, the key and the rule's name
 * (src/operator/incidents/record.ts, `titleOf`); resource labels reach it
 * only through the key.
 */
export function titleSources(rule: RemediationRule): TitleSources {
  const { spec } = rule;
  const provided = new Set<string>(["rule", ...spec.key]);
  if (spec.trigger.metric !== undefined) {
    for (const name of METRIC_TRIGGER_FIELDS) provided.add(name);
    return {
      provided,
      open: "a metric rule's entries also carry the labels of its query's series, which are not known before it runs",
      events: null,
    };
  }
  const log = spec.trigger.log!;
  const where = log.where ?? {};
  for (const [name, condition] of Object.entries(where)) if (!name.startsWith("resource.") && requiresPresence(condition)) provided.add(name);
  const listed = log.event === undefined ? null : typeof log.event === "string" ? [log.event] : log.event;
  const byWhere = eventsAllowed(where.event);
  const events = listed === null ? byWhere : byWhere === null ? listed : listed.filter((e) => byWhere.includes(e));
  if (events === null) return { provided, open: "the trigger names no event, so the fields of the entries it matches are not known", events };
  if (events.length > 0) provided.add("event");
  const foreign = events.filter((e) => !Object.hasOwn(FACTORY_EVENT_FIELDS, e));
  for (const event of events) {
    if (!Object.hasOwn(FACTORY_EVENT_FIELDS, event)) continue;
    for (const name of [...EVERY_FACTORY_LINE, ...FACTORY_EVENT_FIELDS[event as FactoryEvent]]) provided.add(name);
  }
  if (foreign.length > 0) {
    return { provided, open: `the factory never writes ${foreign.map((e) => JSON.stringify(e)).join(", ")}, so the fields of those entries are not known`, events };
  }
  return { provided, open: null, events };
}
