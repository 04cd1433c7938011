/**
 * The guards' rules, each at its edge (issue 20: mutation testing found these
 * unpinned): which records count as attempts, cooldowns and breaker failures,
 * where each window ends to the millisecond, what a term rebuilt from the
 * records holds, and what pruning forgets. Each case builds the guards from
 * incident records, as a new term does, and asks them.
 */
import { describe, expect, it } from "vitest";
import { checkGuards, GuardState } from "../../src/operator/decide/guards.js";
import type { Trigger } from "../../src/operator/detect/detector.js";
import { syntheticTrigger } from "../../src/operator/detect/synthetic.js";
import type { Incident, IncidentStatus } from "../../src/operator/incidents/model.js";
import { close, newIncident } from "../../src/operator/incidents/record.js";
import { rule, T0 } from "../support/rules.js";

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

const r = rule("r", { guards: { cooldown: "10m", maxAttemptsPerDay: 3, maxPerHour: 4, circuitBreaker: { failures: 2, openFor: "30m" } } });
const KEY = "userId=u,pod=factory-0";

function trigger(user: string, at: number, pod = "factory-0"): Trigger {
  return syntheticTrigger(r, { userId: user, pod, namespace: null }, at, { kind: "sweep", message: "at the limit", fields: {} })!;
}

/** A record as the engine writes it: opened at `openedAt`, then (unless "open") closed with `status` at `closedAt`. */
function record(user: string, openedAt: number, status: IncidentStatus | "open", closedAt = openedAt + MIN, options: { dryRun?: boolean; pod?: string } = {}): Incident {
  const dryRun = options.dryRun ?? false;
  const incident = newIncident(trigger(user, openedAt, options.pod), { now: openedAt, control: "http://127.0.0.1:9", dryRun, status: status === "open" ? "open" : status === "suppressed" || status === "held" ? status : "open" });
  if (status !== "open" && status !== "held") close(incident, status, closedAt, "test");
  if (status === "held") incident.closedAt = new Date(closedAt).toISOString();
  return incident;
}

function rebuilt(...records: Incident[]): GuardState {
  const s = new GuardState();
  s.rebuild(records);
  return s;
}

const verdict = (s: GuardState, user: string, now: number, globalDryRun = false): string | null =>
  checkGuards({ trigger: trigger(user, now), now, globalDryRun }, s).reason;

describe("the circuit breaker counts failures in a row", () => {
  it("a resolved incident between two failures resets the count: failures in a row, not in total", () => {
    const s = rebuilt(record("a", T0, "escalated", T0 + MIN), record("b", T0 + 2 * MIN, "resolved", T0 + 3 * MIN), record("c", T0 + 4 * MIN, "failed", T0 + 5 * MIN));
    expect(s.circuitOpen("r", T0 + 6 * MIN, 30 * MIN, 2)).toBe(false);
    expect(s.failuresInARow("r")).toBe(1);
    expect(s.circuit("r", T0 + 6 * MIN, 30 * MIN, 2)).toEqual({ open: false, incidents: [], openedAt: null, closesAt: null });
    // The same three without the resolution in between open it.
    const t = rebuilt(record("a", T0, "escalated", T0 + MIN), record("c", T0 + 4 * MIN, "failed", T0 + 5 * MIN));
    expect(t.circuitOpen("r", T0 + 6 * MIN, 30 * MIN, 2)).toBe(true);
    expect(verdict(t, "d", T0 + 6 * MIN)).toBe("circuit_open");
  });

  it("is open from the failure that reaches the threshold until openFor after the latest, to the millisecond", () => {
    const first = record("a", T0, "escalated", T0 + MIN);
    const second = record("b", T0 + 2 * MIN, "escalated", T0 + 3 * MIN);
    const s = rebuilt(first, second);
    const view = s.circuit("r", T0 + 4 * MIN, 30 * MIN, 2);
    expect(view).toEqual({ open: true, incidents: [first.id, second.id], openedAt: T0 + 3 * MIN, closesAt: T0 + 33 * MIN });
    expect(s.circuitOpen("r", T0 + 33 * MIN - 1, 30 * MIN, 2)).toBe(true);
    expect(s.circuitOpen("r", T0 + 33 * MIN, 30 * MIN, 2)).toBe(false);
    // One failure short of the threshold is closed.
    expect(s.circuitOpen("r", T0 + 4 * MIN, 30 * MIN, 3)).toBe(false);
  });

  it("after it closed by itself, the next failure opens it again, and the view says it opened then", () => {
    const s = rebuilt(record("a", T0, "failed", T0 + MIN), record("b", T0 + 2 * MIN, "failed", T0 + 2 * MIN), record("c", T0 + 40 * MIN, "failed", T0 + 41 * MIN));
    const view = s.circuit("r", T0 + 42 * MIN, 30 * MIN, 2);
    expect(view.open).toBe(true);
    expect(view.openedAt).toBe(T0 + 41 * MIN);
    expect(view.closesAt).toBe(T0 + 71 * MIN);
  });

  it("suppressed, interrupted, held and dry-run records are no failures of the live breaker", () => {
    const s = rebuilt(
      record("a", T0, "suppressed", T0),
      record("b", T0 + MIN, "interrupted", T0 + 2 * MIN),
      record("c", T0 + 3 * MIN, "held", T0 + 4 * MIN),
      record("d", T0 + 5 * MIN, "escalated", T0 + 6 * MIN, { dryRun: true }),
      record("e", T0 + 7 * MIN, "failed", T0 + 8 * MIN),
    );
    expect(s.failuresInARow("r")).toBe(1);
    expect(s.circuitOpen("r", T0 + 9 * MIN, 30 * MIN, 2)).toBe(false);
    // The dry-run failure counts in the dry-run ledger only.
    expect(s.circuitOpen("r", T0 + 9 * MIN, 30 * MIN, 1, true)).toBe(true);
    // A dry run's own record (always suppressed) is no failure of the dry-run breaker either.
    const dry = rebuilt(record("d", T0, "suppressed", T0, { dryRun: true }));
    expect(dry.circuitOpen("r", T0 + MIN, 30 * MIN, 1, true)).toBe(false);
  });

  it("a failure closed at the very time of a resolution counts as before it, whatever order the records come in", () => {
    const failed = record("a", T0, "failed", T0 + MIN);
    const resolved = record("b", T0, "resolved", T0 + MIN);
    for (const order of [[failed, resolved], [resolved, failed]]) {
      const s = new GuardState();
      for (const incident of order) {
        s.opened(incident);
        s.closed(incident);
      }
      expect(s.failuresInARow("r")).toBe(0);
    }
  });
});

describe("attempts and cooldowns: only incidents that acted count", () => {
  it("a suppressed or held record is no attempt and starts no cooldown; an interrupted one is both", () => {
    const s = rebuilt(record("u", T0, "suppressed", T0), record("v", T0, "held", T0 + MIN), record("w", T0, "interrupted", T0 + MIN));
    expect(s.attemptsToday("r", KEY, T0 + 2 * MIN)).toBe(0);
    expect(s.cooling("r", KEY, T0 + 2 * MIN, 10 * MIN)).toBe(false);
    expect(verdict(s, "u", T0 + 2 * MIN)).toBeNull();
    expect(verdict(s, "v", T0 + 2 * MIN)).toBeNull();
    expect(s.attemptsToday("r", "userId=w,pod=factory-0", T0 + 2 * MIN)).toBe(1);
    expect(verdict(s, "w", T0 + 2 * MIN)).toBe("cooldown");
    // Where a later suppression is counted: the key's latest record, acted on or not.
    expect(s.latestIncident("r", KEY)).toMatch(/-r-/);
  });

  it("a dry-run record counts in the dry-run ledger only: a live trigger after it is not cooled down or limited", () => {
    const s = rebuilt(record("u", T0, "suppressed", T0, { dryRun: true }));
    expect(s.attemptsToday("r", KEY, T0 + MIN)).toBe(0);
    expect(s.attemptsToday("r", KEY, T0 + MIN, true)).toBe(1);
    expect(s.cooling("r", KEY, T0 + MIN, 10 * MIN)).toBe(false);
    expect(s.cooling("r", KEY, T0 + MIN, 10 * MIN, true)).toBe(true);
    expect(s.actedThisHour("r", T0 + MIN)).toBe(0);
    expect(s.actedThisHour("r", T0 + MIN, true)).toBe(1);
    expect(verdict(s, "u", T0 + MIN)).toBeNull();
    expect(verdict(s, "u", T0 + MIN, true)).toBe("cooldown");
  });

  it("the cooldown ends exactly cooldown after the close", () => {
    const s = rebuilt(record("u", T0, "resolved", T0 + MIN));
    expect(s.cooling("r", KEY, T0 + 11 * MIN - 1, 10 * MIN)).toBe(true);
    expect(s.cooling("r", KEY, T0 + 11 * MIN, 10 * MIN)).toBe(false);
    expect(verdict(s, "u", T0 + 11 * MIN - 1)).toBe("cooldown");
    expect(verdict(s, "u", T0 + 11 * MIN)).toBeNull();
  });

  it("attempts count over the last day: one opened exactly a day ago no longer counts; at the limit the next is stopped", () => {
    const s = rebuilt(record("u", T0, "resolved"), record("u", T0 + 20 * MIN, "resolved"), record("u", T0 + 40 * MIN, "resolved"));
    expect(s.attemptsToday("r", KEY, T0 + DAY - 1)).toBe(3);
    expect(s.attemptsToday("r", KEY, T0 + DAY)).toBe(2);
    expect(verdict(s, "u", T0 + DAY - 1)).toBe("max_attempts");
    expect(verdict(s, "u", T0 + DAY)).toBeNull();
  });

  it("the hourly limit counts incidents opened in the last hour across keys, to the millisecond", () => {
    const s = rebuilt(...["a", "b", "c", "d"].map((user, i) => record(user, T0 + i, "resolved", T0 + i + 1)));
    expect(s.actedThisHour("r", T0 + HOUR - 1)).toBe(4);
    expect(verdict(s, "e", T0 + HOUR - 1)).toBe("rate_limit");
    expect(s.actedThisHour("r", T0 + HOUR)).toBe(3);
    expect(verdict(s, "e", T0 + HOUR)).toBeNull();
  });
});

describe("a term rebuilt from the records", () => {
  it("holds an incident left open as in flight: its key and its user are busy until it closes, and it is where suppressions count", () => {
    const open = record("u", T0, "open");
    const s = rebuilt(open);
    expect(s.inFlightFor("r", KEY)).toBe(true);
    expect(s.userBusy("u", "factory-0")).toBe(true);
    expect(s.userBusy("u", "factory-9")).toBe(false);
    expect(s.userBusy("u", null)).toBe(true);
    expect(s.latestIncident("r", KEY)).toBe(open.id);
    expect(verdict(s, "u", T0 + DAY - 1)).toBe("in_flight");
    expect(s.cooling("r", KEY, T0 + MIN, 10 * MIN)).toBe(false); // not closed: no cooldown yet
    close(open, "resolved", T0 + 2 * MIN, "test");
    s.closed(open);
    expect(s.inFlightFor("r", KEY)).toBe(false);
    expect(s.userBusy("u", null)).toBe(false);
    expect(s.size.users).toBe(0);
    expect(verdict(s, "u", T0 + 3 * MIN)).toBe("cooldown");
  });

  it("gives the same verdicts whatever order the records are listed in", () => {
    const records = [record("u", T0, "resolved"), record("u", T0 + 20 * MIN, "escalated", T0 + 25 * MIN), record("v", T0 + 30 * MIN, "failed", T0 + 31 * MIN), record("w", T0 + 32 * MIN, "open")];
    const forward = rebuilt(...records);
    const backward = rebuilt(...[...records].reverse());
    for (const s of [forward, backward]) {
      expect(s.attemptsToday("r", KEY, T0 + 40 * MIN)).toBe(2);
      expect(s.cooling("r", KEY, T0 + 34 * MIN, 10 * MIN)).toBe(true);
      expect(s.circuitOpen("r", T0 + 40 * MIN, 30 * MIN, 2)).toBe(true);
      expect(s.inFlightFor("r", "userId=w,pod=factory-0")).toBe(true);
    }
  });

  it("a reservation holds the key and the user until released, and release gives back only a reservation", () => {
    const s = new GuardState();
    const held = s.reserve(trigger("u", T0));
    expect(s.inFlightFor("r", KEY)).toBe(true);
    expect(s.userBusy("u", "factory-0")).toBe(true);
    expect(s.latestIncident("r", KEY)).toBeNull(); // reserved, not yet an incident
    s.release(held);
    expect(s.inFlightFor("r", KEY)).toBe(false);
    expect(s.userBusy("u", null)).toBe(false);
    // Once the incident is opened, the key is its own: releasing the old reservation frees nothing.
    const again = s.reserve(trigger("u", T0 + 1));
    const open = record("u", T0 + 1, "open");
    s.opened(open);
    s.release(again);
    expect(s.inFlightFor("r", KEY)).toBe(true);
    expect(s.userBusy("u", "factory-0")).toBe(true);
    expect(s.latestIncident("r", KEY)).toBe(open.id);
  });
});

describe("pruning", () => {
  it("forgets keys unchanged for longer than the horizon (never less than a day), keeps newer ones and keys in flight", () => {
    const s = rebuilt(record("old", T0, "resolved", T0 + MIN), record("new", T0 + 2 * HOUR, "resolved", T0 + 2 * HOUR + MIN), record("open", T0, "open"));
    expect(s.size.live).toBe(3);
    s.prune(T0 + DAY + MIN, 1000); // a horizon under a day counts as a day
    expect(s.latestIncident("r", "userId=old,pod=factory-0")).toBeNull();
    expect(s.latestIncident("r", "userId=new,pod=factory-0")).not.toBeNull();
    expect(s.inFlightFor("r", "userId=open,pod=factory-0")).toBe(true);
    s.prune(T0 + 3 * DAY);
    expect(s.latestIncident("r", "userId=new,pod=factory-0")).toBeNull();
    expect(s.inFlightFor("r", "userId=open,pod=factory-0")).toBe(true);
  });

  it("a longer horizon than a day keeps keys that long", () => {
    const s = rebuilt(record("u", T0, "resolved", T0 + MIN));
    s.prune(T0 + 2 * DAY, 3 * DAY);
    expect(s.latestIncident("r", KEY)).not.toBeNull();
    s.prune(T0 + 3 * DAY + 2 * MIN, 3 * DAY);
    expect(s.latestIncident("r", KEY)).toBeNull();
  });

  it("keeps at most maxKeys keys, forgetting the least recently changed first", () => {
    const s = new GuardState({ maxKeys: 2 });
    s.rebuild([record("a", T0, "resolved"), record("b", T0 + MIN, "resolved"), record("c", T0 + 2 * MIN, "resolved")]);
    expect(s.size.live).toBe(2);
    expect(s.latestIncident("r", "userId=a,pod=factory-0")).toBeNull();
    expect(s.latestIncident("r", "userId=c,pod=factory-0")).not.toBeNull();
    expect(() => new GuardState({ maxKeys: 0 })).toThrow(/maxKeys must be a positive integer, got 0/);
  });
});

/** A record whose evidence entries have these times (the source's clock), closed (resolved) at `closedAt`. */
function withEvidence(user: string, openedAt: number, times: number[], closedAt: number): Incident {
  const incident = record(user, openedAt, "resolved", closedAt);
  const [entry] = incident.evidence.entries;
  incident.evidence.entries = times.map((t) => ({ ...(entry ?? { severity: "ERROR", event: null, message: "", fields: {}, insertId: null }), time: new Date(t).toISOString() }));
  return incident;
}

describe("what a re-read entry is covered by (ADR 29)", () => {
  it("the newest entry any incident of the key was opened on, or the latest close, whichever is later", () => {
    // The pod's clock runs ahead: its entries are stamped after the operator closed the incident.
    const s = rebuilt(withEvidence("u", T0, [T0 + 4 * MIN, T0 + 5 * MIN], T0 + MIN));
    expect(s.covered(trigger("u", T0 + 5 * MIN), false)).toBe(true);
    expect(s.covered(trigger("u", T0 + 5 * MIN + 1), false)).toBe(false);
    // A second, older incident does not move it back; a newer close moves it on.
    const first = withEvidence("u", T0, [T0 + 4 * MIN], T0 + MIN);
    const t = rebuilt(first, withEvidence("u", T0 - 10 * MIN, [T0 - 10 * MIN], T0 - 9 * MIN));
    expect(t.covered(trigger("u", T0 + 4 * MIN), false)).toBe(true);
    const later = record("u", T0 + 20 * MIN, "resolved", T0 + 30 * MIN);
    // A later incident whose entries are older (another pod clock) does not move it back either.
    const skewed = rebuilt(withEvidence("u", T0, [T0 + 5 * MIN], T0 + 2 * MIN), withEvidence("u", T0 + MIN, [T0 + MIN], T0 + 3 * MIN));
    expect(skewed.covered(trigger("u", T0 + 4 * MIN), false)).toBe(true);
    const u = rebuilt(first, later);
    expect(u.covered(trigger("u", T0 + 29 * MIN), false)).toBe(true);
    expect(u.covered(trigger("u", T0 + 30 * MIN + 1), false)).toBe(false);
  });

  it("only earlier terms' records cover: within a term the detector and the other guards decide (a line during the ladder counts as in_flight)", () => {
    const s = rebuilt();
    const open = record("u", T0, "open");
    s.opened(open);
    expect(s.covered(trigger("u", T0), false)).toBe(false);
    expect(verdict(s, "u", T0)).toBe("in_flight");
    close(open, "resolved", T0 + MIN, "test");
    s.closed(open);
    expect(s.covered(trigger("u", T0 + 30_000), false)).toBe(false);
    expect(verdict(s, "u", T0 + 2 * MIN)).toBe("cooldown");
  });

  it("a state never rebuilt (a term's own incidents) covers nothing either", () => {
    const s = new GuardState();
    const own = record("u", T0, "open");
    s.opened(own);
    close(own, "resolved", T0 + MIN, "test");
    s.closed(own);
    expect(s.covered(trigger("u", T0), false)).toBe(false);
    expect(s.covered(trigger("u", T0 + MIN), false)).toBe(false);
    expect(verdict(s, "u", T0 + MIN)).toBe("cooldown");
  });
});

describe("closes told out of order", () => {
  it("an earlier close told after a later one does not move the cooldown back", () => {
    const later = record("u", T0 + 5 * MIN, "resolved", T0 + 10 * MIN);
    const earlier = record("u", T0, "resolved", T0 + 2 * MIN);
    const s = new GuardState();
    for (const incident of [later, earlier]) s.opened(incident);
    s.closed(later);
    s.closed(earlier);
    expect(s.cooling("r", KEY, T0 + 19 * MIN, 10 * MIN)).toBe(true);
  });

  it("failures closed after a resolution but told before it stay counted, with their ids, in time order", () => {
    const f1 = record("a", T0 + 2 * MIN, "failed", T0 + 3 * MIN);
    const f2 = record("b", T0 + 3 * MIN, "escalated", T0 + 4 * MIN);
    const before = record("c", T0, "failed", T0 + MIN);
    const resolved = record("d", T0, "resolved", T0 + 2 * MIN);
    const s = new GuardState();
    for (const incident of [f2, f1, before, resolved]) {
      s.opened(incident);
      s.closed(incident);
    }
    expect(s.failuresInARow("r")).toBe(2);
    expect(s.circuit("r", T0 + 5 * MIN, 30 * MIN, 2)).toEqual({ open: true, incidents: [f1.id, f2.id], openedAt: T0 + 4 * MIN, closesAt: T0 + 34 * MIN });
    // Only one failure after the resolution: one, not none.
    const t = new GuardState();
    for (const incident of [f1, resolved]) {
      t.opened(incident);
      t.closed(incident);
    }
    expect(t.failuresInARow("r")).toBe(1);
    expect(t.circuit("r", T0 + 5 * MIN, 30 * MIN, 1).incidents).toEqual([f1.id]);
  });

  it("failures closed at the same time are ordered by id, whatever order they are told in", () => {
    const [x, y] = [record("x", T0, "failed", T0 + MIN), record("y", T0, "failed", T0 + MIN)].sort((a, b) => a.id.localeCompare(b.id));
    for (const order of [[x!, y!], [y!, x!]]) {
      const s = new GuardState();
      for (const incident of order) {
        s.opened(incident);
        s.closed(incident);
      }
      expect(s.circuit("r", T0 + 2 * MIN, 30 * MIN, 2).incidents).toEqual([x!.id, y!.id]);
    }
  });

  it("a gap of exactly openFor between failures starts a new opening", () => {
    const s = rebuilt(record("a", T0, "failed", T0 + MIN), record("b", T0 + 2 * MIN, "failed", T0 + 31 * MIN));
    expect(s.circuit("r", T0 + 32 * MIN, 30 * MIN, 1).openedAt).toBe(T0 + 31 * MIN);
    const t = rebuilt(record("a", T0, "failed", T0 + MIN), record("b", T0 + 2 * MIN, "failed", T0 + 31 * MIN - 1));
    expect(t.circuit("r", T0 + 32 * MIN, 30 * MIN, 1).openedAt).toBe(T0 + MIN);
  });

  it("keeps at most 1000 failures of a breaker", () => {
    const s = new GuardState();
    for (let i = 0; i < 1001; i++) {
      const incident = record(`u${i}`, T0 + i, "failed", T0 + i + 1);
      s.opened(incident);
      s.closed(incident);
    }
    expect(s.failuresInARow("r")).toBe(1000);
    expect(s.circuit("r", T0 + 2000, 30 * MIN, 2).incidents).toHaveLength(20);
  });
});

describe("who is busy", () => {
  it("a reservation or incident for an unknown pod makes the user busy on every pod; a known pod only there", () => {
    const s = new GuardState();
    const held = s.reserve(trigger("u", T0, null as unknown as string));
    expect(s.userBusy("u", "factory-3")).toBe(true);
    s.release(held);
    s.release(held); // twice: nothing left to give back, and no error
    expect(s.size.users).toBe(0);
    s.reserve(trigger("v", T0));
    expect(s.userBusy("v", "factory-9")).toBe(false);
    expect(s.userBusy("v", "factory-0")).toBe(true);
    const open = record("w", T0, "open");
    open.target.pod = null;
    s.opened(open);
    expect(s.userBusy("w", "factory-5")).toBe(true);
  });

  it("opening an incident replaces only its own reservation: the user's reservation on another pod stays", () => {
    const s = new GuardState();
    s.reserve(trigger("u", T0, "factory-0"));
    s.reserve({ ...trigger("u", T0, "factory-1"), keyString: "userId=u,pod=factory-1" });
    s.opened(record("u", T0, "open"));
    expect(s.userBusy("u", "factory-1")).toBe(true);
    expect(s.inFlightFor("r", "userId=u,pod=factory-1")).toBe(true);
  });

  it("a closed, dry-run or rollup record holds nothing in flight; closing an older record of the key leaves the open one in flight", () => {
    const s = new GuardState();
    s.opened(record("a", T0, "resolved"));
    s.opened(record("b", T0, "suppressed", T0, { dryRun: true }));
    const rollup = record("c", T0, "suppressed");
    rollup.rollup = { reason: "rate_limit", hour: new Date(T0).toISOString(), part: 1, keys: [], unlisted: { triggers: 0, lastAt: null } };
    s.opened(rollup);
    s.closed(rollup);
    expect(s.size).toEqual({ live: 1, dry: 1, inFlight: 0, users: 0 });
    const open = record("u", T0 + MIN, "open");
    s.opened(open);
    s.closed(record("u", T0 - DAY / 2, "resolved", T0 - DAY / 2 + MIN));
    expect(s.inFlightFor("r", KEY)).toBe(true);
    expect(s.latestIncident("r", KEY)).toBe(open.id);
  });
});

describe("what an incident holds while it runs", () => {
  it("an incident opened live holds its key and its user until it closes, then neither", () => {
    const s = new GuardState();
    const open = record("u", T0, "open");
    s.opened(open);
    expect(s.size).toEqual({ live: 1, dry: 0, inFlight: 1, users: 1 });
    expect(s.inFlightFor("r", KEY)).toBe(true);
    close(open, "escalated", T0 + MIN, "test");
    s.closed(open);
    expect(s.inFlightFor("r", KEY)).toBe(false);
    expect(s.userBusy("u", "factory-0")).toBe(false);
    expect(s.size).toEqual({ live: 1, dry: 0, inFlight: 0, users: 0 });
  });

  it("after a resolution that ended every counted failure, the circuit names only the failures since", () => {
    const s = rebuilt(
      record("a", T0, "escalated", T0 + MIN),
      record("b", T0 + 2 * MIN, "escalated", T0 + 3 * MIN),
      record("c", T0 + 4 * MIN, "resolved", T0 + 5 * MIN),
    );
    const d = record("d", T0 + 6 * MIN, "failed", T0 + 7 * MIN);
    const e = record("e", T0 + 8 * MIN, "failed", T0 + 9 * MIN);
    s.opened(d);
    s.closed(d);
    s.opened(e);
    s.closed(e);
    expect(s.circuit("r", T0 + 10 * MIN, 30 * MIN, 2)).toEqual({ open: true, incidents: [d.id, e.id], openedAt: T0 + 9 * MIN, closesAt: T0 + 39 * MIN });
  });
});

describe("rebuilding and pruning, in time", () => {
  it("rebuilt in the order incidents were detected: the key's latest record is the newest, however they are listed", () => {
    const older = record("u", T0, "resolved");
    const newer = record("u", T0 + 20 * MIN, "resolved", T0 + 21 * MIN);
    expect(rebuilt(newer, older).latestIncident("r", KEY)).toBe(newer.id);
  });

  it("a key's last change is its latest event, not its first: a long incident closed late is not pruned as old", () => {
    const open = record("u", T0, "open");
    const s = rebuilt(open);
    close(open, "resolved", T0 + DAY + HOUR, "test");
    s.closed(open);
    s.prune(T0 + DAY + 2 * HOUR);
    expect(s.latestIncident("r", KEY)).toBe(open.id);
  });

  it("one key at most is a valid bound", () => {
    const s = new GuardState({ maxKeys: 1 });
    s.rebuild([record("a", T0, "resolved"), record("b", T0 + MIN, "resolved")]);
    expect(s.size.live).toBe(1);
  });
});
