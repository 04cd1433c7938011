/**
 * The de-duplication ring of the Cloud Logging tail (src/operator/sources/gcp/dedupe.ts)
 * on its own: it holds at most `capacity` ids and forgets the oldest first;
 * `since()` picks the ids a saved position keeps; an entry's identity is its
 * timestamp and insertId, or a hash of its JSON without an insertId.
 */
import { describe, expect, it } from "vitest";
import { entryKey, keyNanos, RecentEntries } from "../../../../src/operator/sources/gcp/dedupe.js";

describe("RecentEntries", () => {
  it("holds at most `capacity` ids, forgetting the oldest first", () => {
    const ring = new RecentEntries(3);
    for (const key of ["a", "b", "c", "d", "e"]) ring.add(key, 0n, 1);
    expect(["a", "b", "c", "d", "e"].map((k) => ring.has(k))).toEqual([false, false, true, true, true]);
    // A forgotten id is one like any other: added again, it pushes out the oldest held ("c").
    ring.add("a", 0n, 2);
    expect(["a", "c", "d", "e"].map((k) => ring.has(k))).toEqual([true, false, true, true]);
    expect(ring.since(0n, 2, 10)).toEqual(["d", "e", "a"]);
  });

  it("keeps every id below its capacity, and forgets them all on clear()", () => {
    const ring = new RecentEntries(100);
    for (let i = 0; i < 100; i++) ring.add(`k${i}`, BigInt(i), 1);
    expect(Array.from({ length: 100 }, (_, i) => ring.has(`k${i}`)).every(Boolean)).toBe(true);
    ring.clear();
    expect(ring.has("k0")).toBe(false);
    expect(ring.has("k99")).toBe(false);
    expect(ring.since(0n, 1, 100)).toEqual([]);
    ring.add("new", 5n, 1);
    expect(ring.since(0n, 1, 100)).toEqual(["new"]);
  });

  it("after clear() of a ring that had wrapped, forgets the oldest first again", () => {
    const ring = new RecentEntries(4);
    for (let t = 1; t <= 6; t++) ring.add(`old${t}`, BigInt(t), 1);
    ring.clear();
    for (const key of ["a", "b", "c", "d", "e"]) ring.add(key, 0n, 1);
    expect(["a", "b", "c", "d", "e"].map((k) => ring.has(k))).toEqual([false, true, true, true, true]);
    expect(ring.since(0n, 1, 10)).toEqual(["b", "c", "d", "e"]);
  });

  it.each([
    // since, batch, max, expected: oldest first, from batches up to `batch`, at or after `since`, among the last `max` arrivals
    { since: 0n, batch: 9, max: 10, expected: ["t10", "t20", "t30", "t40", "t50"] },
    { since: 30n, batch: 9, max: 10, expected: ["t30", "t40", "t50"] },
    { since: 0n, batch: 1, max: 10, expected: ["t10", "t20", "t30"] },
    { since: 0n, batch: 9, max: 2, expected: ["t40", "t50"] },
    { since: 25n, batch: 1, max: 3, expected: ["t30"] },
    { since: 0n, batch: 9, max: 0, expected: [] },
  ])("since($since, batch $batch, max $max) → $expected", ({ since, batch, max, expected }) => {
    const ring = new RecentEntries(10);
    [10, 20, 30].forEach((t) => ring.add(`t${t}`, BigInt(t), 1));
    [40, 50].forEach((t) => ring.add(`t${t}`, BigInt(t), 2));
    expect(ring.since(since, batch, max)).toEqual(expected);
  });

  it("looks back over the newest arrivals once the ring has wrapped", () => {
    const ring = new RecentEntries(4);
    for (let t = 1; t <= 7; t++) ring.add(`t${t}`, BigInt(t), t);
    expect(ring.since(0n, 99, 99)).toEqual(["t4", "t5", "t6", "t7"]);
    expect(ring.since(0n, 6, 99)).toEqual(["t4", "t5", "t6"]);
    expect(ring.since(0n, 99, 2)).toEqual(["t6", "t7"]);
  });
});

describe("entryKey", () => {
  it("is NANOS/INSERT_ID with an insertId, whatever the line", () => {
    expect(entryKey(1_700_000_000_123_456_789n, { insertId: "abc" }, "{}")).toBe("1700000000123456789/abc");
    expect(entryKey(1n, { insertId: "abc" }, "{}")).toBe(entryKey(1n, { insertId: "abc" }, '{"other":1}'));
    expect(entryKey(null, { insertId: "abc" }, "{}")).toBe("0/abc");
  });

  it("is NANOS#HASH of the line without one: the same line one key, another line another", () => {
    const a = entryKey(5n, {}, '{"a":1}');
    expect(a).toMatch(/^5#[A-Za-z0-9+/]{27}=$/);
    expect(entryKey(5n, { insertId: "" }, '{"a":1}')).toBe(a);
    expect(entryKey(5n, {}, '{"a":2}')).not.toBe(a);
    expect(entryKey(6n, {}, '{"a":1}')).not.toBe(a);
  });

  it.each([
    ["1700000000123456789/abc", 1_700_000_000_123_456_789n],
    ["5#AAAA", 5n],
    ["-3/x", -3n],
    ["not a key", 0n],
  ])("keyNanos(%j) is %s", (key, ns) => {
    expect(keyNanos(key)).toBe(ns);
  });
});
