/**
 * Time as both halves read it: milliseconds since the epoch. Not a wire type,
 * but the one seam both halves share so that tests can replace the clock
 * (STYLE.md: "the clock is a variable that tests replace").
 */
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
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted === true) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
    }),
  timeout: (ms) => AbortSignal.timeout(ms),
  after: (ms, fn) => {
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
  every: (ms, fn) => {
    const timer = setInterval(fn, ms);
    timer.unref();
    return () => clearInterval(timer);
  },
};

/** The signal for one call: aborted when `signal` aborts (the term ended) or when `ms` pass on `timers`. */
export function deadline(timers: Timers, ms: number, signal?: AbortSignal): AbortSignal {
  const timeout = timers.timeout(ms);
  return signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
}
