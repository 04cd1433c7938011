/**
 * The operator's Prometheus metrics, on a Registry of its own. Labels come
 * from closed sets or from configuration (rule and source names), never from
 * log content.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { registerDefaultMetrics } from "../contract/default-metrics.js";

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly linesRead: Counter<"source">;
  readonly linesMalformed: Counter<"source">;
  /** Lines read by shape (sources/shapes.ts: a closed set), per source. */
  readonly linesByShape: Counter<"source" | "shape">;
  /** Times most of a source's recent lines were not understood (an ERROR logged each time, at most once a minute). */
  readonly sourceNotUnderstood: Counter<"source">;
  readonly sourceLag: Gauge<"source">;
  readonly ruleMatches: Counter<"rule">;
  readonly entriesDropped: Counter<"rule" | "reason">;
  readonly triggers: Counter<"rule" | "outcome" | "reason">;
  readonly suppressedKeys: Counter<"rule" | "reason">;
  readonly suppressedUnlisted: Counter<"rule" | "reason">;
  readonly rungs: Counter<"rung" | "result">;
  readonly incidents: Counter<"status">;
  readonly openIncidents: Gauge;
  readonly detectToResolved: Histogram;
  readonly rulesLoaded: Gauge;
  readonly ruleReloads: Counter<"result">;
  readonly storeErrors: Counter;
  readonly storeWaiting: Gauge;
  readonly detectorEvictions: Counter;
  readonly sourceSuppressed: Counter<"source" | "reason">;
  readonly sourceReconnects: Counter<"source">;
  readonly sourceDuplicates: Counter<"source">;
  readonly sourceConnected: Gauge<"source">;
  readonly triggerErrors: Counter<"rule">;
  readonly sourceErrors: Counter<"source">;
  readonly terms: Counter<"end">;
  /** 1 while on-call's pause is in force (ADR 22). */
  readonly paused: Gauge;
  readonly silencesActive: Gauge;
  readonly silencesSkipped: Counter;
  readonly silenceErrors: Counter;
  /** Admission checks of a user a guard held back (ADR 25), by rule and result: refused, admitted, unknown, capped. */
  readonly refusalChecks: Counter<"rule" | "result">;
  /** 1 while a rule's circuit breaker is open, per rule. */
  readonly circuitOpen: Gauge<"rule">;
  /** Circuit breakers opening and closing, per rule. */
  readonly circuitTransitions: Counter<"rule" | "to">;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics !== false) registerDefaultMetrics(this.registry, { prefix: "reclaim_operator_" });
    this.linesRead = new Counter({ name: "reclaim_operator_lines_read_total", help: "Log lines read, per source.", labelNames: ["source"], registers });
    this.linesMalformed = new Counter({
      name: "reclaim_operator_lines_malformed_total",
      help: "Candidate lines that were not a usable JSON log entry (counted and skipped), per source.",
      labelNames: ["source"],
      registers,
    });
    this.linesByShape = new Counter({
      name: "reclaim_operator_lines_by_shape_total",
      help: "Log lines read by shape (json, log_entry, gcloud_array, json_not_entry, json_fragment, text, blank), per source.",
      labelNames: ["source", "shape"],
      registers,
    });
    this.sourceNotUnderstood = new Counter({
      name: "reclaim_operator_source_not_understood_total",
      help: "Times more than half of a source's last 1000 non-blank lines were not log entries it can read; an ERROR is logged each time, at most once a minute.",
      labelNames: ["source"],
      registers,
    });
    this.sourceLag = new Gauge({
      name: "reclaim_operator_source_lag_seconds",
      help: "Now minus the time of the newest entry read, per source.",
      labelNames: ["source"],
      registers,
    });
    this.ruleMatches = new Counter({ name: "reclaim_operator_rule_matches_total", help: "Entries matched, per rule.", labelNames: ["rule"], registers });
    this.entriesDropped = new Counter({
      name: "reclaim_operator_entries_dropped_total",
      help: "Matched entries that did not count: duplicate (seen already, or no newer than what an incident of its key acted on), unkeyed (no valid user id), stale (older than maxAge), untrusted (a text rule's line from a source its trust does not admit).",
      labelNames: ["rule", "reason"],
      registers,
    });
    this.triggers = new Counter({
      name: "reclaim_operator_triggers_total",
      help: "Thresholds reached, by outcome (acted, suppressed) and the guard's reason.",
      labelNames: ["rule", "outcome", "reason"],
      registers,
    });
    this.suppressedKeys = new Counter({
      name: "reclaim_operator_suppressed_keys_total",
      help: "Keys (users) a rule-wide guard stopped that had no incident of their own, listed in a rollup record; each counted once per rule, reason and hour (ADR 12).",
      labelNames: ["rule", "reason"],
      registers,
    });
    this.suppressedUnlisted = new Counter({
      name: "reclaim_operator_suppressed_unlisted_total",
      help: "Suppressed triggers of keys not listed in any rollup record because the hour's records were full; the operator's log names them.",
      labelNames: ["rule", "reason"],
      registers,
    });
    this.rungs = new Counter({ name: "reclaim_operator_rungs_total", help: "Rungs run, by rung and result.", labelNames: ["rung", "result"], registers });
    this.incidents = new Counter({
      name: "reclaim_operator_incidents_total",
      help: "Incidents by the status they ended in (and opened).",
      labelNames: ["status"],
      registers,
    });
    this.openIncidents = new Gauge({ name: "reclaim_operator_open_incidents", help: "Incidents whose ladder is running now in this replica (0 on a replica that does not lead).", registers });
    this.detectToResolved = new Histogram({
      name: "reclaim_operator_detect_to_resolved_seconds",
      help: "From detection to verified recovery.",
      buckets: [0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 120],
      registers,
    });
    this.rulesLoaded = new Gauge({ name: "reclaim_operator_rules_loaded", help: "Rules in force.", registers });
    this.ruleReloads = new Counter({
      name: "reclaim_operator_rule_reloads_total",
      help: "Rule reloads, by result (ok, invalid: the last good set stays).",
      labelNames: ["result"],
      registers,
    });
    this.storeErrors = new Counter({
      name: "reclaim_operator_store_errors_total",
      help: "Incident records that could not be written (the operator does not act without a record).",
      registers,
    });
    this.storeWaiting = new Gauge({
      name: "reclaim_operator_store_waiting",
      help: "Incidents held, not acted on, until the store can record them (new ones and ladders between steps); above 0 means the store is failing.",
      registers,
    });
    this.sourceSuppressed = new Counter({
      name: "reclaim_operator_source_suppressed_entries_total",
      help: "Entries Cloud Logging left out of the tail, by reason (RATE_LIMIT: over the tail quota; NOT_CONSUMED: read too slowly).",
      labelNames: ["source", "reason"],
      registers,
    });
    this.sourceReconnects = new Counter({
      name: "reclaim_operator_source_reconnects_total",
      help: "Times a streaming source connected again after its stream ended or failed.",
      labelNames: ["source"],
      registers,
    });
    this.sourceDuplicates = new Counter({
      name: "reclaim_operator_source_duplicates_total",
      help: "Entries a streaming source received twice (resume overlap, catch-up) and dropped.",
      labelNames: ["source"],
      registers,
    });
    this.sourceConnected = new Gauge({
      name: "reclaim_operator_source_connected",
      help: "1 while a streaming source has its stream open.",
      labelNames: ["source"],
      registers,
    });
    this.triggerErrors = new Counter({
      name: "reclaim_operator_trigger_errors_total",
      help: "Attempts to handle a trigger that failed (a pod lookup or an incident read); the trigger is tried again with backoff, never dropped.",
      labelNames: ["rule"],
      registers,
    });
    this.sourceErrors = new Counter({
      name: "reclaim_operator_source_errors_total",
      help: "Times the log tail failed and was started again with backoff (from the last position handled).",
      labelNames: ["source"],
      registers,
    });
    this.terms = new Counter({
      name: "reclaim_operator_terms_total",
      help: "Leadership terms ended, by why: leadership_lost or stopped.",
      labelNames: ["end"],
      registers,
    });
    this.detectorEvictions = new Counter({
      name: "reclaim_operator_detector_evictions_total",
      help: "Detection windows evicted because the key limit was reached.",
      registers,
    });
    this.paused = new Gauge({ name: "reclaim_operator_paused", help: "1 while automation is paused (reclaim pause), else 0.", registers });
    this.silencesActive = new Gauge({ name: "reclaim_operator_silences_active", help: "Silences in force now (the pause not included).", registers });
    this.refusalChecks = new Counter({
      name: "reclaim_operator_refusal_checks_total",
      help: "Admission checks of users a guard held back, by result: refused (a held record), admitted, unknown (the factory did not answer: held), capped (too many held records this hour).",
      labelNames: ["rule", "result"],
      registers,
    });
    this.circuitOpen = new Gauge({ name: "reclaim_operator_circuit_open", help: "1 while the rule's circuit breaker is open, else 0.", labelNames: ["rule"], registers });
    this.circuitTransitions = new Counter({
      name: "reclaim_operator_circuit_transitions_total",
      help: "Circuit breakers opening (to=open) and closing (to=closed), per rule.",
      labelNames: ["rule", "to"],
      registers,
    });
    this.silencesSkipped = new Counter({
      name: "reclaim_operator_silences_skipped_total",
      help: "Silence records skipped as unreadable or invalid (each counted once per version seen).",
      registers,
    });
    this.silenceErrors = new Counter({
      name: "reclaim_operator_silence_errors_total",
      help: "Reads of the silences and the pause that failed; the last records read stay in force.",
      registers,
    });
  }
}
