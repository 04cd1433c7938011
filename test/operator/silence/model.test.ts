/**
 * The silence record: what it accepts, what it refuses (each refusal a
 * reason on-call can read), and what a silence matches.
 */
import { describe, expect, it } from "vitest";
import {
  assertHoldId,
  describeHold,
  expired,
  isActive,
  matches,
  MAX_PAUSE_MS,
  MAX_SILENCE_MS,
  newPause,
  newSilence,
  Silence,
  SILENCE_ID_PATTERN,
} from "../../../src/operator/silence/model.js";

const NOW = Date.parse("2026-11-26T12:00:00Z");
const HOUR = 3_600_000;
const base = (): Silence => newSilence({ matchers: { userId: "105945141827451681156" }, forMs: 2 * HOUR, by: "alice", comment: "investigating", now: NOW });

describe("a silence record", () => {
  it("gets a random id shaped like sil-<16 hex digits>, different each time", () => {
    const ids = new Set(Array.from({ length: 200 }, () => base().id));
    expect(ids.size).toBe(200);
    for (const id of ids) expect(id).toMatch(SILENCE_ID_PATTERN);
  });

  it.each<[string, (s: Silence) => unknown, RegExp]>([
    ["no matcher", (s) => ({ ...s, matchers: {} }), /at least one matcher/],
    ["a matcher it does not know", (s) => ({ ...s, matchers: { user: "u" } }), /Unrecognized key/],
    ["a user id with a slash", (s) => ({ ...s, matchers: { userId: "../etc" } }), /user id must match/],
    ["a pod name in capitals", (s) => ({ ...s, matchers: { pod: "Chat-0" } }), /a pod name/],
    ["a rule name with a dot", (s) => ({ ...s, matchers: { rule: "a.b" } }), /a rule name/],
    ["an empty author", (s) => ({ ...s, createdBy: "  " }), /must not be empty/],
    ["an author with an escape sequence", (s) => ({ ...s, createdBy: "alice\u001b[2J" }), /printable/],
    ["a comment with a newline", (s) => ({ ...s, comment: "one\ntwo" }), /printable/],
    ["a comment with a right-to-left override", (s) => ({ ...s, comment: "abc\u202edef" }), /printable/],
    ["a comment too long", (s) => ({ ...s, comment: "x".repeat(501) }), /at most 500/],
    ["an end before its start", (s) => ({ ...s, endsAt: new Date(NOW - 1).toISOString() }), /ends before it starts/],
    ["longer than 30 days", (s) => ({ ...s, endsAt: new Date(NOW + MAX_SILENCE_MS + 1).toISOString() }), /longer than 720 h/],
    ["a malformed id", (s) => ({ ...s, id: "sil-XYZ" }), /silence id/],
    ["the pause id with matchers", (s) => ({ ...s, id: "pause" }), /the pause matches everything/],
  ])("refuses %s", (_name, change, message) => {
    const parsed = Silence.safeParse(change(base()));
    expect(parsed.success).toBe(false);
    expect(parsed.error!.issues.map((i) => i.message).join("; ")).toMatch(message);
  });

  it("a pause has no matchers and lasts at most 24 h", () => {
    const pause = newPause({ forMs: HOUR, by: "bob", comment: "deploy", now: NOW });
    expect(pause).toMatchObject({ id: "pause", matchers: {}, endsAt: "2026-11-26T13:00:00.000Z" });
    expect(() => newPause({ forMs: MAX_PAUSE_MS + 1, by: "bob", comment: "deploy", now: NOW })).toThrow(/longer than 24 h/);
  });

  it.each([["sil-0123456789abcdef", true], ["pause", true], ["sil-0123456789ABCDEF", false], ["../pause", false], ["sil-0123456789abcdef.json", false], ["", false], [7, false]])(
    "assertHoldId(%j) accepts: %s",
    (id, ok) => {
      if (ok) expect(() => assertHoldId(id)).not.toThrow();
      else expect(() => assertHoldId(id)).toThrow(expect.objectContaining({ code: "ERR_RECLAIM_SILENCE_ID" }));
    },
  );

  it("is active from its start until (not including) its end; expiring it ends it now and says by whom", () => {
    const s = base();
    expect([isActive(s, NOW - 1), isActive(s, NOW), isActive(s, NOW + 2 * HOUR - 1), isActive(s, NOW + 2 * HOUR)]).toEqual([false, true, true, false]);
    const ended = expired(s, "carol", NOW + HOUR);
    expect(ended).toMatchObject({ endsAt: "2026-11-26T13:00:00.000Z", expiredBy: "carol", expiredAt: "2026-11-26T13:00:00.000Z" });
    expect(isActive(ended, NOW + HOUR)).toBe(false);
    // Expiring one that already ended does not move its end later.
    expect(expired(ended, "dave", NOW + 5 * HOUR).endsAt).toBe("2026-11-26T13:00:00.000Z");
  });

  it.each<[string, Silence["matchers"], { userId: string; pod: string | null; rule: string }, boolean]>([
    ["user: the same user", { userId: "u1" }, { userId: "u1", pod: "p0", rule: "lockout" }, true],
    ["user: another user", { userId: "u1" }, { userId: "u2", pod: "p0", rule: "lockout" }, false],
    ["pod: the same pod", { pod: "p0" }, { userId: "u1", pod: "p0", rule: "lockout" }, true],
    ["pod: another pod", { pod: "p0" }, { userId: "u1", pod: "p1", rule: "lockout" }, false],
    ["pod: an unknown pod may be that pod", { pod: "p0" }, { userId: "u1", pod: null, rule: "lockout" }, true],
    ["rule: the same rule", { rule: "lockout" }, { userId: "u1", pod: "p0", rule: "lockout" }, true],
    ["rule: another rule", { rule: "lockout" }, { userId: "u1", pod: "p0", rule: "at-limit" }, false],
    ["user and rule: both match", { userId: "u1", rule: "lockout" }, { userId: "u1", pod: null, rule: "lockout" }, true],
    ["user and rule: only one matches", { userId: "u1", rule: "lockout" }, { userId: "u1", pod: null, rule: "at-limit" }, false],
  ])("matches %s: %s", (_name, matchers, subject, expected) => {
    expect(matches({ ...base(), matchers }, subject)).toBe(expected);
  });

  it("says on a record which hold, whose, until when and why", () => {
    const s = base();
    expect(describeHold(s)).toBe(`silenced by ${s.id} (user=105945141827451681156) of alice until 2026-11-26T14:00:00.000Z: "investigating"`);
    expect(describeHold(newPause({ forMs: HOUR, by: "bob", comment: "deploy", now: NOW }))).toBe('automation paused by bob until 2026-11-26T13:00:00.000Z: "deploy"');
  });
});
