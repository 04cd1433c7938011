/**
 * Flag parsers shared by the subcommands. Each throws commander's
 * `InvalidArgumentError`, which prints the flag and the bad value.
 */
import { InvalidArgumentError } from "commander";
import { parseDuration } from "../contract/duration.js";

/** An integer in [min, max]. */
export function intIn(min: number, max: number): (value: string) => number {
  return (value) => {
    if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`expected an integer, got ${JSON.stringify(value)}`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected ${min}..${max}, got ${n}`);
    return n;
  };
}

/** A duration (`250ms`, `30s`, `5m`, or bare milliseconds), returned in milliseconds. */
export function durationMs(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** A duration (as `durationMs`) from `min` to `max` milliseconds. */
export function durationIn(min: number, max: number): (value: string) => number {
  return (value) => {
    const ms = durationMs(value);
    if (ms < min || ms > max) throw new InvalidArgumentError(`expected ${min} ms to ${max} ms, got ${ms} ms`);
    return ms;
  };
}

/** Like `durationMs`, but `0` (off) is allowed. */
export function durationOrZeroMs(value: string): number {
  return value.trim() === "0" ? 0 : durationMs(value);
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
