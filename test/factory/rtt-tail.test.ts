/**
 * The tail `phi` covers (ADR 38): every round trip of a connection with
 * history, as a share of the φ wait it had (floor included), pooled over a
 * factory's connections; `phi` waits are stretched by `TAIL_MARGIN` × the
 * share 1 in 1,000 of them exceeded, never shortened.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MIN_SAMPLES, PHI_RATIO, PHI_THRESHOLD, RttEstimator, RttTail, TAIL_MARGIN, TAIL_QUANTILE, TAIL_WINDOW } from "../../src/factory/rtt.js";

/** The quantile by rank, as a reader would compute it by hand: the smallest value at least a fraction q of them do not exceed. */
function byRank(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.ceil(q * sorted.length) - 1]!;
}

/** A tail that records raw shares: floor 1 ms and SRTT 1/φ·ln10 ms make the φ wait exactly 1 ms. */
function recordShares(tail: RttTail, shares: readonly number[]): void {
  for (const share of shares) tail.record(share, 1 / PHI_RATIO);
}

describe("RttEstimator pools its round trips in the tail", () => {
  it("records nothing until the connection has MIN_SAMPLES round trips, then each against the φ wait before it", () => {
    const tail = new RttTail(10);
    const e = new RttEstimator();
    for (let i = 0; i < MIN_SAMPLES; i++) e.add(20, tail);
    expect(tail.samples).toBe(0);
    const wait = PHI_RATIO * e.srtt; // 368 ms, above the 10 ms floor
    e.add(wait * 0.9, tail);
    expect(tail.samples).toBe(1);
    // One share of 0.9: the stretch covers 1.75 × 0.9.
    expect(tail.stretch()).toBeCloseTo(TAIL_MARGIN * 0.9);
    e.add(1, undefined);
    expect(tail.samples).toBe(1);
  });

  it("measures a round trip against the floor when φ's wait is below it: a stall shorter than floor / TAIL_MARGIN stretches nothing", () => {
    const tail = new RttTail(100);
    const connection = (): RttEstimator => {
      const e = new RttEstimator();
      for (let i = 0; i < 10; i++) e.add(2, tail); // φ would wait 37 ms: the floor's 100 ms applies
      return e;
    };
    connection().add(50, tail); // a 50 ms stall: half the floor
    expect(tail.stretch()).toBe(1);
    connection().add(80, tail);
    expect(tail.stretch()).toBeCloseTo(TAIL_MARGIN * 0.8);
  });
});

describe("RttEstimator.deadline with a stretch", () => {
  it("phi multiplies its wait, floor included, by the stretch, within the ceiling", () => {
    const e = new RttEstimator();
    for (let i = 0; i < 5; i++) e.add(10);
    expect(PHI_RATIO).toBeCloseTo(PHI_THRESHOLD * Math.LN10);
    expect(e.deadline("phi", 1, 60_000)).toBeCloseTo(PHI_RATIO * 10);
    expect(e.deadline("phi", 1, 60_000, 1.5)).toBeCloseTo(PHI_RATIO * 10 * 1.5);
    expect(e.deadline("phi", 500, 60_000, 1.5)).toBe(750);
    expect(e.deadline("phi", 1, 300, 2)).toBe(300);
  });

  it("rfc6298 and fixed ignore it; no history still gets the ceiling", () => {
    const e = new RttEstimator();
    for (let i = 0; i < 5; i++) e.add(10);
    expect(e.deadline("rfc6298", 1, 60_000, 3)).toBeCloseTo(e.srtt + 4 * e.rttvar);
    expect(e.deadline("fixed", 1, 777, 3)).toBe(777);
    expect(new RttEstimator().deadline("phi", 1, 888, 3)).toBe(888);
  });
});

describe("RttTail", () => {
  it("is 1 before any round trip, and TAIL_MARGIN × the 99.9th percentile share by rank after", () => {
    const tail = new RttTail();
    expect(tail.stretch()).toBe(1);
    // Shares 0.001 … 2.000 in a scrambled order: the 99.9th percentile by rank is 1.998.
    recordShares(
      tail,
      Array.from({ length: 2000 }, (_, i) => (((i * 7919) % 2000) + 1) / 1000),
    );
    expect(tail.samples).toBe(2000);
    expect(tail.stretch()).toBeCloseTo(TAIL_MARGIN * 1.998);
  });

  it("never shortens a wait: shares far below 1/TAIL_MARGIN give 1", () => {
    const tail = new RttTail();
    recordShares(tail, [0.01, 0.2, 0.5]);
    expect(tail.stretch()).toBe(1);
  });

  it("with fewer than 1,000 round trips covers the largest", () => {
    const tail = new RttTail();
    recordShares(tail, [0.1, 0.2, 3, 0.05]);
    expect(tail.stretch()).toBeCloseTo(TAIL_MARGIN * 3);
  });

  it("ignores what is not a finite non-negative time, and never divides by a zero wait", () => {
    const tail = new RttTail(0);
    for (const rtt of [Number.NaN, -1, Infinity]) tail.record(rtt, 5);
    expect(tail.samples).toBe(0);
    tail.record(0.5, 0); // SRTT 0 and no floor: measured against 1 ms
    expect(tail.samples).toBe(1);
    expect(tail.stretch()).toBe(1); // 1.75 × 0.5 < 1
    tail.record(2, 0);
    expect(tail.stretch()).toBeCloseTo(TAIL_MARGIN * 2);
  });

  it("forgets what fell out of the window: a tail that has passed stops stretching the waits", () => {
    const tail = new RttTail();
    recordShares(tail, Array<number>(TAIL_WINDOW).fill(2));
    expect(tail.stretch()).toBe(TAIL_MARGIN * 2);
    recordShares(tail, Array<number>(TAIL_WINDOW).fill(0.1));
    expect(tail.stretch()).toBe(1);
  });

  it("matches a plain model over any sequence of round trips and reads (recomputed once 1/16 of a full window is new)", () => {
    const share = fc.double({ min: 0, max: 5, noNaN: true });
    const step = fc.oneof(
      { weight: 6, arbitrary: fc.record({ shares: fc.array(share, { maxLength: 700 }) }) },
      { weight: 2, arbitrary: fc.record({ fill: fc.integer({ min: 1, max: TAIL_WINDOW }), value: share }) },
      { weight: 3, arbitrary: fc.constant({ read: true as const }) },
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
        const tail = new RttTail(1);
        const all: number[] = [];
        let fresh = 0;
        let expected = 1;
        const read = (): void => {
          const held = all.slice(-TAIL_WINDOW);
          if (fresh > 0 && (held.length < TAIL_WINDOW || fresh >= TAIL_WINDOW / 16)) {
            expected = Math.max(1, TAIL_MARGIN * byRank(held, TAIL_QUANTILE));
            fresh = 0;
          }
          expect(tail.stretch()).toBeCloseTo(expected, 12);
        };
        for (const s of steps) {
          const shares = "shares" in s ? s.shares : "fill" in s ? Array<number>(s.fill).fill(s.value) : [];
          recordShares(tail, shares);
          all.push(...shares);
          fresh += shares.length;
          expect(tail.samples).toBe(all.length);
          if ("read" in s) read();
        }
        read();
      }),
      { numRuns: 200 },
    );
  });
});
