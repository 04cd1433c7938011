/**
 * OldestFirst against a reference: a plain array of [key, value] pairs in
 * the order added. fast-check draws sequences of adds (new keys, and keys
 * already held, which must throw and change nothing), drops of the oldest,
 * and look-ups; after every step size, order, oldest value and look-ups
 * must be the reference's. Sequences are long enough to cut the order array
 * down (COMPACT_AFTER) several times.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { COMPACT_AFTER, OldestFirst } from "../../src/operator/oldest-first.js";

type Step = { kind: "add"; fresh: boolean; pick: number; value: number } | { kind: "drop"; times: number } | { kind: "look"; pick: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("add" as const), fresh: fc.boolean(), pick: fc.nat(), value: fc.integer() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("drop" as const), times: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("look" as const), pick: fc.nat() }) },
);

function check(memory: OldestFirst<string, number>, reference: [string, number][]): void {
  expect(memory.size).toBe(reference.length);
  expect(memory.keys()).toEqual(reference.map(([k]) => k));
  expect(memory.oldestValue()).toBe(reference[0]?.[1]);
}

describe("OldestFirst", () => {
  it("behaves as an array of entries in the order added, across many cuts of its order", () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 400 }), fc.integer({ min: 1, max: 12 }), (steps, burst) => {
        const memory = new OldestFirst<string, number>();
        const reference: [string, number][] = [];
        let next = 0;
        for (const s of steps) {
          if (s.kind === "add") {
            // A fresh key, or (when any is held) one already held, which must be refused.
            if (s.fresh || reference.length === 0) {
              // `burst` keys at a time, so that the order array passes COMPACT_AFTER within a sequence.
              for (let i = 0; i < burst * 20; i++) {
                const key = `k${next++}`;
                memory.add(key, s.value + i);
                reference.push([key, s.value + i]);
              }
            } else {
              const [key, value] = reference[s.pick % reference.length]!;
              expect(() => memory.add(key, value + 1)).toThrow(TypeError);
              expect(memory.get(key)).toBe(value);
            }
          } else if (s.kind === "drop") {
            for (let i = 0; i < s.times * burst * 10; i++) {
              memory.dropOldest();
              reference.shift();
            }
          } else if (reference.length > 0) {
            const [key, value] = reference[s.pick % reference.length]!;
            expect(memory.has(key)).toBe(true);
            expect(memory.get(key)).toBe(value);
          }
          check(memory, reference);
          // A key forgotten is no longer held, and may be added again as the newest.
          if (next > 0 && !reference.some(([k]) => k === "k0")) expect(memory.has("k0")).toBe(false);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("drops from the oldest end past a cut of its order, and takes a forgotten key back as the newest", () => {
    const memory = new OldestFirst<string, number>();
    const n = COMPACT_AFTER * 3;
    for (let i = 0; i < n; i++) memory.add(`k${i}`, i);
    for (let i = 0; i < COMPACT_AFTER * 2; i++) {
      expect(memory.oldestValue()).toBe(i);
      memory.dropOldest();
    }
    expect(memory.size).toBe(COMPACT_AFTER);
    expect(memory.keys()[0]).toBe(`k${COMPACT_AFTER * 2}`);
    expect(memory.has("k0")).toBe(false);
    memory.add("k0", -1);
    expect(memory.keys().at(-1)).toBe("k0");
    expect(memory.oldestValue()).toBe(COMPACT_AFTER * 2);
  });

  it("an empty memory has no oldest, and dropping from it does nothing", () => {
    const memory = new OldestFirst<string, number>();
    expect(memory.oldestValue()).toBeUndefined();
    memory.dropOldest();
    expect(memory.size).toBe(0);
    memory.add("a", 1);
    expect(memory.oldestValue()).toBe(1);
  });
});
