/**
 * A notice as the notifier builds one for an incident, for outbox tests:
 * `subject` at `atMs`, the rest fixed unless `over` says otherwise.
 */
import type { Notice } from "../../src/operator/notify/types.js";

/** When the notices' incident started. */
export const NOTICE_T0 = Date.parse("2026-11-26T12:00:00Z");

export function notice(subject: string, atMs: number, over: Partial<Notice> = {}): Notice {
  return {
    subject,
    kind: "incident",
    rule: "lockout",
    userId: "105945141827451681156",
    pod: "factory-0",
    namespace: "chat",
    severity: "high",
    status: "open",
    needsHuman: false,
    firing: true,
    acknowledged: null,
    summary: `Chat lockout (${subject.slice(0, 40)})`,
    description: "A user is at the manager limit.",
    runbookUrl: "https://runbooks.example/lockout",
    link: null,
    startsAt: new Date(NOTICE_T0).toISOString(),
    endsAt: null,
    at: new Date(atMs).toISOString(),
    ...over,
  };
}
