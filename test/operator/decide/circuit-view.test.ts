/**
 * What the guards tell on-call about a circuit breaker (`GuardState.circuit`),
 * and how `held` records count for the guards: like suppressed ones, never as
 * an attempt, a cooldown or a failure. Built from records in any order.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GuardState } from "../../../src/operator/decide/guards.js";
import type { Incident, IncidentStatus } from "../../../src/operator/incidents/model.js";
import { buildIncident } from "../../support/incidents.js";

const T0 = Date.parse("2026-11-26T12:00:00Z");
const MIN = 60_000;
const iso = (t: number): string => new Date(t).toISOString();

/** A closed record of rule `r` for `userId`, detected at `t` and closed a minute later. */
function record(status: IncidentStatus, t: number, userId = "u", salt = ""): Incident {
  const incident = buildIncident({ rule: "r", status, userId, detectedAt: iso(t), salt: `${salt}${t}` });
  return { ...incident, closedAt: iso(t + MIN), updatedAt: iso(t + MIN) };
}

describe("GuardState.circuit", () => {
  it("names the failures in a row that opened it, when it opened and when it closes; closed after openFor or a resolution", () => {
    const a = record("escalated", T0, "a");
    const b = record("failed", T0 + 2 * MIN, "b");
    const c = record("escalated", T0 + 4 * MIN, "c");
    const guards = new GuardState();
    guards.rebuild([a, b]);
    expect(guards.circuit("r", T0 + 3 * MIN + 1, 30 * MIN, 2)).toEqual({ open: true, incidents: [a.id, b.id], openedAt: T0 + 3 * MIN, closesAt: T0 + 33 * MIN });
    expect(guards.circuit("r", T0 + 3 * MIN + 1, 30 * MIN, 3).open).toBe(false); // below its threshold
    expect(guards.circuit("r", T0 + 33 * MIN, 30 * MIN, 2)).toEqual({ open: false, incidents: [], openedAt: null, closesAt: null });

    // A further failure holds it open for another openFor, from the same opening.
    guards.opened(c);
    guards.closed(c);
    expect(guards.circuit("r", T0 + 6 * MIN, 30 * MIN, 2)).toEqual({ open: true, incidents: [a.id, b.id, c.id], openedAt: T0 + 3 * MIN, closesAt: T0 + 35 * MIN });
    // Once it closed by itself, the next failure opens it again: it opened then.
    const d = record("failed", T0 + 60 * MIN, "d");
    guards.opened(d);
    guards.closed(d);
    expect(guards.circuit("r", T0 + 62 * MIN, 30 * MIN, 2)).toMatchObject({ open: true, openedAt: T0 + 61 * MIN, closesAt: T0 + 91 * MIN });

    const fixed = record("resolved", T0 + 70 * MIN, "e");
    guards.opened(fixed);
    guards.closed(fixed);
    expect(guards.circuit("r", T0 + 72 * MIN, 30 * MIN, 2).open).toBe(false);
  });

  it("is the same whatever order the records are read in", () => {
    const statuses: IncidentStatus[] = ["escalated", "failed", "resolved", "held", "suppressed", "interrupted"];
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...statuses), fc.integer({ min: 0, max: 120 })), { maxLength: 12 }), fc.integer({ min: 0, max: 200 }), (specs, at) => {
        const records = specs.map(([status, minute], i) => record(status, T0 + minute * MIN, `u${i}`, `${i}-`));
        const forward = new GuardState();
        forward.rebuild(records);
        const backward = new GuardState();
        backward.rebuild([...records].reverse());
        const now = T0 + at * MIN;
        expect(backward.circuit("r", now, 30 * MIN, 2)).toEqual(forward.circuit("r", now, 30 * MIN, 2));
      }),
      { numRuns: 300 },
    );
  });
});

describe("a held record, for the guards", () => {
  it("is where later triggers are counted, but no attempt, no cooldown and no failure", () => {
    const guards = new GuardState();
    const held = record("held", T0);
    guards.rebuild([held]);
    expect(guards.latestIncident("r", held.keyString)).toBe(held.id);
    expect(guards.attemptsToday("r", held.keyString, T0 + 2 * MIN)).toBe(0);
    expect(guards.cooling("r", held.keyString, T0 + 2 * MIN, 10 * MIN)).toBe(false);
    expect(guards.failuresInARow("r")).toBe(0);
    expect(guards.actedThisHour("r", T0 + 2 * MIN)).toBe(0);
  });
});
