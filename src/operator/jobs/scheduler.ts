/**
 * The operator's scheduled jobs (the sweep, the digest, retention) on
 * node-cron. Every cron expression is checked when the Scheduler is built, so
 * a typo stops the operator at start instead of silently never running. One
 * job never runs twice at once: a tick (or `runNow`) that comes while the
 * previous run is still going is skipped and counted. A run that throws is
 * caught, reported through `onRun` and recorded; the next tick runs as usual.
 *
 * The Scheduler keeps, per job, what the operator exports as metrics
 * (metrics.ts here) and may serve on an endpoint: the last run's start and
 * end, its result and one-line message, and run counts.
 */
import cron, { type ScheduledTask } from "node-cron";
import { systemClock, type Clock } from "../../contract/clock.js";
import type { JobMetrics } from "./metrics.js";

/** Stable codes of the errors the Scheduler throws. Tests and callers branch on these, not on wording. */
export const SchedulerErrorCode = {
  /** A cron expression or time zone that node-cron would not run. A TypeError. */
  schedule: "ERR_RECLAIM_SCHEDULE",
  /** A job without a usable name, a duplicate name, or without a `run` function. A TypeError. */
  invalidJob: "ERR_RECLAIM_JOB_INVALID",
  /** `runNow` or `status` for a name that is no job. A TypeError. */
  unknownJob: "ERR_RECLAIM_JOB_UNKNOWN",
} as const;
export type SchedulerErrorCode = (typeof SchedulerErrorCode)[keyof typeof SchedulerErrorCode];

/** A bad schedule or job definition; `code` says which (SchedulerErrorCode). */
export class SchedulerError extends TypeError {
  constructor(
    readonly code: SchedulerErrorCode,
    message: string,
    readonly job: string | null,
  ) {
    super(message);
    this.name = "SchedulerError";
  }
}

/** One scheduled job. */
export interface Job {
  /** Names the job in logs, metrics (the `job` label) and `runNow`: lowercase letters, digits, `-` and `_`. */
  readonly name: string;
  /** A node-cron expression: 5 fields (minute first), or 6 with seconds first; `@daily` style nicknames too. */
  readonly schedule: string;
  /**
   * Does the work and resolves to a one-line outcome (`removed 12 records
   * older than 30 days`); throws when the job failed. `signal` is aborted
   * when the Scheduler stops: a long job should stop between steps.
   */
  run(signal: AbortSignal): Promise<string>;
}

/** How a run ended. */
export type JobResult = "ok" | "error";

/** What triggered a run. */
export type RunTrigger = "schedule" | "manual";

/** One finished run. Times are ms since the epoch, from the Scheduler's clock. */
export interface JobReport {
  job: string;
  trigger: RunTrigger;
  result: JobResult;
  /** The job's outcome, or the error's message: one line, at most MAX_MESSAGE characters. */
  message: string;
  startedAt: number;
  finishedAt: number;
  durationMs: number;
  /** What the job threw (null when it succeeded). */
  error: unknown;
}

/** A run that did not happen because the previous run of the job was still going. */
export interface SkippedRun {
  job: string;
  trigger: RunTrigger;
  result: "skipped";
  reason: "running";
  at: number;
}

/** What the Scheduler knows about one job. */
export interface JobStatus {
  name: string;
  schedule: string;
  /** A run is in progress. */
  running: boolean;
  /** Start of the run in progress, else of the last one; null before the first. */
  lastStartedAt: number | null;
  /** The last finished run, ok or not; null before the first. */
  last: JobReport | null;
  /** End of the last run that succeeded. */
  lastSuccessAt: number | null;
  /** Finished runs by result. */
  runs: Record<JobResult, number>;
  /** Ticks and `runNow` calls skipped because a run was in progress. */
  skipped: number;
  /** When node-cron will next run it (null while the Scheduler is stopped). */
  nextRunAt: number | null;
}

/** Options of `Scheduler`; every one has a default. */
export interface SchedulerOptions {
  /** IANA time zone the expressions are read in. Default `UTC`, so `0 6 * * *` means 06:00 UTC on every host. */
  timezone?: string;
  /** Times of runs, for status and metrics. Default the system clock. */
  clock?: Clock;
  /** Called after every run, ok or not (log it: failures are not logged elsewhere). A throw here is ignored. */
  onRun?: (report: JobReport) => void;
  /** Called for each skipped run. A throw here is ignored. */
  onSkip?: (skip: SkippedRun) => void;
  /** node-cron's own warnings and errors (a missed tick when the event loop was blocked). Default: dropped. */
  onWarning?: (message: string) => void;
  /** Metrics to keep up to date (see metrics.ts). Default none. */
  metrics?: JobMetrics;
  /** How long `stop()` waits for runs in progress after aborting them. Default 10000 ms. */
  stopTimeoutMs?: number;
}

/** Longest outcome or error message kept (characters). */
export const MAX_MESSAGE = 500;

const JOB_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
const DEFAULTS = { timezone: "UTC", stopTimeoutMs: 10_000 } as const;

interface Entry {
  job: Job;
  status: Omit<JobStatus, "nextRunAt">;
  /** The run in progress, if any. */
  current: { promise: Promise<JobReport>; abort: AbortController } | null;
  task: ScheduledTask | null;
}

/**
 * Runs jobs on cron schedules. Build it with every job (expressions are
 * validated here: a bad one throws SchedulerError `ERR_RECLAIM_SCHEDULE`
 * naming the job), then `start()`; `stop()` on shutdown.
 */
export class Scheduler {
  private readonly entries = new Map<string, Entry>();
  private readonly timezone: string;
  private readonly clock: Clock;
  private readonly stopTimeoutMs: number;
  private started = false;

  constructor(
    jobs: readonly Job[],
    private readonly options: SchedulerOptions = {},
  ) {
    this.timezone = options.timezone ?? DEFAULTS.timezone;
    this.clock = options.clock ?? systemClock;
    this.stopTimeoutMs = options.stopTimeoutMs ?? DEFAULTS.stopTimeoutMs;
    if (!Number.isFinite(this.stopTimeoutMs) || this.stopTimeoutMs < 0) {
      throw new TypeError(`Scheduler: stopTimeoutMs must be a non-negative number of ms, got ${String(this.stopTimeoutMs)}`);
    }
    checkTimezone(this.timezone);
    for (const job of jobs) {
      checkJob(job, this.entries);
      checkSchedule(job.name, job.schedule);
      this.entries.set(job.name, {
        job,
        status: { name: job.name, schedule: job.schedule, running: false, lastStartedAt: null, last: null, lastSuccessAt: null, runs: { ok: 0, error: 0 }, skipped: 0 },
        current: null,
        task: null,
      });
    }
    options.metrics?.register(jobs.map((j) => j.name));
  }

  /** The jobs' names, in the order given. */
  get names(): string[] {
    return [...this.entries.keys()];
  }

  /** Starts every job's schedule. Calling it again while started does nothing. */
  start(): void {
    if (this.started) return;
    this.started = true;
    for (const entry of this.entries.values()) {
      const task = cron.createTask(entry.job.schedule, () => this.execute(entry, "schedule"), {
        name: `reclaim-${entry.job.name}`,
        timezone: this.timezone,
        noOverlap: true,
        logger: this.cronLogger(),
      });
      // node-cron skipped a tick because its previous scheduled run is still going.
      task.on("execution:overlap", () => {
        this.skipped(entry, "schedule");
      });
      entry.task = task;
      void task.start();
    }
  }

  /**
   * Stops the schedules, aborts the runs in progress (their `signal`) and
   * waits for them to end, at most `stopTimeoutMs`. `runNow` still works
   * afterwards; `start()` starts the schedules again.
   */
  async stop(): Promise<void> {
    this.started = false;
    const running: Promise<JobReport>[] = [];
    for (const entry of this.entries.values()) {
      const task = entry.task;
      entry.task = null;
      if (task !== null) await task.destroy();
      if (entry.current !== null) {
        entry.current.abort.abort(new Error("the scheduler is stopping"));
        running.push(entry.current.promise);
      }
    }
    if (running.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled(running),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /**
   * Runs `name` now, outside its schedule, and resolves when it has finished
   * (never rejects for a failed run: the report says so). When a run of the
   * job is already in progress, nothing runs and a SkippedRun is returned.
   * Throws SchedulerError `ERR_RECLAIM_JOB_UNKNOWN` for an unknown name.
   */
  runNow(name: string): Promise<JobReport | SkippedRun> {
    return this.execute(this.entry(name), "manual");
  }

  /** Every job's status, in the order given. */
  status(): JobStatus[];
  /** One job's status; throws SchedulerError `ERR_RECLAIM_JOB_UNKNOWN` for an unknown name. */
  status(name: string): JobStatus;
  status(name?: string): JobStatus | JobStatus[] {
    const view = (e: Entry): JobStatus => {
      const next = e.task?.getNextRun() ?? null;
      return { ...e.status, runs: { ...e.status.runs }, nextRunAt: next === null ? null : next.getTime() };
    };
    return name === undefined ? [...this.entries.values()].map(view) : view(this.entry(name));
  }

  private entry(name: string): Entry {
    const entry = this.entries.get(name);
    if (entry === undefined) {
      throw new SchedulerError(SchedulerErrorCode.unknownJob, `no scheduled job named ${JSON.stringify(name)} (jobs: ${this.names.join(", ") || "none"})`, null);
    }
    return entry;
  }

  private execute(entry: Entry, trigger: RunTrigger): Promise<JobReport | SkippedRun> {
    if (entry.current !== null) return Promise.resolve(this.skipped(entry, trigger));
    const abort = new AbortController();
    const startedAt = this.clock.now();
    entry.status.running = true;
    entry.status.lastStartedAt = startedAt;
    quietly(() => this.options.metrics?.started(entry.job.name, startedAt));
    const promise = this.runJob(entry, trigger, startedAt, abort.signal).then((report) => {
      entry.current = null;
      entry.status.running = false;
      entry.status.last = report;
      entry.status.runs[report.result]++;
      if (report.result === "ok") entry.status.lastSuccessAt = report.finishedAt;
      quietly(() => this.options.metrics?.finished(report));
      quietly(() => this.options.onRun?.(report));
      return report;
    });
    entry.current = { promise, abort };
    return promise;
  }

  /** Runs the job; never rejects. */
  private async runJob(entry: Entry, trigger: RunTrigger, startedAt: number, signal: AbortSignal): Promise<JobReport> {
    let result: JobResult;
    let message: string;
    let error: unknown = null;
    try {
      // Called inside the try: a job that throws synchronously is a failed run too.
      const outcome: unknown = await entry.job.run(signal);
      result = "ok";
      message = typeof outcome === "string" ? oneLine(outcome) : "done";
    } catch (err) {
      result = "error";
      error = err;
      message = oneLine(err instanceof Error ? err.message : String(err)) || "failed";
    }
    const finishedAt = this.clock.now();
    return { job: entry.job.name, trigger, result, message, startedAt, finishedAt, durationMs: Math.max(0, finishedAt - startedAt), error };
  }

  private skipped(entry: Entry, trigger: RunTrigger): SkippedRun {
    const skip: SkippedRun = { job: entry.job.name, trigger, result: "skipped", reason: "running", at: this.clock.now() };
    entry.status.skipped++;
    quietly(() => this.options.metrics?.skipped(skip));
    quietly(() => this.options.onSkip?.(skip));
    return skip;
  }

  /** node-cron's logger: its messages go to `onWarning`, never to the console. */
  private cronLogger(): { info(m: string): void; warn(m: string): void; error(m: string | Error, e?: Error): void; debug(m: string | Error, e?: Error): void } {
    const forward = (m: string | Error, e?: Error): void => {
      const text = m instanceof Error ? m.message : e === undefined ? m : `${m}: ${e.message}`;
      // Overlaps are reported through onSkip; runs never throw into node-cron (runJob catches).
      if (/task still running/i.test(text)) return;
      quietly(() => this.options.onWarning?.(`node-cron: ${oneLine(text)}`));
    };
    return { info: () => undefined, debug: () => undefined, warn: forward, error: forward };
  }
}

/** Throws SchedulerError `ERR_RECLAIM_SCHEDULE` unless node-cron accepts `expression`. Exported for config checks (CLI flags). */
export function checkSchedule(job: string, expression: unknown): asserts expression is string {
  const fail = (why: string): never => {
    throw new SchedulerError(SchedulerErrorCode.schedule, `${job}: invalid cron expression ${JSON.stringify(expression)}${why === "" ? "" : ` (${why})`}`, job);
  };
  if (typeof expression !== "string" || expression.trim() === "") fail("expected a cron expression such as \"*/5 * * * *\"");
  let why = "";
  try {
    const checked = cron.validateDetailed(expression as string);
    if (checked.valid) return;
    why = checked.errors.map((e) => e.message).join("; ");
  } catch (err) {
    why = err instanceof Error ? err.message : String(err);
  }
  fail(why);
}

function checkTimezone(timezone: unknown): void {
  try {
    if (typeof timezone !== "string" || timezone === "") throw new RangeError("empty");
    new Intl.DateTimeFormat("en-US", { timeZone: timezone });
  } catch {
    throw new SchedulerError(SchedulerErrorCode.schedule, `invalid time zone ${JSON.stringify(timezone)} (expected an IANA name such as "UTC" or "Europe/Paris")`, null);
  }
}

function checkJob(job: Job, seen: ReadonlyMap<string, Entry>): void {
  const name = (job as { name?: unknown } | null)?.name;
  if (typeof name !== "string" || !JOB_NAME.test(name)) {
    throw new SchedulerError(SchedulerErrorCode.invalidJob, `invalid job name ${JSON.stringify(name)}: lowercase letters, digits, - and _, starting with a letter`, null);
  }
  if (seen.has(name)) throw new SchedulerError(SchedulerErrorCode.invalidJob, `two jobs are named ${JSON.stringify(name)}`, name);
  if (typeof job.run !== "function") throw new SchedulerError(SchedulerErrorCode.invalidJob, `${name}: run must be a function`, name);
}

/** One line, whitespace runs collapsed, at most MAX_MESSAGE characters. */
function oneLine(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length <= MAX_MESSAGE ? line : `${line.slice(0, MAX_MESSAGE - 1)}…`;
}

/** Calls a hook (logging, metrics); one that throws must not break the scheduler. */
function quietly(hook: () => void): void {
  try {
    hook();
  } catch {
    // ignored on purpose: hooks are logging and metrics
  }
}
