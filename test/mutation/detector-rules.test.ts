/**
 * The detector's rules, each pinned (issue 20: mutation testing found these
 * unpinned): late entries sorted into their window, which window goes under
 * key pressure, the bound on the de-duplication memory, windows of removed
 * rules forgotten, an entry from the future counted as now, and what a
 * trigger says.
 */
import { describe, expect, it } from "vitest";
import { Detector, keyOf, type Trigger } from "../../src/operator/detect/detector.js";
import { MAX_EVIDENCE } from "../../src/operator/incidents/model.js";
import type { LogEvent } from "../../src/operator/sources/event.js";
import { hardLimit, rule, T0 } from "../support/rules.js";

const fired = (x: unknown): Trigger => {
  if (typeof x !== "object" || x === null) throw new Error(`expected a trigger, got ${String(x)}`);
  return x as Trigger;
};
const at = (user: string, t: number, pod?: string): LogEvent => ({ ...hardLimit(user, t, pod), insertId: `${user}-${t}-${pod ?? ""}` });

describe("late entries", () => {
  it("are sorted into the window by event time: a late entry between two others fires with the evidence in time order", () => {
    const r = rule("r", { threshold: { count: 3, window: "1m" } });
    const d = new Detector({ now: () => T0 + 60_000 });
    expect(d.observe(r, at("u", T0 + 30_000), { groups: {} })).toBeNull();
    expect(d.observe(r, at("u", T0 + 10_000), { groups: {} })).toBeNull();
    const t = fired(d.observe(r, at("u", T0 + 20_000), { groups: {} }));
    expect(t.entries.map((e) => e.time)).toEqual([T0 + 10_000, T0 + 20_000, T0 + 30_000]);
    expect(t.firstAt).toBe(T0 + 10_000);
    expect(t.at).toBe(T0 + 20_000); // the entry that fired, not the newest
    expect(t.total).toBe(3);
  });

  it("a late entry that is older than the window's newest by more than the window does not count", () => {
    const r = rule("r", { threshold: { count: 2, window: "10s" } });
    const d = new Detector({ now: () => T0 + 60_000 });
    expect(d.observe(r, at("u", T0 + 30_000), { groups: {} })).toBeNull();
    expect(d.observe(r, at("u", T0 + 20_000), { groups: {} })).toBeNull(); // exactly a window before: out
    expect(fired(d.observe(r, at("u", T0 + 21_000), { groups: {} })).entries.map((e) => e.time)).toEqual([T0 + 21_000, T0 + 30_000]);
  });

  it("an entry from the future counts as now, so it does not push on-time entries out of the window", () => {
    const r = rule("r", { threshold: { count: 2, window: "1m" } });
    const d = new Detector({ now: () => T0 });
    expect(d.observe(r, at("u", T0 - 30_000), { groups: {} })).toBeNull();
    const t = fired(d.observe(r, at("u", T0 + 3_600_000), { groups: {} }));
    expect(t.total).toBe(2);
    expect(t.at).toBe(T0 + 3_600_000); // the time it claims, for the record
  });
});

describe("bounds", () => {
  it("under key pressure the least recently used window goes: a user whose entries keep coming keeps theirs", () => {
    const r = rule("r", { threshold: { count: 3, window: "1h" } });
    const d = new Detector({ now: () => T0, maxKeys: 3 });
    d.observe(r, at("active", T0), { groups: {} });
    d.observe(r, at("b", T0 + 1), { groups: {} });
    d.observe(r, at("c", T0 + 2), { groups: {} });
    expect(d.observe(r, at("active", T0 + 3), { groups: {} })).toBeNull(); // "active" is now the most recently used
    d.observe(r, at("d", T0 + 4), { groups: {} }); // a fourth key: the least recently used ("b") goes
    expect(d.stats.evictions).toBe(1);
    expect(d.size).toBe(3);
    expect(fired(d.observe(r, at("active", T0 + 5), { groups: {} })).total).toBe(3);
    d.observe(r, at("b", T0 + 6), { groups: {} });
    d.observe(r, at("b", T0 + 7), { groups: {} });
    expect(d.observe(r, at("c", T0 + 8), { groups: {} })).toBeNull(); // "c" kept its first entry: this is its second
    expect(fired(d.observe(r, at("c", T0 + 9), { groups: {} })).total).toBe(3);
    expect(d.observe(r, at("b", T0 + 10), { groups: {} })).not.toBeNull(); // "b" counted from T0 + 6: its first entry was forgotten
  });

  it("the de-duplication memory holds at most dedupeSize entries, forgetting the oldest first", () => {
    const r = rule("r", { threshold: { count: 1, window: "1m" } });
    const d = new Detector({ now: () => T0, dedupeSize: 3 });
    for (const user of ["a", "b", "c", "d"]) d.observe(r, at(user, T0), { groups: {} });
    expect(d.remembered).toBe(3);
    expect(d.observe(r, at("a", T0), { groups: {} })).not.toBe("duplicate"); // forgotten: the oldest
    expect(d.observe(r, at("d", T0), { groups: {} })).toBe("duplicate");
    expect(d.stats.duplicates).toBe(1);
  });

  it("an entry is remembered per rule: the same entry matched by two rules counts for each", () => {
    const one = rule("one", { threshold: { count: 1, window: "1m" } });
    const two = rule("two", { threshold: { count: 1, window: "1m" } });
    const d = new Detector({ now: () => T0 });
    const entry = at("u", T0);
    expect(d.observe(one, entry, { groups: {} })).not.toBeNull();
    expect(d.observe(two, entry, { groups: {} })).not.toBeNull();
    expect(d.observe(one, entry, { groups: {} })).toBe("duplicate");
  });

  it("an entry without an insertId is the same entry when every part of it is the same, and another when its time differs", () => {
    const r = rule("r", { threshold: { count: 2, window: "1m" } });
    const d = new Detector({ now: () => T0 });
    expect(d.observe(r, hardLimit("u", T0), { groups: {} })).toBeNull();
    expect(d.observe(r, hardLimit("u", T0), { groups: {} })).toBe("duplicate");
    expect(d.observe(r, { ...hardLimit("u", T0), message: "another line" }, { groups: {} })).not.toBe("duplicate");
    expect(d.observe(r, hardLimit("u", T0 + 1), { groups: {} })).toBeNull(); // its window started over after the second line fired
  });

  it("keeps at most MAX_EVIDENCE entries of a window, the newest, while counting all of them", () => {
    const count = MAX_EVIDENCE + 5;
    const r = rule("r", { threshold: { count, window: "1h" } });
    const d = new Detector({ now: () => T0 + 60_000 });
    let t: Trigger | null = null;
    for (let i = 0; i < count; i++) {
      const result = d.observe(r, at("u", T0 + i * 1000), { groups: {} });
      if (typeof result === "object" && result !== null) t = result;
    }
    expect(t!.total).toBe(count);
    expect(t!.entries).toHaveLength(MAX_EVIDENCE);
    expect(t!.entries[0]!.time).toBe(T0 + 5000);
    expect(t!.firstAt).toBe(T0); // the first entry's time, from the window's count, not from the evidence kept
  });
});

describe("rules that go", () => {
  it("retain() forgets the windows of rules no longer loaded, and only those", () => {
    const kept = rule("kept", { threshold: { count: 2, window: "1h" } });
    const gone = rule("gone", { threshold: { count: 2, window: "1h" } });
    const d = new Detector({ now: () => T0 });
    d.observe(kept, at("u", T0), { groups: {} });
    d.observe(gone, at("u", T0 + 1), { groups: {} });
    expect(d.size).toBe(2);
    d.retain(new Set(["kept"]));
    expect(d.size).toBe(1);
    expect(fired(d.observe(kept, at("u", T0 + 2), { groups: {} })).total).toBe(2);
    expect(d.observe(gone, at("u", T0 + 3), { groups: {} })).toBeNull(); // starts from nothing
  });
});

describe("what a trigger says", () => {
  it("its key in the rule's key order, the user and pod from the entry, the namespace from the resource", () => {
    const r = rule("r", { key: ["pod", "userId"], threshold: { count: 1, window: "1m" } });
    const d = new Detector({ now: () => T0 });
    const t = fired(d.observe(r, { ...at("u", T0, "factory-3"), resource: { namespace_name: "chat" } }, { groups: { a: "b" } }));
    expect(t).toMatchObject({ keyString: "pod=factory-3,userId=u", key: { pod: "factory-3", userId: "u" }, userId: "u", pod: "factory-3", namespace: "chat", groups: { a: "b" } });
    expect(d.stats).toMatchObject({ matched: 1, triggers: 1 });
  });

  it("a numeric key field is a string in the key; a missing one, or an entry without a pod, is handled", () => {
    const r = rule("r", { key: ["userId", "managers"] });
    const entry = at("u", T0);
    expect(keyOf(r, entry)).toMatchObject({ keyString: "userId=u,managers=20", key: { managers: "20" } });
    expect(keyOf(rule("r", { key: ["userId", "nothere"] }), entry)).toBeNull();
    const noPod: LogEvent = { ...entry, fields: { userId: "u" } };
    expect(keyOf(rule("r", { key: ["userId"] }), noPod)).toMatchObject({ pod: null, namespace: null });
  });
});

describe("edges", () => {
  it("counts what it drops, by reason; an entry exactly maxAge old still counts, one a millisecond older is stale", () => {
    const r = rule("r", { threshold: { count: 2, window: "1h" } });
    const d = new Detector({ now: () => T0 });
    expect(d.observe(r, { ...at("u", T0), fields: { pod: "p" } }, { groups: {} })).toBe("unkeyed");
    expect(d.observe(r, at("u", T0 - 15 * 60_000 - 1), { groups: {} })).toBe("stale");
    expect(d.observe(r, at("u", T0 - 15 * 60_000), { groups: {} })).toBeNull();
    expect(d.stats).toMatchObject({ matched: 3, unkeyed: 1, stale: 1, duplicates: 0, triggers: 0 });
  });

  it("entries with the same time stay in the order they came as evidence", () => {
    const r = rule("r", { threshold: { count: 2, window: "1m" } });
    const d = new Detector({ now: () => T0 });
    d.observe(r, { ...at("u", T0), message: "first" }, { groups: {} });
    const t = fired(d.observe(r, { ...at("u", T0), insertId: "other", message: "second" }, { groups: {} }));
    expect(t.entries.map((e) => e.message)).toEqual(["first", "second"]);
  });

  it("a trigger's first time is the time its first entry claims, also when that is in the future", () => {
    const r = rule("r", { threshold: { count: 1, window: "1m" } });
    const d = new Detector({ now: () => T0 });
    expect(fired(d.observe(r, at("u", T0 + 3_600_000), { groups: {} })).firstAt).toBe(T0 + 3_600_000);
  });

  it("an entry from the future is remembered until maxAge after the time it claims; any entry until exactly maxAge after it was seen", () => {
    const r = rule("r", { threshold: { count: 1, window: "1m" } });
    let now = T0;
    const d = new Detector({ now: () => now });
    d.observe(r, at("u", T0), { groups: {} });
    const future = at("ahead", T0 + 3_600_000);
    d.observe(r, future, { groups: {} });
    now = T0 + 20 * 60_000; // past maxAge (15 min) from when both were seen, not from the time the second claims
    d.observe(r, at("v", now), { groups: {} });
    expect(d.remembered).toBe(2); // "u" forgotten; "ahead" and "v" kept
    expect(d.observe(r, future, { groups: {} })).toBe("duplicate");

    const e = new Detector({ now: () => now });
    now = T0;
    e.observe(r, at("u", T0), { groups: {} });
    now = T0 + 15 * 60_000; // exactly maxAge after it was seen
    e.observe(r, at("v", now), { groups: {} });
    expect(e.remembered).toBe(1);
  });
});
