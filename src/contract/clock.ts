/**
 * Time as both halves read it: milliseconds since the epoch. Not a wire type,
 * but the one seam both halves share so that tests can replace the clock
 * (STYLE.md: "the clock is a variable that tests replace").
 */
import { timerDelay } from "./duration.js";

export interface Clock {
  now(): number;
}

/** The real clock. */
export const systemClock: Clock = { now: () => Date.now() };

/**
 * A clock that also keeps time for waits and deadlines. Everything the
 * operator waits for (backoff, polling, renew deadlines, call deadlines) goes
 * through one of these, so a test can run a simulated week in seconds and a
 * hung call ends exactly when its deadline passes on that clock.
 *
 * Every method throws a `TimerRangeError` (code `ERR_RECLAIM_TIMER_RANGE`)
 * for a delay above `MAX_TIMER_MS` (about 24.8 days) instead of letting Node
 * run it after 1 ms.
 */
export interface Timers extends Clock {
  /** Resolves after `ms`, or as soon as `signal` aborts. Never rejects. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** A signal that aborts with a `TimeoutError` DOMException after `ms`. */
  timeout(ms: number): AbortSignal;
  /** Calls `fn` once after `ms`; returns a function that cancels it. Does not keep the process alive. */
  after(ms: number, fn: () => void): () => void;
  /** Calls `fn` every `ms`; returns a function that stops it. Does not keep the process alive. */
  every(ms: number, fn: () => void): () => void;
}

/** The real clock and the real timers. */
export const systemTimers: Timers = {
  now: () => Date.now(),
  sleep: (ms, signal) => {
    timerDelay(ms, "sleep");
    return new Promise<void>((resolve) => {
      if (signal?.aborted === true) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
    });
  },
  timeout: (ms) => AbortSignal.timeout(timerDelay(ms, "timeout")),
  after: (ms, fn) => {
    const timer = setTimeout(fn, timerDelay(ms, "timer"));
    timer.unref();
    return () => clearTimeout(timer);
  },
  every: (ms, fn) => {
    const timer = setInterval(fn, timerDelay(ms, "interval"));
    timer.unref();
    return () => clearInterval(timer);
  },
};

/**
 * The timers that go with `clock`: the clock itself when it keeps time for
 * waits too (a ManualClock in tests and simulations), so that its timers
 * fire when it is moved; otherwise the real timers, reading the time from
 * `clock`. For parts that are handed a `Clock` and also wait (the factory's
 * admission: its refusal-log windows, its queue's timeouts and its raises'
 * ends).
 */
export function timersOf(clock: Clock): Timers {
  const maybe = clock as Partial<Timers>;
  if (typeof maybe.after === "function" && typeof maybe.every === "function" && typeof maybe.sleep === "function" && typeof maybe.timeout === "function") {
    return clock as Timers;
  }
  return { ...systemTimers, now: () => clock.now() };
}

/** The signal of one call, and how to let go of it once the call is over. */
export interface CallDeadline {
  /** Aborts when `ms` pass on the timers, or when the caller's signal aborts. */
  readonly signal: AbortSignal;
  /** True once the time ran out (not the caller's signal). */
  readonly timedOut: boolean;
  /** The call is over: stops the timer and stops listening to the caller's signal. Call it in a `finally`. */
  release(): void;
}

/**
 * A deadline for one call: its signal aborts when `ms` pass on `timers` or
 * `signal` (the term's) aborts. `release()` when the call is over. Not
 * `AbortSignal.any`: on Node 20 every signal it makes from a long-lived one
 * stays reachable from it (nodejs/node#55351), so a term that makes a call a
 * second would grow without bound.
 */
export function deadline(timers: Timers, ms: number, signal?: AbortSignal): CallDeadline {
  const controller = new AbortController();
  let timedOut = false;
  const onAbort = (): void => controller.abort(signal?.reason);
  const cancel = timers.after(ms, () => {
    timedOut = true;
    controller.abort(new DOMException(`The operation timed out after ${ms} ms.`, "TimeoutError"));
  });
  if (signal?.aborted === true) controller.abort(signal.reason);
  else signal?.addEventListener("abort", onAbort, { once: true });
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    release: () => {
      cancel();
      signal?.removeEventListener("abort", onAbort);
    },
  };
}

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  every: number | null;
}

/**
 * A clock moved by hand, for tests and simulations (the model-based test, the
 * soak benchmark): "10 s later" is instant, and orderings are exact rather
 * than races between milliseconds. Its timers (sleep, timeout, after, every)
 * fire only when time is moved past them, in time order.
 */
export class ManualClock implements Timers {
  private readonly pending = new Set<Pending>();
  private seq = 0;

  /**
   * @param t the time to start at (ms since the epoch)
   * @param settle what `run` awaits after each timer fires (default: three
   *   turns of the event loop); a simulation can wait for its I/O to finish
   */
  constructor(
    private t = Date.parse("2026-11-26T12:00:00Z"),
    private readonly settle: () => Promise<void> = defaultSettle,
  ) {}

  now(): number {
    return this.t;
  }

  /** Moves time on, firing (synchronously, in order) every timer due by then. */
  advance(ms: number): void {
    const target = this.t + ms;
    for (let next = this.nextDue(target); next !== null; next = this.nextDue(target)) this.fire(next);
    this.t = target;
  }

  /**
   * Moves time on like `advance`, but lets promises and I/O settle after
   * each timer fires (and once at the end), so that code woken by one timer
   * can set the next before time moves past it.
   */
  async run(ms: number): Promise<void> {
    const target = this.t + ms;
    await this.settle();
    for (let next = this.nextDue(target); next !== null; next = this.nextDue(target)) {
      this.fire(next);
      await this.settle();
    }
    this.t = target;
    await this.settle();
  }

  /**
   * Jumps `ms` ahead as a process that was paused would see it (a frozen VM,
   * a long GC pause): each timer due by then fires once, in order, without
   * waiting for what it starts; a periodic one then goes on from the new
   * time, as Node's `setInterval` does after the event loop was blocked.
   * Then lets I/O settle. For simulating long quiet stretches cheaply.
   */
  async jump(ms: number): Promise<void> {
    const target = this.t + ms;
    const due = [...this.pending].filter((p) => p.at <= target).sort((a, b) => a.at - b.at || a.seq - b.seq);
    for (const entry of due) {
      if (!this.pending.has(entry)) continue; // cancelled by an earlier one
      this.t = Math.max(this.t, entry.at);
      if (entry.every === null) this.pending.delete(entry);
      else {
        entry.at = target + entry.every;
        entry.seq = this.seq++;
      }
      entry.fn();
    }
    this.t = target;
    await this.settle();
  }

  /** Timers waiting to fire. */
  get timers(): number {
    return this.pending.size;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    timerDelay(ms, "sleep");
    return new Promise<void>((resolve) => {
      if (signal?.aborted === true) return resolve();
      const cancel = this.after(ms, () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
      const onAbort = (): void => {
        cancel();
        resolve();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  timeout(ms: number): AbortSignal {
    const controller = new AbortController();
    this.after(ms, () => controller.abort(new DOMException("The operation timed out.", "TimeoutError")));
    return controller.signal;
  }

  after(ms: number, fn: () => void): () => void {
    // The same bound as the real timers: a test must not pass with a delay production would run after 1 ms.
    timerDelay(ms, "timer");
    const entry: Pending = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, every: null };
    this.pending.add(entry);
    return () => this.pending.delete(entry);
  }

  every(ms: number, fn: () => void): () => void {
    const period = Math.max(1, timerDelay(ms, "interval"));
    const entry: Pending = { at: this.t + period, seq: this.seq++, fn, every: period };
    this.pending.add(entry);
    return () => this.pending.delete(entry);
  }

  private nextDue(target: number): Pending | null {
    let best: Pending | null = null;
    for (const p of this.pending) if (p.at <= target && (best === null || p.at < best.at || (p.at === best.at && p.seq < best.seq))) best = p;
    return best;
  }

  private fire(entry: Pending): void {
    this.t = Math.max(this.t, entry.at);
    if (entry.every === null) this.pending.delete(entry);
    else {
      entry.at += entry.every;
      entry.seq = this.seq++;
    }
    entry.fn();
  }
}

/** Lets pending promise callbacks and ready I/O callbacks run. */
async function defaultSettle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
