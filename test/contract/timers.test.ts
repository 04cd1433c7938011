/**
 * The one bound every timer shares: a delay Node cannot run (above 2^31-1 ms,
 * which Node would run after 1 ms) is refused when the timer is armed, by the
 * real timers and by the hand-moved clock alike.
 */
import { describe, expect, it } from "vitest";
import { formatDuration, MAX_TIMER_MS, TimerRangeError, timerDelay } from "../../src/contract/duration.js";
import { systemTimers, type Timers } from "../../src/contract/clock.js";
import { formatSize, parseSize } from "../../src/contract/size.js";
import { ManualClock } from "../support/clock.js";

const TOO_LONG = 25 * 86_400_000; // 25d: the mistyped heartbeat of issue 12

describe("timer delays", () => {
  it("passes what a timer can run and refuses the rest with a code that names the timer", () => {
    expect(timerDelay(MAX_TIMER_MS, "heartbeat")).toBe(MAX_TIMER_MS);
    expect(timerDelay(0, "heartbeat")).toBe(0);
    for (const bad of [MAX_TIMER_MS + 1, TOO_LONG, Infinity, NaN]) {
      let error: unknown;
      try {
        timerDelay(bad, "heartbeat interval");
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(TimerRangeError);
      expect(error).toBeInstanceOf(TypeError);
      expect((error as TimerRangeError).code).toBe("ERR_RECLAIM_TIMER_RANGE");
      expect((error as Error).message).toMatch(/^heartbeat interval: /);
    }
  });

  it.each<[string, Timers]>([
    ["systemTimers", systemTimers],
    ["ManualClock", new ManualClock()],
  ])("%s refuses to arm a timer longer than Node can run", (_name, timers) => {
    expect(() => timers.after(TOO_LONG, () => undefined)).toThrow(TimerRangeError);
    expect(() => timers.every(TOO_LONG, () => undefined)).toThrow(TimerRangeError);
    expect(() => timers.timeout(TOO_LONG)).toThrow(TimerRangeError);
    expect(() => timers.sleep(TOO_LONG)).toThrow(TimerRangeError);
    // The longest it can run is still armed (and cancelled at once).
    timers.after(MAX_TIMER_MS, () => undefined)();
    timers.every(MAX_TIMER_MS, () => undefined)();
  });
});

describe("durations and sizes in messages", () => {
  it.each([
    [3_600_000, "1h"],
    [86_400_000 * 25, "25d"],
    [90_000, "90s"],
    [60_000, "1m"],
    [1500, "1500ms"],
    [0, "0ms"],
  ])("formatDuration(%d) = %s", (ms, text) => expect(formatDuration(ms)).toBe(text));

  it.each([
    ["65536", 65_536],
    ["64KiB", 65_536],
    ["64kib", 65_536],
    ["1MiB", 1_048_576],
    ["1.5MiB", 1_572_864],
    ["2GiB", 2 * 1024 ** 3],
    ["512B", 512],
    [" 16 MiB ", 16 * 1_048_576],
  ])("parseSize(%j) = %d", (text, bytes) => expect(parseSize(text)).toBe(bytes));

  it.each(["64KB", "1MB", "-1", "0", "1.5", "lots", "", "1e3"])("parseSize(%j) is refused", (text) => {
    expect(() => parseSize(text)).toThrow(TypeError);
  });

  it.each([
    [65_536, "64KiB"],
    [16 * 1_048_576, "16MiB"],
    [1000, "1000B"],
    [1024 ** 3, "1GiB"],
  ])("formatSize(%d) = %s", (bytes, text) => expect(formatSize(bytes)).toBe(text));
});
