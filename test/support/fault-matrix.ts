/**
 * Shared pieces of the fault matrix (`test/faults/`): a short rule, lockouts
 * made with real zombie clients, HARD LIMIT lines, and the factory-side count
 * of rung runs that every row asserts on.
 */
import { isRefusal } from "../../src/demo/clients.js";
import type { TestFactory } from "./factory.js";

/**
 * One rung (`probe`, 200 ms for pongs) with a short call timeout, a short
 * settle, and the default guards: a lockout becomes one incident that the
 * probe resolves.
 */
export function faultRule(options: { name?: string; rungTimeout?: string; threshold?: string; extraRungs?: string[] } = {}): string {
  return `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: ${options.name ?? "lockout"} }
spec:
  trigger: { log: { event: [factory.hard_limit, factory.error], minSeverity: ERROR } }
  threshold: ${options.threshold ?? "{ count: 1, window: 1m }"}
  key: [userId, pod]
  ladder:
    - { rung: probe, timeout: ${options.rungTimeout ?? "2s"}, params: { timeoutMs: 200 } }
${(options.extraRungs ?? []).map((r) => `    - ${r}\n`).join("")}  verify: { settle: 100ms, timeout: 2s }
  guards: { cooldown: 10m }
  incident: { severity: high, title: "Chat lockout: user {{userId}} on {{pod}}" }
`;
}

/** Fills `userId`'s slots with clients that never answer pings, then asserts the next connection is refused (HTTP 503). */
export async function lockOut(factory: TestFactory, userId: string, slots: number): Promise<void> {
  for (let i = 0; i < slots; i++) await factory.open(userId, "no-pong");
  const refused = await factory.attempt(userId);
  if (!isRefusal(refused) || refused.status !== 503) throw new Error(`expected ${userId} to be refused with 503`);
}

/** The rungs the factory actually ran for `userId` on the control API's behalf (its `factory.cleanup` lines with trigger=control). */
export function rungsRun(factory: TestFactory, userId: string): string[] {
  return factory.events("factory.cleanup", userId).flatMap((l) => (l.trigger === "control" ? [String(l.rung)] : []));
}

/** A factory HARD LIMIT line as the factory writes it, at `time` (ms since the epoch). */
export function hardLimitLine(userId: string, time: number, pod = "test-factory-0"): string {
  return `${JSON.stringify({
    severity: "ERROR",
    time: new Date(time).toISOString(),
    pod,
    event: "factory.hard_limit",
    userId,
    managers: 20,
    limit: 20,
    message: `HARD LIMIT: User ${userId} still over limit after cleanup (20/20)`,
  })}\n`;
}
