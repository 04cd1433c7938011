/**
 * The Scheduler on croner: bad expressions refused at construction with a
 * stable code, next runs as an independent reference computes them, jobs run
 * on a real (every-second) schedule, one job never runs twice at once,
 * failures are caught and recorded, the metrics follow, a late tick is missed
 * and reported, and a UTC scheduler never touches `Intl` (ADR 36). Real-time
 * conditions are polled, never timed; the timer loop's edges run on vitest's
 * fake clock.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Clock } from "../../../src/contract/clock.js";
import { JobMetrics } from "../../../src/operator/jobs/metrics.js";
import {
  MAX_WAIT_MS,
  nextScheduledRun,
  Scheduler,
  SchedulerErrorCode,
  type Job,
  type JobReport,
  type SkippedRun,
} from "../../../src/operator/jobs/scheduler.js";
import { eventually } from "../../support/factory.js";

const EVERY_SECOND = "* * * * * *";
/** Never fires during a test run: Feb 1st at 00:00. */
const RARELY = "0 0 1 2 *";

const schedulers: Scheduler[] = [];
afterEach(async () => {
  await Promise.all(schedulers.splice(0).map((s) => s.stop()));
  vi.useRealTimers();
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
    ["0 0 30 2 *", "impossible day of month"],
    ["0 0 29 2 * extra", "illegal characters"],
    ["@fortnightly", "got 1"],
    ["5/10 * * * *", "stepping"],
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

  it.each(["*/5 * * * *", "0 6 * * *", "30 3 * * *", EVERY_SECOND, "@daily", "@DAILY", "@midnight", "0 6 * * mon-fri", "0 0 29 2 *", "0 0 L * *", "0 0 * * 5L", "0 0 * * 1#2", " 0  6 * * * "])("accepts %j", (expression) => {
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

    // The next ticks come while the first run is still going: the Scheduler skips and counts them.
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

/**
 * An independent reference for the expressions it understands: numbers,
 * `*`, ranges, steps, lists, month and day names; both day fields must match
 * (ADR 36: as node-cron read them). It walks day by day, then through the
 * day's minutes (or seconds), in UTC.
 */
function referenceNext(expression: string, after: number): number {
  const NAMES: Record<string, string> = { "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *" };
  const raw = (NAMES[expression] ?? expression).trim().split(/\s+/);
  const withSeconds = raw.length === 6;
  const [sec, min, hour, dom, mon, dow] = withSeconds ? raw : ["0", ...raw];
  const months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
  const days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
  const field = (text: string, lo: number, hi: number, names: string[] = [], nameBase = 0): Set<number> => {
    const value = (v: string): number => (names.includes(v.toLowerCase()) ? names.indexOf(v.toLowerCase()) + nameBase : Number(v));
    const out = new Set<number>();
    for (const part of text.split(",")) {
      const [range, step = "1"] = part.split("/");
      const [a, b] = range === "*" ? [lo, hi] : range!.includes("-") ? range!.split("-").map(value) : [value(range!), part.includes("/") ? hi : value(range!)];
      for (let v = a!; v <= b!; v += Number(step)) out.add(v);
    }
    return out;
  };
  const S = field(sec!, 0, 59), M = field(min!, 0, 59), H = field(hour!, 0, 23), D = field(dom!, 1, 31), Mo = field(mon!, 1, 12, months, 1);
  const W = new Set([...field(dow!, 0, 7, days)].map((d) => d % 7));
  const firstDay = Date.UTC(new Date(after).getUTCFullYear(), new Date(after).getUTCMonth(), new Date(after).getUTCDate());
  for (let day = firstDay; day < firstDay + 12 * 366 * 86_400_000; day += 86_400_000) {
    const d = new Date(day);
    if (!D.has(d.getUTCDate()) || !Mo.has(d.getUTCMonth() + 1) || !W.has(d.getUTCDay())) continue;
    for (let s = 0; s < 86_400; s += withSeconds ? 1 : 60) {
      const at = day + s * 1000;
      if (at > after && H.has(Math.floor(s / 3600)) && M.has(Math.floor(s / 60) % 60) && S.has(s % 60)) return at;
    }
  }
  throw new Error(`the reference found no run of ${expression}`);
}

describe("Scheduler: next runs", () => {
  const expressions = [
    "*/5 * * * *",
    "0 6 * * *",
    "30 3 * * *",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "0 6 * * mon-fri",
    "0 0 * * 7",
    "0 0 31 * *",
    "0 0 29 2 *",
    "0 0 13 * 5",
    "0 12 1,15 * *",
    "59 23 31 12 *",
    "0 9-17/2 * * 1-5",
    "0 0 1 */3 *",
    "0 0 * jan-mar,oct *",
    "* * * * * *",
    "*/7 * * * * *",
    "15,45 */2 * * * *",
    "30 59 23 31 12 *",
    "59 59 23 28-29 2 *",
  ];
  const starts = ["2026-11-26T12:00:00.000Z", "2026-12-31T23:59:30.500Z", "2028-02-28T23:59:59.000Z", "2027-02-27T00:00:00.000Z", "2026-01-31T12:34:56.789Z", "2029-06-30T23:59:59.999Z"];

  it.each(expressions)("%j: five next runs from month, year and leap-day edges match the reference", (expression) => {
    for (const start of starts) {
      let ours = Date.parse(start);
      let reference = ours;
      for (let i = 0; i < 5; i++) {
        ours = nextScheduledRun(expression, ours)!;
        reference = referenceNext(expression, reference);
        expect([start, i, new Date(ours).toISOString()]).toEqual([start, i, new Date(reference).toISOString()]);
      }
    }
  });

  it("reads the expression in the given time zone", () => {
    const after = Date.parse("2026-07-01T00:00:00Z");
    expect(new Date(nextScheduledRun("0 6 * * *", after)!).toISOString()).toBe("2026-07-01T06:00:00.000Z");
    expect(new Date(nextScheduledRun("0 6 * * *", after, "Etc/UTC")!).toISOString()).toBe("2026-07-01T06:00:00.000Z");
    // Paris is UTC+2 in July, UTC+1 in January.
    expect(new Date(nextScheduledRun("0 6 * * *", after, "Europe/Paris")!).toISOString()).toBe("2026-07-01T04:00:00.000Z");
    expect(new Date(nextScheduledRun("0 6 * * *", Date.parse("2026-01-01T00:00:00Z"), "Europe/Paris")!).toISOString()).toBe("2026-01-01T05:00:00.000Z");
    expect(thrown(() => nextScheduledRun("0 6 * * *", after, "Mars/Olympus_Mons")).code).toBe("ERR_RECLAIM_SCHEDULE");
    expect(thrown(() => nextScheduledRun("0 6 * *", after)).code).toBe("ERR_RECLAIM_SCHEDULE");
  });

  it("a started scheduler's nextRunAt is the expression's next run from now", () => {
    const s = scheduler([{ name: "digest", schedule: "0 6 * * *", run: () => Promise.resolve("") }]);
    const before = Date.now();
    s.start();
    const after = Date.now();
    expect([nextScheduledRun("0 6 * * *", before), nextScheduledRun("0 6 * * *", after)]).toContain(s.status("digest").nextRunAt);
  });
});

describe("Scheduler: the timer loop (vitest's fake clock)", () => {
  it("runs each tick on time across a year's end, and waits at most MAX_WAIT_MS at a time", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-12-31T23:58:30.000Z"), toFake: ["setTimeout", "clearTimeout", "Date"] });
    const started: string[] = [];
    const s = scheduler([
      {
        name: "hourly",
        schedule: "@hourly",
        run: () => {
          started.push(new Date().toISOString());
          return Promise.resolve("");
        },
      },
    ]);
    s.start();
    expect(new Date(s.status("hourly").nextRunAt!).toISOString()).toBe("2027-01-01T00:00:00.000Z");
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(MAX_WAIT_MS);
    // One cut wait went by: nothing ran, the tick is the same.
    expect(started).toEqual([]);
    expect(new Date(s.status("hourly").nextRunAt!).toISOString()).toBe("2027-01-01T00:00:00.000Z");
    await vi.advanceTimersByTimeAsync(30_000);
    expect(started).toEqual(["2027-01-01T00:00:00.000Z"]);
    expect(new Date(s.status("hourly").nextRunAt!).toISOString()).toBe("2027-01-01T01:00:00.000Z");
    await vi.advanceTimersByTimeAsync(3600_000);
    expect(started).toEqual(["2027-01-01T00:00:00.000Z", "2027-01-01T01:00:00.000Z"]);
    await s.stop();
    expect(vi.getTimerCount()).toBe(0);
    expect(s.status("hourly").nextRunAt).toBeNull();
  });

  it("a tick more than 1 s late (a blocked event loop) is missed and reported through onWarning; the next one runs", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-11-26T12:00:00.000Z"), toFake: ["setTimeout", "clearTimeout", "Date"] });
    const warnings: string[] = [];
    let runs = 0;
    const s = scheduler([{ name: "sweep", schedule: "*/5 * * * *", run: () => Promise.resolve(String(++runs)) }], { onWarning: (m) => warnings.push(m) });
    s.start();
    await vi.advanceTimersByTimeAsync(300_000);
    expect(runs).toBe(1);
    // The loop is blocked for 2 s just before 12:10: the timer fires at 12:10:02.
    vi.setSystemTime(Date.parse("2026-11-26T12:09:02.000Z"));
    await vi.advanceTimersByTimeAsync(60_000);
    expect(runs).toBe(1);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^sweep: missed the tick due at 2026-11-26T12:10:00\.000Z: the timer fired 2000 ms late/);
    expect(new Date(s.status("sweep").nextRunAt!).toISOString()).toBe("2026-11-26T12:15:00.000Z");
    await vi.advanceTimersByTimeAsync(300_000);
    expect(runs).toBe(2);
    expect(warnings).toHaveLength(1);
  });

  it("a tick up to 1 s late still runs, without a warning", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-11-26T12:04:00.000Z"), toFake: ["setTimeout", "clearTimeout", "Date"] });
    const warnings: string[] = [];
    let runs = 0;
    const s = scheduler([{ name: "sweep", schedule: "*/5 * * * *", run: () => Promise.resolve(String(++runs)) }], { onWarning: (m) => warnings.push(m) });
    s.start();
    vi.setSystemTime(Date.parse("2026-11-26T12:04:01.000Z"));
    await vi.advanceTimersByTimeAsync(60_000);
    expect([runs, warnings]).toEqual([1, []]);
  });

  it("a wall clock set back is noticed within MAX_WAIT_MS: the next tick is read again from the new time", async () => {
    vi.useFakeTimers({ now: Date.parse("2026-11-26T12:00:30.000Z"), toFake: ["setTimeout", "clearTimeout", "Date"] });
    const s = scheduler([{ name: "sweep", schedule: "*/5 * * * *", run: () => Promise.resolve("") }]);
    s.start();
    expect(new Date(s.status("sweep").nextRunAt!).toISOString()).toBe("2026-11-26T12:05:00.000Z");
    vi.setSystemTime(Date.parse("2026-11-26T11:00:30.000Z"));
    await vi.advanceTimersByTimeAsync(MAX_WAIT_MS);
    expect(new Date(s.status("sweep").nextRunAt!).toISOString()).toBe("2026-11-26T11:05:00.000Z");
  });
});

describe("Scheduler: no Intl in UTC (ADR 36)", () => {
  /** Counts `new Intl.DateTimeFormat(...)` while `fn` runs: the global constructor is wrapped for this test only. */
  async function intlCalls(fn: () => Promise<void>): Promise<number> {
    const original = Intl.DateTimeFormat;
    let calls = 0;
    const counting = function (this: unknown, ...args: ConstructorParameters<typeof Intl.DateTimeFormat>) {
      calls++;
      return new original(...args);
    } as unknown as typeof Intl.DateTimeFormat;
    Object.assign(counting, original);
    Intl.DateTimeFormat = counting;
    try {
      await fn();
    } finally {
      Intl.DateTimeFormat = original;
    }
    return calls;
  }

  async function buildStartTick(timezone?: string): Promise<void> {
    const s = scheduler([{ name: "tick", schedule: EVERY_SECOND, run: () => Promise.resolve("") }, { name: "digest", schedule: "0 6 * * *", run: () => Promise.resolve("") }], {
      ...(timezone === undefined ? {} : { timezone }),
    });
    s.start();
    await eventually(() => s.status("tick").runs.ok >= 1, 10_000, "a scheduled run");
    expect(s.status().every((j) => j.nextRunAt !== null)).toBe(true);
    await s.stop();
  }

  it("builds, starts, ticks and stops a UTC scheduler without constructing an Intl.DateTimeFormat", async () => {
    expect(await intlCalls(() => buildStartTick())).toBe(0);
    expect(await intlCalls(() => buildStartTick("UTC"))).toBe(0);
    expect(
      await intlCalls(() => {
        nextScheduledRun("@daily", Date.now());
        return Promise.resolve();
      }),
    ).toBe(0);
  });

  it("the counter sees Intl when a zone needs it (so the 0 above is not a blind spy)", async () => {
    expect(await intlCalls(() => buildStartTick("Europe/Paris"))).toBeGreaterThan(0);
  });
});
