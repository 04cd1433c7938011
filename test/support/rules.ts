/**
 * Rules and log entries built in code, for operator tests.
 */
import { OutageMessage } from "../../src/contract/events.js";
import type { LogEvent } from "../../src/operator/sources/event.js";
import { compileRule, type CompiledRule } from "../../src/operator/rules/compile.js";
import { RemediationRule, type RemediationRuleInput } from "../../src/operator/rules/schema.js";

type SpecInput = RemediationRuleInput["spec"];

/** A compiled rule named `name` with `spec` over sensible defaults (HARD LIMIT trigger, probe → force). */
export function rule(name = "lockout", spec: Partial<SpecInput> = {}): CompiledRule {
  return compileRule(
    RemediationRule.parse({
      apiVersion: "reclaim.dev/v1",
      kind: "RemediationRule",
      metadata: { name },
      spec: {
        trigger: { log: { event: ["factory.hard_limit", "factory.error"], minSeverity: "ERROR" } },
        key: ["userId", "pod"],
        ladder: [{ rung: "probe" }, { rung: "force", params: { max: 2 } }],
        ...spec,
      },
    }),
  );
}

export const T0 = Date.parse("2026-11-26T12:00:00Z");

/** A factory HARD LIMIT entry for `userId` at `t` (ms). */
export function hardLimit(userId: string, t: number, pod = "factory-0"): LogEvent {
  return {
    time: t,
    severity: "ERROR",
    message: OutageMessage.hardLimit(userId, 20, 20),
    event: "factory.hard_limit",
    fields: { event: "factory.hard_limit", userId, managers: 20, limit: 20, pod },
    resource: {},
    insertId: null,
  };
}
