/**
 * The Scheduler over real node-cron: bad expressions refused at
 * construction with a stable code, jobs run on a real (every-second)
 * schedule, one job never runs twice at once, failures are caught and
 * recorded, and the metrics follow. Conditions are polled, never timed.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { Clock } from "../../../src/contract/clock.js";
import { JobMetrics } from "../../../src/operator/jobs/metrics.js";
import { Scheduler, SchedulerErrorCode, type Job, type JobReport, type SkippedRun } from "../../../src/operator/jobs/scheduler.js";
import { eventually } from "../../support/factory.js";

const EVERY_SECOND = "* * * * * *";
/** Never fires during a test run: Feb 1st at 00:00. */
const RARELY = "0 0 1 2 *";

const schedulers: Scheduler[] = [];
afterEach(async () => {
  await Promise.all(schedulers.splice(0).map((s) => s.stop()));
});

function scheduler(jobs: Job[], options: ConstructorParameters<typeof Scheduler>[1] = {}): Scheduler {
  const s = new Scheduler(jobs, options);
  schedulers.push(s);
  return s;
}

/** A clock that moves 1 s each time it is read, from 2026-11-26T12:00:00Z. */
function steppingClock(): Clock & { reads: number } {
  const clock = {
    reads: 0,
    now: () => Date.parse("2026-11-26T12:00:00Z") + clock.reads++ * 1000,
  };
  return clock;
}

/** A promise and its resolver. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

function thrown(fn: () => unknown): Error & { code?: string; job?: string | null } {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error("expected a throw");
}

describe("Scheduler: configuration", () => {
  it.each([
    ["every 5 min", "expected 5 or 6 fields but got 3"],
    ["* * * *", "expected 5 or 6 fields but got 4"],
    ["61 * * * *", "minute"],
    ["0 25 * * *", "hour"],
    ["*/5 * * * * * *", "got 7"],
    ["0 0 31 2 *", "impossible day of month"],
    ["", "expected a cron expression"],
  ])("refuses %j with ERR_RECLAIM_SCHEDULE, naming the job and the expression", (expression, why) => {
    const err = thrown(() => new Scheduler([{ name: "sweep", schedule: expression, run: () => Promise.resolve("") }]));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.code).toBe(SchedulerErrorCode.schedule);
    expect(err.code).toBe("ERR_RECLAIM_SCHEDULE");
    expect(err.job).toBe("sweep");
    expect(err.message).toContain(`sweep: invalid cron expression ${JSON.stringify(expression)}`);
    expect(err.message).toContain(why);
  });

  it("checks every job, not only the first", () => {
    const ok: Job = { name: "digest", schedule: "0 6 * * *", run: () => Promise.resolve("") };
    const bad: Job = { name: "retention", schedule: "30 3 * *", run: () => Promise.resolve("") };
    const err = thrown(() => new Scheduler([ok, bad]));
    expect(err.code).toBe("ERR_RECLAIM_SCHEDULE");
    expect(err.message).toMatch(/^retention: invalid cron expression "30 3 \* \*"/);
  });

  it.each(["*/5 * * * *", "0 6 * * *", "30 3 * * *", EVERY_SECOND, "@daily", "0 6 * * mon-fri"])("accepts %j", (expression) => {
    expect(new Scheduler([{ name: "job", schedule: expression, run: () => Promise.resolve("") }]).names).toEqual(["job"]);
  });

  it("refuses an unknown time zone with ERR_RECLAIM_SCHEDULE", () => {
    const err = thrown(() => new Scheduler([], { timezone: "Mars/Olympus_Mons" }));
    expect(err.code).toBe("ERR_RECLAIM_SCHEDULE");
    expect(err.message).toContain('"Mars/Olympus_Mons"');
  });

  it.each([
    [[{ name: "Sweep Job", schedule: RARELY }], "invalid job name"],
    [[{ name: "sweep", schedule: RARELY }, { name: "sweep", schedule: RARELY }], 'two jobs are named "sweep"'],
  ])("refuses bad job names with ERR_RECLAIM_JOB_INVALID (%#)", (specs, why) => {
    const jobs = specs.map((s) => ({ ...s, run: () => Promise.resolve("") }));
    const err = thrown(() => new Scheduler(jobs));
    expect(err.code).toBe("ERR_RECLAIM_JOB_INVALID");
    expect(err.message).toContain(why);
  });

  it("refuses runNow and status of an unknown job with ERR_RECLAIM_JOB_UNKNOWN", () => {
    const s = scheduler([{ name: "digest", schedule: RARELY, run: () => Promise.resolve("") }]);
    expect(thrown(() => s.runNow("sweep")).code).toBe("ERR_RECLAIM_JOB_UNKNOWN");
    expect(thrown(() => s.status("sweep")).message).toContain("(jobs: digest)");
  });
});

describe("Scheduler: runs", () => {
  it("runs a job on a real every-second schedule and records each run with the injected clock", async () => {
    const clock = steppingClock();
    const reports: JobReport[] = [];
    let calls = 0;
    const s = scheduler([{ name: "tick", schedule: EVERY_SECOND, run: () => Promise.resolve(`run ${++calls}\nsecond line`) }], {
      clock,
      onRun: (r) => reports.push(r),
    });
    expect(s.status("tick")).toMatchObject({ running: false, last: null, lastStartedAt: null, runs: { ok: 0, error: 0 }, nextRunAt: null });

    s.start();
    expect(s.status("tick").nextRunAt).not.toBeNull();
    await eventually(() => s.status("tick").runs.ok >= 2, 10_000, "two scheduled runs");

    const status = s.status("tick");
    expect(status.last).toMatchObject({ job: "tick", trigger: "schedule", result: "ok", error: null });
    // One line: the outcome's newline is folded.
    expect(status.last!.message).toMatch(/^run \d+ second line$/);
    // Times come from the injected clock (it moves 1 s per read), not from the wall clock.
    expect(status.last!.finishedAt - status.last!.startedAt).toBe(1000);
    expect(status.last!.durationMs).toBe(1000);
    expect(status.lastSuccessAt).toBe(status.last!.finishedAt);
    expect(reports.length).toBeGreaterThanOrEqual(2);
    expect(reports.every((r) => r.trigger === "schedule" && r.result === "ok")).toBe(true);

    await s.stop();
    expect(s.status("tick").nextRunAt).toBeNull();
    const after = s.status("tick").runs.ok;
    await new Promise((r) => setTimeout(r, 1200));
    expect(s.status("tick").runs.ok).toBe(after);
  });

  it("never runs a slow job twice at once: ticks and runNow during a run are skipped and counted", async () => {
    const slow = gate();
    let running = 0;
    let maxRunning = 0;
    let started = 0;
    const skips: SkippedRun[] = [];
    const registry = new Registry();
    const s = scheduler(
      [
        {
          name: "slow",
          schedule: EVERY_SECOND,
          run: async () => {
            started++;
            running++;
            maxRunning = Math.max(maxRunning, running);
            if (started === 1) await slow.promise;
            running--;
            return "done";
          },
        },
      ],
      { onSkip: (skip) => skips.push(skip), metrics: new JobMetrics(registry) },
    );
    s.start();
    await eventually(() => started === 1 && s.status("slow").running, 10_000, "the first run to start");

    // A manual run while the scheduled one is still going: skipped, not queued.
    const manual = await s.runNow("slow");
    expect(manual).toMatchObject({ job: "slow", trigger: "manual", result: "skipped", reason: "running" });

    // The next ticks come while the first run is still going: node-cron skips them, the Scheduler counts them.
    await eventually(() => skips.some((k) => k.trigger === "schedule"), 10_000, "a scheduled tick skipped");
    expect(started).toBe(1);
    expect(s.status("slow")).toMatchObject({ running: true, runs: { ok: 0, error: 0 } });
    expect(s.status("slow").skipped).toBe(skips.length);

    slow.open();
    await eventually(() => s.status("slow").runs.ok >= 2, 10_000, "runs after the slow one");
    expect(maxRunning).toBe(1);
    const text = await registry.metrics();
    expect(text).toMatch(new RegExp(`reclaim_operator_job_skipped_total\\{job="slow"\\} ${skips.length}\\b`));
  });

  it("catches and records a failed run (thrown or rejected); the job keeps its schedule", async () => {
    const registry = new Registry();
    const reports: JobReport[] = [];
    let n = 0;
    const s = scheduler(
      [
        {
          name: "flaky",
          schedule: EVERY_SECOND,
          // The first call throws synchronously, the second rejects, then it succeeds.
          run: (): Promise<string> => {
            n++;
            if (n === 1) throw new Error("disk full\n  at write()");
            if (n === 2) return Promise.reject(new TypeError("factory said no"));
            return Promise.resolve("fine");
          },
        },
      ],
      { metrics: new JobMetrics(registry), onRun: (r) => reports.push(r) },
    );

    const first = await s.runNow("flaky");
    expect(first).toMatchObject({ job: "flaky", trigger: "manual", result: "error", message: "disk full at write()" });
    expect((first as JobReport).error).toBeInstanceOf(Error);
    expect(s.status("flaky")).toMatchObject({ running: false, runs: { ok: 0, error: 1 }, lastSuccessAt: null });
    let text = await registry.metrics();
    expect(text).toContain('reclaim_operator_job_last_success{job="flaky"} 0');
    expect(text).toContain('reclaim_operator_job_runs_total{job="flaky",result="error"} 1');
    expect(text).toContain('reclaim_operator_job_runs_total{job="flaky",result="ok"} 0');

    // On the real schedule: the rejection is caught too, and the next tick still runs.
    s.start();
    await eventually(() => s.status("flaky").runs.ok >= 1, 10_000, "a successful scheduled run after failures");
    expect(s.status("flaky").runs.error).toBe(2);
    expect(reports.map((r) => [r.trigger, r.result, r.message]).slice(0, 3)).toEqual([
      ["manual", "error", "disk full at write()"],
      ["schedule", "error", "factory said no"],
      ["schedule", "ok", "fine"],
    ]);
    text = await registry.metrics();
    expect(text).toContain('reclaim_operator_job_last_success{job="flaky"} 1');
    expect(text).toMatch(/reclaim_operator_job_last_run_timestamp_seconds\{job="flaky"\} \d+/);
    expect(text).toMatch(/reclaim_operator_job_last_success_timestamp_seconds\{job="flaky"\} \d+/);
    expect(text).toContain('reclaim_operator_job_running{job="flaky"} 0');
  });

  it("keeps running when a hook throws", async () => {
    const s = scheduler([{ name: "job", schedule: RARELY, run: () => Promise.resolve("ok") }], {
      onRun: () => {
        throw new Error("logger broke");
      },
    });
    expect(await s.runNow("job")).toMatchObject({ result: "ok", message: "ok" });
    expect(s.status("job").runs.ok).toBe(1);
  });

  it("stop() aborts the run in progress through its signal and waits for it to end", async () => {
    let sawAbort = false;
    const s = scheduler([
      {
        name: "long",
        schedule: RARELY,
        run: (signal) =>
          new Promise<string>((resolve) => {
            signal.addEventListener("abort", () => {
              sawAbort = true;
              resolve("stopped early");
            });
          }),
      },
    ]);
    s.start();
    const run = s.runNow("long");
    await eventually(() => s.status("long").running, 5000, "the run to start");
    await s.stop();
    expect(sawAbort).toBe(true);
    expect(s.status("long")).toMatchObject({ running: false, runs: { ok: 1, error: 0 } });
    expect(await run).toMatchObject({ result: "ok", message: "stopped early" });
  });
});
