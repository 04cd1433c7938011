/**
 * Flag parsers shared by the subcommands. Each throws commander's
 * `InvalidArgumentError`, which prints the flag (or the environment
 * variable) and the bad value; `reclaim` then exits 2.
 *
 * Every duration and size flag is bounded on both sides: a value outside the
 * bounds is refused, never clamped, so a typo (`25d` for `25s`) cannot start
 * a process that does something nobody asked for.
 */
import { InvalidArgumentError } from "commander";
import { formatDuration, parseDuration } from "../contract/duration.js";
import { formatSize, parseSize } from "../contract/size.js";

/** An integer in [min, max]. */
export function intIn(min: number, max: number): (value: string) => number {
  return (value) => {
    if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected an integer, got ${JSON.stringify(value)}`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected ${min}..${max}, got ${n}`);
    return n;
  };
}

// Not exported: a flag takes a bounded duration (`durationIn`), never an unbounded one.
function durationMs(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function checkDurationBounds(min: number, max: number): void {
  if (!(min >= 0 && min <= max)) throw new RangeError(`bad duration bounds ${min}..${max}`);
}

function durationRange(min: number, max: number): string {
  return `${formatDuration(min)} to ${formatDuration(max)}`;
}

/**
 * A duration (as `durationMs`) from `min` to `max` milliseconds, inclusive.
 * The message names both bounds: `expected 1s to 1h, got 25d`.
 */
export function durationIn(min: number, max: number): (value: string) => number {
  checkDurationBounds(min, max);
  return (value) => {
    const ms = durationMs(value);
    if (ms < min || ms > max) throw new InvalidArgumentError(`expected ${durationRange(min, max)}, got ${formatDuration(ms)}`);
    return ms;
  };
}

/** A duration from `min` to `max` milliseconds, or `0` (off). */
export function durationOrZeroIn(min: number, max: number): (value: string) => number {
  checkDurationBounds(min, max);
  return (value) => {
    if (value.trim() === "0") return 0;
    const ms = durationMs(value);
    if (ms < min || ms > max) throw new InvalidArgumentError(`expected 0 (off) or ${durationRange(min, max)}, got ${formatDuration(ms)}`);
    return ms;
  };
}

/**
 * Whole seconds from `min` to `max`: a bare integer is seconds (the unit of
 * an HTTP `Retry-After`), or a duration with its unit (`30s`, `2m`).
 */
export function secondsIn(min: number, max: number): (value: string) => number {
  return (value) => {
    const text = value.trim();
    const seconds = /^\d+$/.test(text) ? Number(text) : durationMs(text) / 1000;
    if (!Number.isInteger(seconds)) throw new InvalidArgumentError(`expected whole seconds, got ${JSON.stringify(value)}`);
    if (seconds < min || seconds > max) {
      throw new InvalidArgumentError(`expected ${durationRange(min * 1000, max * 1000)} (${min} to ${max} seconds), got ${seconds} s`);
    }
    return seconds;
  };
}

/** A size (`64KiB`, `1MiB`, `1GiB`, or bare bytes) from `min` to `max` bytes, inclusive, returned in bytes. */
export function sizeIn(min: number, max: number): (value: string) => number {
  return (value) => {
    let bytes: number;
    try {
      bytes = parseSize(value);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
    if (bytes < min || bytes > max) throw new InvalidArgumentError(`expected ${formatSize(min)} to ${formatSize(max)}, got ${formatSize(bytes)}`);
    return bytes;
  };
}

/** A comma-separated list whose items are all in `allowed`. */
export function listOf<T extends string>(allowed: readonly T[]): (value: string, previous?: T[]) => T[] {
  return (value) => {
    const items = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
    const bad = items.filter((s) => !allowed.includes(s as T));
    if (items.length === 0 || bad.length > 0) {
      throw new InvalidArgumentError(`expected a comma-separated list of ${allowed.join(", ")}, got ${JSON.stringify(value)}`);
    }
    return items as T[];
  };
}

/**
 * A comma-separated list of at most `max` items, each accepted by `check`
 * (which returns why an item is bad, or null). Empty items are ignored, so
 * an empty value is an empty list.
 */
export function checkedList(check: (item: string) => string | null, max: number): (value: string) => string[] {
  return (value) => {
    const items = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
    if (items.length > max) throw new InvalidArgumentError(`expected at most ${max} items, got ${items.length}`);
    const problems = items.map(check).filter((p): p is string => p !== null);
    if (problems.length > 0) throw new InvalidArgumentError(problems.join("; "));
    return items;
  };
}
