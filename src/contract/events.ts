/**
 * Log events: the names and the typed fields of every structured log line the
 * factory writes. Both halves import this file — the factory to write lines,
 * the operator to read them — and nothing else of each other.
 *
 * A line is one JSON object in Cloud Logging's structured format (`severity`,
 * `message`, `time`) plus `event` and the typed fields below. User-supplied
 * text (chat content, headers) never appears in `message` or in any field.
 */
import { z } from "zod";
import { UserId } from "./ids.js";

/** Every `event` value the factory writes. Defined once, here. */
export const FactoryEvent = {
  started: "factory.started",
  stopping: "factory.stopping",
  stopped: "factory.stopped",
  faultEnabled: "factory.fault_enabled",
  devMode: "factory.dev_mode",
  connectionOpened: "factory.connection_opened",
  connectionClosed: "factory.connection_closed",
  authFailed: "factory.auth_failed",
  resourceLimit: "factory.resource_limit",
  hardLimit: "factory.hard_limit",
  error: "factory.error",
  cleanup: "factory.cleanup",
  zombie: "factory.zombie",
  evicted: "factory.evicted",
  degraded: "factory.degraded",
  degradeExpired: "factory.degrade_expired",
  queued: "factory.queued",
  dequeued: "factory.dequeued",
  refused: "factory.refused",
  heartbeatTerminated: "factory.heartbeat_terminated",
  slowReader: "factory.slow_reader",
  originRefused: "factory.origin_refused",
  /** `--upstream`: the backend refused, did not answer or could not be reached when a client connected (src/factory/proxy.ts). */
  upstreamFailed: "factory.upstream_failed",
  /** Refusal-path lines of one user left out by the per-user rate limit, counted once per window (src/factory/refusal-log.ts). */
  refusalsSuppressed: "factory.refusals_suppressed",
} as const;
export type FactoryEvent = (typeof FactoryEvent)[keyof typeof FactoryEvent];

/** Cloud Logging severities, in ascending order. */
export const Severity = z.enum(["DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"]);
export type Severity = z.infer<typeof Severity>;

/**
 * The three lines of the original outage, word for word, so that log-based
 * alerts written for the old factory still match the new one.
 */
export const OutageMessage = {
  resourceLimit: (userId: string, managers: number, limit: number): string =>
    `Resource limit exceeded for user ${userId} (${managers}/${limit} managers) - attempting immediate cleanup`,
  hardLimit: (userId: string, managers: number, limit: number): string =>
    `HARD LIMIT: User ${userId} still over limit after cleanup (${managers}/${limit})`,
  factoryError: (userId: string, limit: number): string =>
    `UNEXPECTED FACTORY ERROR: User ${userId} has reached the maximum number of WebSocket managers (${limit}). Emergency cleanup attempted but limit still exceeded. This may indicate a resource leak or extremely high connection rate.`,
} as const;

/** The rungs of the cleanup ladder that the factory itself implements. */
export const FactoryRung = z.enum(["conservative", "probe", "force", "degrade"]);
export type FactoryRung = z.infer<typeof FactoryRung>;

/** Why a manager was removed. A closed set, so metric labels stay bounded. */
export const RemovalReason = z.enum([
  "closed", // its inactive flag was set (conservative)
  "connectionless", // no longer written (it could not happen); kept so that records of earlier versions still parse
  "idle", // nothing received for longer than the cutoff (conservative)
  "no_pong", // did not answer a ping within the probe timeout
  "socket_not_open", // the registry holds it but its socket is CLOSING/CLOSED (ghost)
  "send_buffer_stuck", // send buffer above the threshold and not draining
  "evicted", // force: oldest inbound activity
  "heartbeat", // did not answer the previous heartbeat ping
  "slow_reader", // did not read what it was sent: send buffer over the hard cap, or over the high-water mark too long (close 1008)
]);
export type RemovalReason = z.infer<typeof RemovalReason>;

/** Kinds of zombie the probe reports (`factory.zombie`, `zombies_detected_total{kind}`). */
export const ZombieKind = z.enum(["no_pong", "socket_not_open", "send_buffer_stuck"]);
export type ZombieKind = z.infer<typeof ZombieKind>;

/** Where a cleanup run came from. */
export const CleanupTrigger = z.enum(["in_process", "control"]);
export type CleanupTrigger = z.infer<typeof CleanupTrigger>;

/** Why an upgrade was refused (`factory.refused`). */
export const RefusalReason = z.enum(["limit", "queue_full", "queue_timeout", "shutting_down"]);
export type RefusalReason = z.infer<typeof RefusalReason>;

/**
 * The typed fields a factory log line may carry. Every one of them is written
 * by the factory's own code from its own state — never copied from client input
 * — so the operator may select whom to act on from them.
 */
export const FactoryLogFields = z.object({
  event: z.string(),
  userId: UserId.optional(),
  managers: z.number().int().nonnegative().optional(),
  limit: z.number().int().nonnegative().optional(),
  effectiveLimit: z.number().int().nonnegative().optional(),
  pod: z.string().optional(),
  rung: FactoryRung.optional(),
  trigger: CleanupTrigger.optional(),
  removed: z.number().int().nonnegative().optional(),
  managerId: z.string().optional(),
  reason: z.string().optional(),
  kind: ZombieKind.optional(),
  /** `factory.refusals_suppressed`: refusals whose lines were left out of the log in the window. */
  suppressed: z.number().int().nonnegative().optional(),
  /** `factory.refusals_suppressed`: every line left out in the window (refusal lines, and the at-limit lines before them). */
  suppressedLines: z.number().int().nonnegative().optional(),
  /** `factory.started`: the bound ports. */
  port: z.number().int().optional(),
  controlPort: z.number().int().optional(),
  /** `factory.started`: the metrics port, when it has its own. */
  metricsPort: z.number().int().optional(),
});
export type FactoryLogFields = z.infer<typeof FactoryLogFields>;

/** One factory log line as written: Cloud Logging structured format plus the fields. */
export const FactoryLogLine = FactoryLogFields.extend({
  severity: Severity,
  message: z.string(),
  time: z.string(),
});
export type FactoryLogLine = z.infer<typeof FactoryLogLine>;
