/**
 * Durations as people write them in flags and rules: `250ms`, `90s`, `15m`,
 * `1h`, `7d`, or a bare number of milliseconds. And the one bound every
 * timer shares: Node's timers cannot wait longer than `MAX_TIMER_MS`.
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;

/** Parses a duration into milliseconds. Throws a `TypeError` naming the value when it is not one. */
export function parseDuration(text: string): number {
  const match = DURATION.exec(text.trim());
  if (match === null) throw new TypeError(`invalid duration ${JSON.stringify(text)}: use e.g. 250ms, 90s, 15m, 1h or 7d`);
  const ms = Number(match[1]) * (UNIT_MS[match[2] ?? "ms"] ?? 1);
  if (!Number.isFinite(ms) || ms <= 0) throw new TypeError(`invalid duration ${JSON.stringify(text)}: must be positive`);
  return Math.round(ms);
}

/**
 * Milliseconds in the largest unit that states them exactly, for messages:
 * `3600000` → `1h`, `90000` → `90s`, `1500` → `1500ms`.
 */
export function formatDuration(ms: number): string {
  if (ms === 0 || !Number.isInteger(ms)) return `${ms}ms`;
  for (const unit of ["d", "h", "m", "s"] as const) {
    const size = UNIT_MS[unit]!;
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/**
 * The longest delay Node's `setTimeout`/`setInterval` honour: 2^31-1 ms
 * (about 24.8 days). Above it Node prints a `TimeoutOverflowWarning` and
 * waits 1 ms instead, so a mistyped `25d` heartbeat would sweep every
 * millisecond and close every live connection.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A delay no timer can honour, named by what it was for. */
export class TimerRangeError extends TypeError {
  readonly code = "ERR_RECLAIM_TIMER_RANGE";
}

/**
 * Returns `ms` when a timer can wait that long; throws a `TimerRangeError`
 * naming `what` when it is not a number or above `MAX_TIMER_MS`. It throws
 * rather than clamps: a timer that fires weeks early (or a deadline that is
 * shorter than configured) would act on a time nobody asked for. Negative
 * delays pass: Node runs them as soon as possible, as it always has.
 */
export function timerDelay(ms: number, what: string): number {
  if (typeof ms !== "number" || Number.isNaN(ms)) throw new TimerRangeError(`${what}: ${String(ms)} is not a number of milliseconds`);
  if (ms > MAX_TIMER_MS) {
    throw new TimerRangeError(`${what}: ${ms} ms is above the longest timer Node can run (${MAX_TIMER_MS} ms, about 24.8 days)`);
  }
  return ms;
}
