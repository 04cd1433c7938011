/**
 * The factory's Prometheus metrics, on a Registry of its own (no global
 * state, so tests start clean). No metric carries a user id as a label:
 * label values come from closed sets only.
 */
import { Counter, Gauge, Histogram, Registry as PromRegistry } from "prom-client";
import { registerDefaultMetrics } from "../contract/default-metrics.js";

/** Admission outcomes (`reclaim_factory_admissions_total{outcome}`). */
export type AdmissionOutcome = "admitted" | "after_cleanup" | "degraded" | "queued" | "refused";

/**
 * Why a client's WebSocket message was refused (`reclaim_factory_messages_rejected_total{reason}`):
 * answered with an `error` message (`binary`, `invalid_json`, `invalid_message`) or,
 * for a frame `ws` refuses, by closing the connection (`too_large` 1009,
 * `invalid_utf8` 1007, `protocol_error` 1002).
 */
export type MessageRejection = "binary" | "invalid_json" | "invalid_message" | "too_large" | "invalid_utf8" | "protocol_error";

const MESSAGE_REJECTIONS: readonly MessageRejection[] = ["binary", "invalid_json", "invalid_message", "too_large", "invalid_utf8", "protocol_error"];

/** Gauges that are read from live state when scraped. */
export interface GaugeSources {
  managers(): number;
  connections(): number;
  usersAtLimit(): number;
  queueLength(): number;
  /** What `phi` probe waits are multiplied by, from how close live pongs have come to them (ADR 38); none: 1. */
  probeStretch?(): number;
}

export class FactoryMetrics {
  readonly registry = new PromRegistry();
  readonly admissions: Counter<"outcome">;
  readonly cleanupRuns: Counter<"rung" | "trigger">;
  readonly managersRemoved: Counter<"rung" | "reason">;
  readonly zombiesDetected: Counter<"kind">;
  readonly probeDuration: Histogram;
  readonly heartbeatSweep: Histogram;
  readonly authFailures: Counter<"reason">;
  readonly controlRequests: Counter<"route" | "status">;
  readonly messagesRejected: Counter<"reason">;
  /** Connections an HTTP server answered with an error and closed before a handler saw a request (src/factory/http-limits.ts). */
  readonly httpRefused: Counter<"server" | "code">;
  /** Upgrades refused before authentication: `bad_handshake` (400) or `origin` (403). */
  readonly upgradesRejected: Counter<"reason">;
  /** Refusal-path log lines left out by the per-user rate limit (src/factory/refusal-log.ts), by event. */
  readonly logLinesSuppressed: Counter<"event">;
  /** `--upstream`: dials of the backend, by result (src/factory/proxy.ts). */
  readonly upstreamConnects: Counter<"result">;
  /** `--upstream`: proxied connections ended, by the side that ended them. */
  readonly upstreamCloses: Counter<"by">;
  /** `--upstream`: proxied connections held back because one side does not read, by the side that is slow. */
  readonly upstreamPaused: Gauge<"slow">;

  constructor(sources: GaugeSources, options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics !== false) registerDefaultMetrics(this.registry, { prefix: "reclaim_factory_" });
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    };
    gauge("reclaim_factory_managers", "Managers registered, across all users.", () => sources.managers());
    gauge("reclaim_factory_connections", "WebSocket connections whose socket is open.", () => sources.connections());
    gauge("reclaim_factory_users_at_limit", "Users holding as many managers as their effective limit, or more.", () =>
      sources.usersAtLimit(),
    );
    gauge("reclaim_factory_queue_length", "Upgrades waiting in the admission queue.", () => sources.queueLength());
    gauge(
      "reclaim_factory_probe_stretch",
      "What phi probe waits are multiplied by (1: not stretched): 1.75 x the share of its wait that 1 in 1,000 recent pongs used.",
      () => sources.probeStretch?.() ?? 1,
    );
    this.admissions = new Counter({
      name: "reclaim_factory_admissions_total",
      help: "Upgrade requests by admission outcome.",
      labelNames: ["outcome"],
      registers,
    });
    this.cleanupRuns = new Counter({
      name: "reclaim_factory_cleanup_runs_total",
      help: "Cleanup rung runs by rung and trigger (in_process or control).",
      labelNames: ["rung", "trigger"],
      registers,
    });
    this.managersRemoved = new Counter({
      name: "reclaim_factory_managers_removed_total",
      help: "Managers removed by cleanup, by rung and reason.",
      labelNames: ["rung", "reason"],
      registers,
    });
    this.zombiesDetected = new Counter({
      name: "reclaim_factory_zombies_detected_total",
      help: "Zombie connections found by the probe, by kind.",
      labelNames: ["kind"],
      registers,
    });
    this.probeDuration = new Histogram({
      name: "reclaim_factory_probe_duration_seconds",
      help: "Time one probe rung took.",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers,
    });
    this.heartbeatSweep = new Histogram({
      name: "reclaim_factory_heartbeat_sweep_seconds",
      help: "CPU-bound time of one heartbeat sweep over every connection.",
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5],
      registers,
    });
    this.authFailures = new Counter({
      name: "reclaim_factory_auth_failures_total",
      help: "Upgrades refused with 401, by reason.",
      labelNames: ["reason"],
      registers,
    });
    this.controlRequests = new Counter({
      name: "reclaim_factory_control_requests_total",
      help: "Control API requests by route and status code.",
      labelNames: ["route", "status"],
      registers,
    });
    this.messagesRejected = new Counter({
      name: "reclaim_factory_messages_rejected_total",
      help: "WebSocket messages refused, by reason (answered with an error, or the connection closed).",
      labelNames: ["reason"],
      registers,
    });
    this.httpRefused = new Counter({
      name: "reclaim_factory_http_refused_total",
      help: "Connections the chat or control HTTP server answered with an error and closed before a handler saw a request, by server and the error code answered.",
      labelNames: ["server", "code"],
      registers,
    });
    this.logLinesSuppressed = new Counter({
      name: "reclaim_factory_log_lines_suppressed_total",
      help: "Refusal-path log lines left out by the per-user rate limit, by event (each user's count is in a factory.refusals_suppressed line).",
      labelNames: ["event"],
      registers,
    });
    this.upgradesRejected = new Counter({
      name: "reclaim_factory_upgrades_rejected_total",
      help: "Upgrades refused before authentication: bad_handshake (400) or origin (403, not in --allowed-origins).",
      labelNames: ["reason"],
      registers,
    });
    for (const reason of ["bad_handshake", "origin"]) this.upgradesRejected.inc({ reason }, 0);
    this.upstreamConnects = new Counter({
      name: "reclaim_factory_upstream_connects_total",
      help: "With --upstream: dials of the backend for an admitted client, by result (ok, refused, unreachable, timeout, aborted).",
      labelNames: ["result"],
      registers,
    });
    this.upstreamPaused = new Gauge({
      name: "reclaim_factory_upstream_paused",
      help: "With --upstream: proxied connections held back because one side does not read: slow=client (its upstream is not read) or slow=upstream (its client is not read).",
      labelNames: ["slow"],
      registers,
    });
    for (const slow of ["client", "upstream"]) this.upstreamPaused.set({ slow }, 0);
    this.upstreamCloses = new Counter({
      name: "reclaim_factory_upstream_closes_total",
      help: "With --upstream: proxied connections ended, by the side that ended them (client, upstream, factory).",
      labelNames: ["by"],
      registers,
    });
    // Start every closed-set series at zero so dashboards and rate() see them from the first scrape.
    for (const outcome of ["admitted", "after_cleanup", "degraded", "queued", "refused"]) this.admissions.inc({ outcome }, 0);
    for (const reason of MESSAGE_REJECTIONS) this.messagesRejected.inc({ reason }, 0);
  }
}
