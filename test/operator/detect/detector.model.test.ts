/**
 * The detector against a reference written the slow, obvious way (arrays,
 * no Map order tricks, the identity as the entry's whole JSON instead of a
 * digest), over random interleavings on a moving "now":
 * - entries of two rules (threshold 1 in 10 s, and 3 in 20 s) for four users
 *   on two pods, some without a user id, stamped from 20 s in the past to
 *   20 s in the future, some with an insertId, and exact repeats of earlier
 *   entries;
 * - time passing.
 * With at most 3 windows and 4 remembered identities, the least recently
 * used window and the oldest identity are forgotten all the time.
 *
 * After every step the detector's answer (null, the reason dropped, or the
 * trigger with its key, entries, total and times), its statistics, its
 * windows and its remembered identities match the reference's.
 *
 * RECLAIM_DETECTOR_MODEL_RUNS (default 1000) sequences from
 * RECLAIM_DETECTOR_MODEL_SEED (default fixed).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isUserId } from "../../../src/contract/ids.js";
import { Detector, type Dropped, type Trigger } from "../../../src/operator/detect/detector.js";
import { MAX_EVIDENCE } from "../../../src/operator/incidents/model.js";
import type { CompiledRule, Match } from "../../../src/operator/rules/compile.js";
import type { LogEvent } from "../../../src/operator/sources/event.js";
import { hardLimit, rule, T0 } from "../../support/rules.js";

const RUNS = Number(process.env.RECLAIM_DETECTOR_MODEL_RUNS ?? 1000);
const SEED = Number(process.env.RECLAIM_DETECTOR_MODEL_SEED ?? 20261205);
const MAX_KEYS = 3;
const DEDUPE_SIZE = 4;
const RULES = [
  rule("fast", { threshold: { count: 1, window: "10s" }, maxAge: "60s" }),
  rule("slow", { threshold: { count: 3, window: "20s" }, maxAge: "30s" }),
];
const USERS = ["105945141827451681156", "105945141827451681157"];
const PODS = ["factory-0", "factory-1"];

type Step =
  | { kind: "line"; rule: number; user: number; pod: number; dt: number; insertId: number | null }
  | { kind: "repeat"; pick: number; rule: number }
  | { kind: "tick"; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("line" as const),
      rule: fc.integer({ min: 0, max: 1 }),
      user: fc.integer({ min: -1, max: 1 }), // -1: no user id
      pod: fc.integer({ min: 0, max: 1 }),
      dt: fc.integer({ min: -20_000, max: 20_000 }),
      insertId: fc.option(fc.integer({ min: 0, max: 2 }), { freq: 3 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("repeat" as const), pick: fc.nat(), rule: fc.integer({ min: 0, max: 1 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("tick" as const), ms: fc.constantFrom(0, 1_000, 5_000, 15_000, 40_000) }) },
);

interface RefWindow {
  id: string;
  times: number[];
  entries: { at: number; event: LogEvent }[];
}

/** The detector's rules, one slow step at a time. */
class Reference {
  readonly stats = { matched: 0, duplicates: 0, unkeyed: 0, stale: 0, evictions: 0, triggers: 0 };
  /** Least recently used first. */
  windows: RefWindow[] = [];
  /** Oldest first: [identity, when it may be forgotten]. */
  seen: [string, number][] = [];

  constructor(private readonly now: () => number) {}

  observe(r: CompiledRule, event: LogEvent): Omit<Trigger, "rule" | "groups" | "namespace"> | Dropped | null {
    this.stats.matched++;
    const now = this.now();
    const identity = `${r.name}\u0000${event.insertId ?? JSON.stringify([event.time, event.severity, event.event, event.message, event.fields, event.resource])}`;
    if (this.seen.some(([id]) => id === identity)) {
      this.stats.duplicates++;
      return "duplicate";
    }
    this.seen.push([identity, Math.max(now, event.time) + r.rule.spec.maxAge]);
    while (this.seen.length > 0 && (this.seen[0]![1] <= now || this.seen.length > DEDUPE_SIZE)) this.seen.shift();

    const parts: string[] = [];
    for (const name of r.rule.spec.key) {
      const value = Object.hasOwn(event.fields, name) ? event.fields[name] : undefined;
      if (typeof value !== "string" && typeof value !== "number") {
        this.stats.unkeyed++;
        return "unkeyed";
      }
      parts.push(`${name}=${String(value)}`);
    }
    const userId = event.fields.userId;
    if (typeof userId !== "string" || !isUserId(userId)) {
      this.stats.unkeyed++;
      return "unkeyed";
    }
    if (event.time < now - r.rule.spec.maxAge) {
      this.stats.stale++;
      return "stale";
    }
    const keyString = parts.join(",");
    const id = `${r.name}\u0000${keyString}`;
    let window = this.windows.find((w) => w.id === id);
    if (window === undefined) {
      if (this.windows.length >= MAX_KEYS) {
        this.windows.shift();
        this.stats.evictions++;
      }
      window = { id, times: [], entries: [] };
    } else {
      this.windows = this.windows.filter((w) => w !== window);
    }
    this.windows.push(window);
    const at = Math.min(event.time, now);
    window.times = [...window.times, at].sort((a, b) => a - b);
    const start = window.times.at(-1)! - r.rule.spec.threshold.window;
    window.times = window.times.filter((t) => t > start);
    // Entries in time order, a later arrival after an equal time; only those inside the window; the newest MAX_EVIDENCE.
    const later = window.entries.filter((e) => e.at > at);
    window.entries = [...window.entries.filter((e) => e.at <= at), { at, event }, ...later].filter((e) => e.at > start).slice(-MAX_EVIDENCE);
    if (window.times.length < r.rule.spec.threshold.count) return null;
    this.windows = this.windows.filter((w) => w !== window);
    this.stats.triggers++;
    const entries = window.entries.map((e) => e.event);
    const pod = event.fields.pod;
    return {
      key: Object.fromEntries(r.rule.spec.key.map((name) => [name, String(event.fields[name])])),
      keyString,
      userId,
      pod: typeof pod === "string" ? pod : null,
      entries,
      total: window.times.length,
      firstAt: entries.length === window.times.length ? Math.min(...entries.map((e) => e.time)) : window.times[0]!,
      at: event.time,
    };
  }
}

describe("the detector against a slow reference, over random interleavings", () => {
  it("answers, counts, windows and remembered identities match after every step", () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
        let now = T0;
        const detector = new Detector({ now: () => now, maxKeys: MAX_KEYS, dedupeSize: DEDUPE_SIZE });
        const reference = new Reference(() => now);
        const sent: LogEvent[] = [];
        for (const s of steps) {
          if (s.kind === "tick") {
            now += s.ms;
            continue;
          }
          let event: LogEvent;
          if (s.kind === "repeat") {
            if (sent.length === 0) continue;
            event = sent[s.pick % sent.length]!; // the same line again (a re-read, a duplicate delivery)
          } else {
            event = hardLimit(s.user === -1 ? "" : USERS[s.user]!, now + s.dt, PODS[s.pod]);
            if (s.user === -1) delete event.fields.userId;
            if (s.insertId !== null) event.insertId = `id-${s.insertId}-${sent.length}`;
            sent.push(event);
          }
          const r = RULES[s.rule]!;
          const match = r.match(event);
          expect(match).not.toBeNull();
          const got = detector.observe(r, event, match as Match);
          const want = reference.observe(r, event);
          if (typeof want === "object" && want !== null) {
            expect(typeof got === "object" && got !== null, `a trigger was expected: ${JSON.stringify(want.keyString)}`).toBe(true);
            const t = got as Trigger;
            expect({ key: t.key, keyString: t.keyString, userId: t.userId, pod: t.pod, total: t.total, firstAt: t.firstAt, at: t.at }).toEqual({
              key: want.key,
              keyString: want.keyString,
              userId: want.userId,
              pod: want.pod,
              total: want.total,
              firstAt: want.firstAt,
              at: want.at,
            });
            expect(t.entries.length).toBe(want.entries.length);
            t.entries.forEach((e, i) => expect(e).toBe(want.entries[i]));
          } else {
            expect(got).toBe(want);
          }
          expect(detector.stats).toEqual(reference.stats);
          expect(detector.size).toBe(reference.windows.length);
          expect(detector.remembered).toBe(reference.seen.length);
        }
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });
});
