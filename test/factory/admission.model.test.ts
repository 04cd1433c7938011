/**
 * A model-based test of the factory's admission lifecycle: the registry, the
 * queue, raises and AdmissionControl, wired as the factory wires them
 * (test/support/admission.ts), on one ManualClock that also runs their
 * timers (queue timeouts, raise ends).
 *
 * fast-check picks random interleavings, for two users under a limit of 3,
 * of: connection attempts; handshakes that finish or fail; disconnects;
 * `degrade` raises (as the control API's rung sets them: above the limit, for
 * a user holding a connection) with their own TTL and queue timeout; queued
 * clients that go away; and time passing. A small reference model predicts
 * every attempt's answer (admitted now, degraded with its notice, queued, or
 * refused with its reason) and every wake-up and timeout.
 *
 * After every step:
 * - every answer given is the one the model predicts, and no queued attempt
 *   has an answer yet;
 * - managers, reservations, queue lengths, raises in force and the users held
 *   are the model's, per user and in total (nothing leaks, nothing is lost);
 * - nobody waits in a queue while their user has a free slot, and a new
 *   attempt would be admitted without waiting exactly when nobody waits and
 *   a slot is free;
 * - a user is dated "at the limit" exactly while their managers fill the
 *   limit in force;
 * - the admissions counter by outcome is the model's.
 *
 * RECLAIM_MODEL_RUNS (default 300) sequences from RECLAIM_MODEL_SEED
 * (default fixed); a failure prints the seed and path to replay it.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebSocket } from "ws";
import { timersOf } from "../../src/contract/clock.js";
import type { Decision, Notice } from "../../src/factory/admission.js";
import { Manager } from "../../src/factory/manager.js";
import { AdmissionQueue, type TryReserve } from "../../src/factory/queue.js";
import { admissionHarness, type Harness } from "../support/admission.js";
import { ManualClock } from "../support/clock.js";
import { wsPair, type WsPair } from "../support/ws-pair.js";

const LIMIT = 3;
const QUEUE_MAX = 2;
const USERS = ["user-a", "user-b"] as const;
const RUNS = Number(process.env.RECLAIM_MODEL_RUNS ?? 300);
const SEED = Number(process.env.RECLAIM_MODEL_SEED ?? 20261205);

type Step =
  | { kind: "attempt"; user: number }
  | { kind: "handshake"; pick: number; ok: boolean }
  | { kind: "disconnect"; user: number; pick: number }
  | { kind: "degrade"; user: number; extra: number; ttlMs: number; queueTimeoutMs: number }
  | { kind: "leave"; pick: number }
  | { kind: "advance"; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("attempt" as const), user: fc.nat(1) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("handshake" as const), pick: fc.nat(20), ok: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("disconnect" as const), user: fc.nat(1), pick: fc.nat(20) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("degrade" as const),
      user: fc.nat(1),
      extra: fc.integer({ min: 1, max: 3 }),
      ttlMs: fc.integer({ min: 1, max: 5_000 }),
      queueTimeoutMs: fc.constantFrom(0, 500, 3_000),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("leave" as const), pick: fc.nat(20) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("advance" as const), ms: fc.constantFrom(1, 250, 499, 500, 1_000, 2_000, 3_001) }) },
);

/** What the model expects of one attempt. */
type Expected =
  | { state: "reserved"; decision: Decision }
  | { state: "manager"; decision: Decision }
  | { state: "done"; decision: Decision }
  | { state: "queued"; deadline: number };

interface Attempt {
  id: number;
  user: number;
  controller: AbortController;
  /** What the implementation answered, once it did. */
  answer: Decision | null;
  expected: Expected;
}

interface UserModel {
  managers: Manager[];
  reservations: number;
  raise: { limit: number; until: number; queueTimeoutMs: number } | null;
  /** Attempts waiting, first come first. */
  queue: Attempt[];
}

/** Settles promise callbacks (decide's awaits) and ready I/O. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Admitted, as AdmissionControl answers it. */
const admitted = (outcome: "admitted" | "degraded" | "queued", notice: Notice | null): Decision => ({ admitted: true, outcome, notice });
const refused = (reason: "limit" | "queue_full" | "queue_timeout" | "aborted"): Decision => ({ admitted: false, reason, retryAfterSeconds: 5 });

/** Every Manager of the model is on one real `ws` connection on 127.0.0.1 (the registry keys them by id). */
let pair: WsPair;
let socket: WebSocket;
beforeAll(async () => {
  pair = await wsPair();
  socket = pair.socket;
});
afterAll(() => pair.close());

/**
 * Runs `steps` against a fresh harness and the model, checking the invariants
 * after every step; the factory's queue timeout is `queueTimeoutMs` (0: no
 * queueing but under a raise that asks for it). `makeQueue` swaps the queue
 * (the planted bug below).
 */
async function run(steps: readonly Step[], queueTimeoutMs: number, makeQueue?: (tryReserve: TryReserve, clock: ManualClock) => AdmissionQueue): Promise<void> {
  const clock = new ManualClock();
  const h: Harness = admissionHarness(clock, {
    limit: LIMIT,
    queueTimeoutMs,
    queueMax: QUEUE_MAX,
    retryAfterSeconds: 5,
    ...(makeQueue === undefined ? {} : { makeQueue: (tryReserve) => makeQueue(tryReserve, clock) }),
  });
  const users: UserModel[] = USERS.map(() => ({ managers: [], reservations: 0, raise: null, queue: [] }));
  const attempts: Attempt[] = [];
  const counts = { admitted: 0, after_cleanup: 0, degraded: 0, queued: 0, refused: 0 };
  let nextId = 0;

  const now = (): number => clock.now();
  const inForce = (u: UserModel): UserModel["raise"] => (u.raise !== null && u.raise.until > now() ? u.raise : null);
  const effective = (u: UserModel): number => inForce(u)?.limit ?? LIMIT;
  const occupied = (u: UserModel): number => u.managers.length + u.reservations;

  /** The queue's wake: admit from the head while a slot is free under the limit in force. */
  const wake = (u: UserModel): void => {
    while (u.queue.length > 0 && occupied(u) < effective(u)) {
      const head = u.queue.shift()!;
      u.reservations++;
      head.expected = { state: "reserved", decision: admitted("queued", { mode: "queued", retryAfterMs: 0 }) };
      counts.queued++;
    }
  };

  const check = async (where: string): Promise<void> => {
    await settle();
    const at = `${where} (t+${now() - start} ms)`;
    for (const a of attempts) expect(a.answer, `${at}: attempt ${a.id}'s answer`).toEqual(a.expected.state === "queued" ? null : a.expected.decision);
    let held = 0;
    for (const [i, u] of users.entries()) {
      const id = USERS[i]!;
      const raise = inForce(u);
      const actual = {
        active: h.registry.active(id),
        occupied: h.registry.occupied(id),
        queued: h.queue.length(id),
        raise: h.registry.raiseOf(id),
        holds: h.registry.holds(id),
        atLimit: h.registry.atLimitSince(id) !== null,
      };
      const modelHolds = occupied(u) > 0 || u.raise !== null;
      expect(actual, `${at}: ${id}`).toEqual({
        active: u.managers.length,
        occupied: occupied(u),
        queued: u.queue.length,
        raise,
        holds: modelHolds,
        // Not held, the registry has no date for the user (and holds nothing that could fill a limit).
        atLimit: modelHolds && u.managers.length >= effective(u),
      });
      // What the chat server asks before an upgrade it could admit without waiting (the rung runner too).
      expect(h.admission.wouldAdmit(id), `${at}: ${id} would be admitted without waiting`).toBe(u.queue.length === 0 && occupied(u) < effective(u));
      // Nobody waits while a slot is free.
      if (h.queue.length(id) > 0) expect(h.registry.hasRoom(id), `${at}: ${id} has a free slot and a queue`).toBe(false);
      if (modelHolds) held++;
    }
    expect({ size: h.registry.size, queue: h.queue.size, users: h.registry.userCount }, `${at}: totals`).toEqual({
      size: users.reduce((n, u) => n + u.managers.length, 0),
      queue: users.reduce((n, u) => n + u.queue.length, 0),
      users: held,
    });
    const counted = (await h.metrics.admissions.get()).values;
    const byOutcome = Object.fromEntries(Object.keys(counts).map((o) => [o, counted.find((v) => v.labels.outcome === o)?.value ?? 0]));
    expect(byOutcome, `${at}: admissions by outcome`).toEqual(counts);
  };

  const start = now();
  try {
    for (const [n, s] of steps.entries()) {
      const where = `step ${n} ${JSON.stringify(s)}`;
      switch (s.kind) {
        case "attempt": {
          const u = users[s.user]!;
          const attempt: Attempt = { id: nextId++, user: s.user, controller: new AbortController(), answer: null, expected: { state: "queued", deadline: 0 } };
          const raise = inForce(u);
          if (u.queue.length === 0 && occupied(u) < LIMIT) {
            u.reservations++;
            counts.admitted++;
            attempt.expected = { state: "reserved", decision: admitted("admitted", null) };
          } else if (raise !== null && u.queue.length === 0 && occupied(u) < raise.limit) {
            u.reservations++;
            counts.degraded++;
            attempt.expected = { state: "reserved", decision: admitted("degraded", { mode: "degraded", retryAfterMs: raise.until - now() }) };
          } else {
            const timeout = raise !== null ? Math.max(raise.queueTimeoutMs, queueTimeoutMs) : queueTimeoutMs;
            if (timeout === 0) {
              counts.refused++;
              attempt.expected = { state: "done", decision: refused("limit") };
            } else if (u.queue.length >= QUEUE_MAX) {
              counts.refused++;
              attempt.expected = { state: "done", decision: refused("queue_full") };
            } else {
              attempt.expected = { state: "queued", deadline: now() + timeout };
              u.queue.push(attempt);
            }
          }
          attempts.push(attempt);
          void h.admission.decide(USERS[s.user]!, attempt.controller.signal).then((d) => (attempt.answer = d));
          break;
        }
        case "handshake": {
          const reserved = attempts.filter((a) => a.expected.state === "reserved");
          if (reserved.length === 0) break;
          const a = reserved[s.pick % reserved.length]!;
          const u = users[a.user]!;
          const decision = (a.expected as { decision: Decision }).decision;
          u.reservations--;
          if (s.ok) {
            const m = new Manager(USERS[a.user]!, socket, clock, null, null, `m${a.id}`);
            u.managers.push(m);
            a.expected = { state: "manager", decision };
            h.registry.commit(m);
          } else {
            a.expected = { state: "done", decision };
            wake(u);
            h.registry.release(USERS[a.user]!);
          }
          break;
        }
        case "disconnect": {
          const u = users[s.user]!;
          if (u.managers.length === 0) break;
          const [m] = u.managers.splice(s.pick % u.managers.length, 1);
          wake(u);
          expect(h.registry.remove(m!)).toBe(true);
          break;
        }
        case "degrade": {
          const u = users[s.user]!;
          // As the control API's rung: only for a user holding a connection, and only above the limit.
          if (occupied(u) === 0) break;
          u.raise = { limit: LIMIT + s.extra, until: now() + s.ttlMs, queueTimeoutMs: s.queueTimeoutMs };
          wake(u);
          h.registry.setRaise(USERS[s.user]!, { ...u.raise });
          break;
        }
        case "leave": {
          const waiting = attempts.filter((a) => a.expected.state === "queued");
          if (waiting.length === 0) break;
          const a = waiting[s.pick % waiting.length]!;
          const u = users[a.user]!;
          u.queue.splice(u.queue.indexOf(a), 1);
          a.expected = { state: "done", decision: refused("aborted") };
          a.controller.abort();
          break;
        }
        case "advance": {
          // Every queue timeout due by then refuses its waiter, and every raise due by then ends. Neither frees a
          // slot, so their order does not change the model.
          const target = now() + s.ms;
          const due = attempts.filter((a) => a.expected.state === "queued" && a.expected.deadline <= target);
          for (const a of due) {
            const u = users[a.user]!;
            u.queue.splice(u.queue.indexOf(a), 1);
            counts.refused++;
            a.expected = { state: "done", decision: refused("queue_timeout") };
          }
          for (const u of users) if (u.raise !== null && u.raise.until <= target) u.raise = null;
          clock.advance(s.ms);
          break;
        }
      }
      await check(where);
    }
  } finally {
    h.close();
    await settle();
  }
}

const sequences = fc.tuple(fc.array(step, { minLength: 1, maxLength: 80, size: "max" }), fc.constantFrom(0, 2_000));

describe("the factory's admission lifecycle, model-based", () => {
  it(`gives every attempt the model's answer and keeps every invariant over ${RUNS} random sequences (seed ${SEED})`, async () => {
    await fc.assert(
      fc.asyncProperty(sequences, ([steps, queueTimeoutMs]) => run(steps, queueTimeoutMs)),
      { numRuns: RUNS, seed: SEED, ...(process.env.RECLAIM_MODEL_PATH === undefined ? {} : { path: process.env.RECLAIM_MODEL_PATH }) },
    );
  });

  it("finds a planted bug: a queue that admits one waiter per freed-slot event strands the next one while a slot is free", async () => {
    // The queue's wake admits from the head while a slot can be reserved; this one stops after the first.
    const oneAtATime = (tryReserve: TryReserve, clock: ManualClock): AdmissionQueue => {
      let budget = 0;
      const queue = new AdmissionQueue((userId) => budget-- > 0 && tryReserve(userId), timersOf(clock));
      const wake = queue.wake.bind(queue);
      queue.wake = (userId: string): void => {
        budget = 1;
        wake(userId);
      };
      return queue;
    };
    const result = await fc.check(
      fc.asyncProperty(sequences, ([steps, queueTimeoutMs]) => run(steps, queueTimeoutMs, oneAtATime)),
      { numRuns: RUNS, seed: SEED },
    );
    expect(result.failed).toBe(true);
    // The second waiter is still queued where the model admitted it (its answer, or the queue with a free slot).
    expect(String(result.errorInstance)).toMatch(/attempt \d+'s answer|has a free slot and a queue/);
  });
});
