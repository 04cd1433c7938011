/**
 * Metrics of the scheduled jobs, on a Registry passed in (the operator's own:
 * no global registry). The `job` label is a job name from configuration
 * (sweep, digest, retention), never from log content.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { JobReport, SkippedRun } from "./scheduler.js";

/**
 * | metric | type | labels |
 * |---|---|---|
 * | `reclaim_operator_job_last_run_timestamp_seconds` | gauge | `job`: end of the last finished run |
 * | `reclaim_operator_job_last_success` | gauge | `job`: 1 when the last run succeeded, 0 when it failed |
 * | `reclaim_operator_job_last_success_timestamp_seconds` | gauge | `job`: end of the last run that succeeded |
 * | `reclaim_operator_job_last_duration_seconds` | gauge | `job` |
 * | `reclaim_operator_job_running` | gauge | `job`: 1 while a run is in progress |
 * | `reclaim_operator_job_runs_total` | counter | `job`, `result` (ok, error) |
 * | `reclaim_operator_job_skipped_total` | counter | `job`: runs skipped because the previous one was still going |
 *
 * The gauges of a job appear after its first run; the counters start at 0
 * for every job given to the Scheduler.
 */
export class JobMetrics {
  readonly lastRunTimestamp: Gauge<"job">;
  readonly lastSuccess: Gauge<"job">;
  readonly lastSuccessTimestamp: Gauge<"job">;
  readonly lastDuration: Gauge<"job">;
  readonly running: Gauge<"job">;
  readonly runs: Counter<"job" | "result">;
  readonly skips: Counter<"job">;

  constructor(registry: Registry) {
    const registers = [registry];
    this.lastRunTimestamp = new Gauge({
      name: "reclaim_operator_job_last_run_timestamp_seconds",
      help: "When the job's last run ended (Unix time).",
      labelNames: ["job"],
      registers,
    });
    this.lastSuccess = new Gauge({
      name: "reclaim_operator_job_last_success",
      help: "1 when the job's last run succeeded, 0 when it failed.",
      labelNames: ["job"],
      registers,
    });
    this.lastSuccessTimestamp = new Gauge({
      name: "reclaim_operator_job_last_success_timestamp_seconds",
      help: "When the job's last successful run ended (Unix time).",
      labelNames: ["job"],
      registers,
    });
    this.lastDuration = new Gauge({
      name: "reclaim_operator_job_last_duration_seconds",
      help: "How long the job's last run took.",
      labelNames: ["job"],
      registers,
    });
    this.running = new Gauge({ name: "reclaim_operator_job_running", help: "1 while a run of the job is in progress.", labelNames: ["job"], registers });
    this.runs = new Counter({
      name: "reclaim_operator_job_runs_total",
      help: "Finished runs of each scheduled job, by result (ok, error).",
      labelNames: ["job", "result"],
      registers,
    });
    this.skips = new Counter({
      name: "reclaim_operator_job_skipped_total",
      help: "Runs skipped because the previous run of the job was still going.",
      labelNames: ["job"],
      registers,
    });
  }

  /** Starts the counters of `jobs` at 0, so that `rate()` and `increase()` see the first run. Called by the Scheduler. */
  register(jobs: readonly string[]): void {
    for (const job of jobs) {
      this.runs.inc({ job, result: "ok" }, 0);
      this.runs.inc({ job, result: "error" }, 0);
      this.skips.inc({ job }, 0);
      this.running.set({ job }, 0);
    }
  }

  /** A run began. */
  started(job: string, _at: number): void {
    this.running.set({ job }, 1);
  }

  /** A run ended. */
  finished(report: JobReport): void {
    const job = report.job;
    this.running.set({ job }, 0);
    this.runs.inc({ job, result: report.result });
    this.lastRunTimestamp.set({ job }, report.finishedAt / 1000);
    this.lastDuration.set({ job }, report.durationMs / 1000);
    this.lastSuccess.set({ job }, report.result === "ok" ? 1 : 0);
    if (report.result === "ok") this.lastSuccessTimestamp.set({ job }, report.finishedAt / 1000);
  }

  /** A run was skipped. */
  skipped(skip: SkippedRun): void {
    this.skips.inc({ job: skip.job });
  }
}
