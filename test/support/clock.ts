import type { Clock } from "../../src/contract/clock.js";

/** A clock the test moves by hand: "10 s later" is instant, and orderings are exact rather than races between milliseconds. */
export class ManualClock implements Clock {
  constructor(private t = Date.parse("2026-11-26T12:00:00Z")) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}
