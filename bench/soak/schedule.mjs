// The soak benchmark's week of lockouts: a pure function of the options, so
// the simulation can make it one day at a time (nothing of it is held in the
// measured heap) and the check at the end can make it again to know whom it
// must find in the records.
//
// A lockout every `everyMinutes`, at the middle of its slot; each one is
//
//   - a user with zombie managers (the probe frees them: resolved), ~50 %;
//   - a user whose 20 managers are all live tabs (the probe frees nothing,
//     `force` evicts two: resolved), ~25 %;
//   - a user locked out a few minutes earlier, back within the rule's
//     10-minute cooldown (suppressed: cooldown, counted on their incident),
//     ~13 %;
//   - a new user otherwise.
//
// Every 30 minutes one of LEAKY_USERS users with a leak (the same four all
// week, in turn) is locked out again: after five a day the rule's
// maxAttemptsPerDay stops acting for them. More lockouts in an hour than the rule's maxPerHour (20)
// are stopped by `rate_limit` and listed in rollup records, and every day
// from 03:00 to 03:25 the factory's admission check answers 500: the
// verification cannot tell, so those incidents end `failed`, three in a row
// open the circuit breaker for 30 minutes, and what it stops is rolled up
// too. Most users are new ones, so the guards' per-user state must be pruned.
// Every day at noon the rule file is written again, so the operator reloads
// its rules once a day.

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

/** The simulated week starts here (a Monday, 00:00 UTC). */
export const START = Date.parse("2026-11-30T00:00:00Z");
/** The pod every line names. */
export const POD = "soak-factory-0";
/** Users with a leak: one of them, in turn, is locked out every LEAKY_EVERY_MS all week. */
export const LEAKY_USERS = 4;
const LEAKY_EVERY_MS = 30 * MINUTE_MS;
/** When the factory's admission check answers 500, each day (from, to: ms after midnight). */
export const ADMISSION_OUTAGE = { from: 3 * HOUR_MS, to: 3 * HOUR_MS + 25 * MINUTE_MS };
/** When the rule file is written again (same content, new mtime), each day: the operator reloads its rules. */
export const RULE_REWRITE = 12 * HOUR_MS;
/** A returning user comes back this long after their first lockout (at least one slot). */
const RETURN_AFTER_MS = 6 * MINUTE_MS;

/** A number in [0, 1) from the seed, the day and the slot (a stateless hash, so any slot can be made alone). */
function unit(seed, day, slot) {
  let x = (seed ^ Math.imul(day + 1, 0x9e3779b1) ^ Math.imul(slot + 1, 0x85ebca6b)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return (x >>> 0) / 2 ** 32;
}

/** Slots per day. */
export function slotsPerDay(opts) {
  return Math.floor((24 * 60) / opts.everyMinutes);
}

/** What slot `slot` of day `day` is: the user, their managers (live, zombies) and the kind. */
export function lockoutAt(opts, day, slot) {
  const every = opts.everyMinutes * MINUTE_MS;
  const at = START + day * DAY_MS + slot * every + every / 2;
  // Every LEAKY_EVERY_MS (at least every 6th slot) one of the leaky users, in turn.
  const leakyEvery = Math.max(6, Math.round(LEAKY_EVERY_MS / every));
  if (slot % leakyEvery === 0) {
    const turn = day * Math.ceil(slotsPerDay(opts) / leakyEvery) + slot / leakyEvery;
    return { at, userId: `soak-leaky-${turn % LEAKY_USERS}`, live: 14, zombies: 6, kind: "leaky" };
  }
  const u = unit(opts.seed, day, slot);
  const back = Math.max(1, Math.floor(RETURN_AFTER_MS / every));
  if (u >= 0.75 && u < 0.88 && slot >= back) {
    const earlier = lockoutAt(opts, day, slot - back);
    return { at, userId: earlier.userId, live: 14, zombies: 6, kind: "returning" };
  }
  const userId = `soak-d${day + 1}-${String(slot).padStart(5, "0")}`;
  if (u < 0.5) {
    const live = 10 + Math.floor(u * 16); // 10–17 live, the rest zombies
    return { at, userId, live, zombies: 20 - live, kind: "zombies" };
  }
  if (u < 0.75) return { at, userId, live: 20, zombies: 0, kind: "live tabs" };
  return { at, userId, live: 12, zombies: 8, kind: "zombies" };
}

/** Day `day`'s events in time order: lockouts, the admission outage's start and end, and the rule file rewritten. */
export function dayEvents(opts, day) {
  const events = [];
  for (let slot = 0; slot < slotsPerDay(opts); slot++) events.push({ type: "lockout", ...lockoutAt(opts, day, slot) });
  const midnight = START + day * DAY_MS;
  events.push(
    { type: "outage", at: midnight + ADMISSION_OUTAGE.from },
    { type: "heal", at: midnight + ADMISSION_OUTAGE.to },
    { type: "rewrite", at: midnight + RULE_REWRITE },
  );
  // Stable: at the same instant the others come before a lockout.
  return events.sort((a, b) => a.at - b.at || (a.type === "lockout" ? 1 : 0) - (b.type === "lockout" ? 1 : 0));
}

/** Lockouts per user over the whole run (for the check at the end). */
export function lockoutsByUser(opts) {
  const byUser = new Map();
  for (let day = 0; day < opts.days; day++) {
    for (let slot = 0; slot < slotsPerDay(opts); slot++) {
      const { userId } = lockoutAt(opts, day, slot);
      byUser.set(userId, (byUser.get(userId) ?? 0) + 1);
    }
  }
  return byUser;
}

/** The two lines the factory writes for one refusal at the limit (src/factory/admission.ts): HARD LIMIT, then UNEXPECTED FACTORY ERROR. */
export function refusalLines(userId, time) {
  const base = { severity: "ERROR", time: new Date(time).toISOString(), pod: POD };
  const fields = { userId, managers: 20, limit: 20, effectiveLimit: 20 };
  return (
    `${JSON.stringify({ ...base, event: "factory.hard_limit", ...fields, message: `HARD LIMIT: User ${userId} still over limit after cleanup (20/20)` })}\n` +
    `${JSON.stringify({
      ...base,
      event: "factory.error",
      ...fields,
      message: `UNEXPECTED FACTORY ERROR: User ${userId} has reached the maximum number of WebSocket managers (20). Emergency cleanup attempted but limit still exceeded. This may indicate a resource leak or extremely high connection rate.`,
    })}\n`
  );
}
