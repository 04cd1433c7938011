/**
 * Triggers that do not come from a log line: a metric rule that held, or the
 * scheduled sweep finding a user at their limit. They enter the same path as
 * log triggers (Engine.onTrigger: guards, a persisted incident, the ladder),
 * with a synthetic evidence entry that says where they came from.
 */
import { isUserId } from "../../contract/ids.js";
import type { Trigger } from "./detector.js";
import type { LogEvent } from "../sources/event.js";
import type { CompiledRule } from "../rules/compile.js";

export interface SyntheticSource {
  /** `metric` or `sweep`: the evidence entry's event is `reclaim.metric` / `reclaim.sweep`. */
  kind: "metric" | "sweep";
  /** What was seen, for the evidence message, e.g. `max(reclaim_factory_users_at_limit) = 1 > 0 for 2m`. */
  message: string;
  /** Labels or fields that describe it (scalar values only). */
  fields: Record<string, string | number | boolean>;
}

/**
 * A trigger of `rule` for `userId` on `pod` at time `at`, or null when the
 * user id is not valid (the factory's control API said it, but it is still
 * checked before anyone acts on it).
 */
export function syntheticTrigger(
  rule: CompiledRule,
  target: { userId: string; pod: string | null; namespace: string | null },
  at: number,
  source: SyntheticSource,
): Trigger | null {
  if (!isUserId(target.userId)) return null;
  const event: LogEvent = {
    time: at,
    severity: "WARNING",
    message: source.message,
    event: `reclaim.${source.kind}`,
    fields: { ...source.fields, userId: target.userId, ...(target.pod === null ? {} : { pod: target.pod }) },
    resource: target.namespace === null ? {} : { namespace_name: target.namespace },
    insertId: null,
  };
  const key: Record<string, string> = {};
  for (const name of rule.rule.spec.key) {
    if (name === "userId") key[name] = target.userId;
    else if (name === "pod" && target.pod !== null) key[name] = target.pod;
    else if (typeof event.fields[name] === "string" || typeof event.fields[name] === "number") key[name] = String(event.fields[name]);
    else key[name] = "";
  }
  return {
    rule,
    key,
    keyString: Object.entries(key)
      .map(([k, v]) => `${k}=${v}`)
      .join(","),
    userId: target.userId,
    pod: target.pod,
    namespace: target.namespace,
    entries: [event],
    total: 1,
    firstAt: at,
    at,
    groups: {},
  };
}
