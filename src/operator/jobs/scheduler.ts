/**
 * The operator's scheduled jobs (the sweep, the digest, retention). croner
 * reads the expressions and finds each next run; the timers are this file's
 * own (ADR 36). In the default time zone, UTC, nothing here touches `Intl`:
 * croner computes in UTC (`utcOffset: 0`), which keeps ICU's data out of an
 * idle operator's memory; another zone goes through `Intl`. Every cron
 * expression is checked when the Scheduler is built, so a typo (or a day
 * that never comes) stops the operator at start instead of silently never
 * running. One
 * job never runs twice at once: a tick (or `runNow`) that comes while the
 * previous run is still going is skipped and counted. A run that throws is
 * caught, reported through `onRun` and recorded; the next tick runs as usual.
 *
 * The Scheduler keeps, per job, what the operator exports as metrics
 * (metrics.ts here) and may serve on an endpoint: the last run's start and
 * end, its result and one-line message, and run counts.
 */
import { Cron, type CronOptions } from "croner";
import { systemClock, type Clock } from "../../contract/clock.js";
import type { JobMetrics } from "./metrics.js";

/** Stable codes of the errors the Scheduler throws. Tests and callers branch on these, not on wording. */
export const SchedulerErrorCode = {
  /** A cron expression that is malformed or never matches, or an unknown time zone. A TypeError. */
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
  /**
   * A cron expression: 5 fields (minute first), or 6 with seconds first;
   * `@daily` style nicknames too (`@yearly`, `@annually`, `@monthly`,
   * `@weekly`, `@daily`, `@midnight`, `@hourly`). A day of month and a day of
   * week must both match (as node-cron did, not Vixie cron's "either").
   * Also `L`, `W`, `nL` and `n#k` (croner's syntax); unlike node-cron,
   * ranges that wrap (`22-2`), `L-n` and full day or month names are refused.
   */
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
  /** When its schedule will next run it (null while the Scheduler is stopped). */
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
  /**
   * Warnings of the schedules: a tick missed because the timer fired more
   * than `MISSED_TOLERANCE_MS` late (the event loop was blocked); that tick
   * does not run, the next one does. Default: dropped.
   */
  onWarning?: (message: string) => void;
  /** Metrics to keep up to date (see metrics.ts). Default none. */
  metrics?: JobMetrics;
  /** How long `stop()` waits for runs in progress after aborting them. Default 10000 ms. */
  stopTimeoutMs?: number;
}

/** Longest outcome or error message kept (characters). */
export const MAX_MESSAGE = 500;

/** How late a timer may fire and its tick still run (ms), as node-cron's default. Later, the tick is missed and reported. */
export const MISSED_TOLERANCE_MS = 1000;

/** Longest single wait of a schedule's timer (ms): a longer wait is cut into these, so a wall clock set back is noticed within it. */
export const MAX_WAIT_MS = 60_000;

/** Time zones read without `Intl`. Any other name is checked and applied through `Intl` (and so loads ICU's data). */
const UTC_ZONES: ReadonlySet<string> = new Set(["UTC", "Etc/UTC"]);

/** node-cron's nicknames, resolved here so that they mean what they meant (case-insensitive). */
const NICKNAMES: Readonly<Record<string, string>> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};

const JOB_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
const DEFAULTS = { timezone: "UTC", stopTimeoutMs: 10_000 } as const;

interface Entry {
  job: Job;
  status: Omit<JobStatus, "nextRunAt">;
  /** The run in progress, if any. */
  current: { promise: Promise<JobReport>; abort: AbortController } | null;
  /** The expression, read (croner without a callback never sets a timer of its own). */
  cron: Cron;
  /** While started: the next tick (ms since the epoch) and the timer that waits for it. */
  due: number | null;
  timer: NodeJS.Timeout | null;
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
      const cron = readSchedule(job.name, job.schedule, this.timezone);
      this.entries.set(job.name, {
        job,
        status: { name: job.name, schedule: job.schedule, running: false, lastStartedAt: null, last: null, lastSuccessAt: null, runs: { ok: 0, error: 0 }, skipped: 0 },
        current: null,
        cron,
        due: null,
        timer: null,
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
    for (const entry of this.entries.values()) this.arm(entry, Date.now());
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
      clearTimeout(entry.timer ?? undefined);
      entry.timer = null;
      entry.due = null;
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
    const view = (e: Entry): JobStatus => ({ ...e.status, runs: { ...e.status.runs }, nextRunAt: e.due });
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

  /**
   * Sets the entry's timer for its next tick after `now` (wall-clock ms).
   * The schedule is read on the wall clock, not on the injected `clock`
   * (that one only times the runs). A wait is at most MAX_WAIT_MS.
   */
  private arm(entry: Entry, now: number): void {
    entry.due = nextTick(entry.cron, now);
    if (entry.due === null) return;
    const wait = Math.min(Math.max(entry.due - now, 1), MAX_WAIT_MS);
    entry.timer = setTimeout(() => {
      this.beat(entry);
    }, wait);
  }

  /**
   * A timer fired. Before the tick (a cut wait, or a clock set back): wait
   * again. Otherwise run the latest tick at or before now if it is at most
   * MISSED_TOLERANCE_MS old, report the ticks older than that as missed (as
   * node-cron did), and wait for the next.
   */
  private beat(entry: Entry): void {
    entry.timer = null;
    const due = entry.due;
    if (!this.started || due === null) return;
    const now = Date.now();
    if (now >= due) {
      let latest = due;
      for (let next = nextTick(entry.cron, latest); next !== null && next <= now; next = nextTick(entry.cron, latest)) latest = next;
      const run = now - latest <= MISSED_TOLERANCE_MS;
      const firstMissed = run ? (latest > due ? due : null) : due;
      if (firstMissed !== null) {
        const missed = `${entry.job.name}: missed the tick due at ${new Date(firstMissed).toISOString()}${run || latest === firstMissed ? "" : ` (and later ones up to ${new Date(latest).toISOString()})`}: the timer fired ${now - firstMissed} ms late (the event loop was blocked)`;
        quietly(() => this.options.onWarning?.(missed));
      }
      if (run) void this.execute(entry, "schedule");
    }
    this.arm(entry, now);
  }
}

/** The first tick of `cron` strictly after `after` (ms), or null when there is none. */
function nextTick(cron: Cron, after: number): number | null {
  return cron.nextRun(new Date(after))?.getTime() ?? null;
}

/**
 * Throws SchedulerError `ERR_RECLAIM_SCHEDULE` unless `expression` is a cron
 * expression that runs (read in UTC; a time zone does not change which
 * expressions run). Exported for config checks (CLI flags).
 */
export function checkSchedule(job: string, expression: unknown): asserts expression is string {
  readSchedule(job, expression, "UTC");
}

/**
 * When `expression` runs next, strictly after `after` (ms since the epoch),
 * read in `timezone` (default UTC): ms since the epoch, or null if it never
 * runs again. Throws SchedulerError `ERR_RECLAIM_SCHEDULE` for a bad
 * expression or time zone. The Scheduler's `nextRunAt` is this, from now.
 */
export function nextScheduledRun(expression: string, after: number, timezone: string = DEFAULTS.timezone): number | null {
  checkTimezone(timezone);
  return nextTick(readSchedule("schedule", expression, timezone), after);
}

/** Reads `expression` for `timezone` (already checked), or throws SchedulerError `ERR_RECLAIM_SCHEDULE` naming the job. */
function readSchedule(job: string, expression: unknown, timezone: string): Cron {
  const fail = (why: string): never => {
    throw new SchedulerError(SchedulerErrorCode.schedule, `${job}: invalid cron expression ${JSON.stringify(expression)}${why === "" ? "" : ` (${why})`}`, job);
  };
  if (typeof expression !== "string" || expression.trim() === "") return fail("expected a cron expression such as \"*/5 * * * *\"");
  const pattern = NICKNAMES[expression.trim().toLowerCase()] ?? expression.trim();
  const fields = pattern.split(/\s+/).length;
  if (fields !== 5 && fields !== 6) return fail(`expected 5 or 6 fields but got ${fields}`);
  const options: CronOptions = {
    mode: "5-or-6-parts",
    // Both day fields must match, as node-cron read them (croner's default is Vixie cron's "either").
    domAndDow: true,
    ...(UTC_ZONES.has(timezone) ? { utcOffset: 0 } : { timezone }),
  };
  let cron: Cron;
  try {
    cron = new Cron(pattern, options);
  } catch (err) {
    return fail((err instanceof Error ? err.message : String(err)).replace(/^CronPattern:\s*/, ""));
  }
  // A day that no month has (`0 0 31 2 *`) reads fine but never runs: refused like a typo. From a fixed date, so the check does not depend on today.
  if (cron.nextRun(new Date(Date.UTC(2000, 0, 1))) === null) fail("it never runs: an impossible day of month for the given month, or days of month and of week that never meet");
  return cron;
}

function checkTimezone(timezone: unknown): void {
  try {
    if (typeof timezone !== "string" || timezone === "") throw new RangeError("empty");
    if (UTC_ZONES.has(timezone)) return;
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
