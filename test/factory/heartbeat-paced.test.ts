/**
 * The timer's heartbeat sweeps are paced (ADR 32): each connection is visited
 * at its own phase of the sweep's spread, one bucket per tick, so that pings
 * and pongs come a few at a time. A model-based test: random interleavings
 * of clients closing, clients connecting and chat between the ticks of two
 * sweeps, against a real factory and real `ws` clients. Time is the test's:
 * the sweep's clock moves only when it waits for its next tick (`now` and
 * `sleep` injected), and the test takes its steps there. Which connections a
 * tick pinged is read where it lands, on the clients.
 */
import fc from "fast-check";
import { afterEach, expect, it } from "vitest";
import type { ChatClient } from "../../src/demo/clients.js";
import { Evictor } from "../../src/factory/evict.js";
import { Heartbeat, PACE_TICK_MS } from "../../src/factory/heartbeat.js";
import type { Manager } from "../../src/factory/manager.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

type Step = { kind: "close"; which: number } | { kind: "open"; silent: boolean } | { kind: "chat"; which: number } | { kind: "none" };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant("close" as const), which: fc.nat(40) }),
  fc.record({ kind: fc.constant("open" as const), silent: fc.boolean() }),
  fc.record({ kind: fc.constant("chat" as const), which: fc.nat(40) }),
  fc.record({ kind: fc.constant("none" as const) }),
);

/** A spread of 12 ticks: few enough that buckets hold several connections, enough that most are apart. */
const TICKS = 12;
const SPREAD_MS = TICKS * PACE_TICK_MS;
const INTERVAL_MS = 10_000;

it("a paced sweep visits each connection once, at its own phase, and again one interval later whoever came or left; silent ones go at their phase", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.boolean(), { minLength: 3, maxLength: 14 }), fc.nat(4), fc.array(step, { maxLength: 30 }), async (silentFlags, between, steps) => {
      factory = await startTestFactory();
      const f = factory;
      const evictor = new Evictor(f.registry, f.log, f.metrics, 100);
      const queue = [...steps];

      // Clients, with what the test saw: pings received, and the manager behind each.
      const clients: ChatClient[] = [];
      const pings = new Map<ChatClient, number>();
      const managerOf = new Map<ChatClient, Manager>();
      const track = async (user: string, silent: boolean): Promise<ChatClient> => {
        const c = await f.open(user, silent ? "no-pong" : "live");
        clients.push(c);
        pings.set(c, 0);
        c.ws.on("ping", () => pings.set(c, pings.get(c)! + 1));
        managerOf.set(c, f.registry.managersOf(user)[0]!);
        return c;
      };
      for (const [i, silent] of silentFlags.entries()) await track(`user-${i}`, silent);

      let clock = 1_000_000;
      let sweepStart = 0;
      /** The bucket the sweep visits next, and per client the offset (clock − sweep start) of each sweep's visit. */
      let bucket = -1;
      const visits = new Map<ChatClient, number[]>();
      let sweep = 0;
      let stepping = false;
      let chats = 0;
      let chatSteps = 0;
      /** Clients present when the current sweep began (the only ones it may visit). */
      let present = new Set<ChatClient>();
      /** Clients sweep 1 pinged: in sweep 2 the silent ones among them are ended, not pinged. */
      let pingedBySweep1 = new Set<ChatClient>();
      const pingsAtSweepStart = new Map<ChatClient, number>();
      const closedByClient = new Set<ChatClient>();

      const heartbeat = new Heartbeat("ladder", INTERVAL_MS, f.registry, evictor, f.metrics, {
        now: () => clock,
        sleep: async (ms) => {
          await settleBucket();
          expect(ms).toBeGreaterThan(0);
          clock += ms;
          // The sweep waits for the start of a bucket, on the tick grid.
          const offset = clock - sweepStart;
          expect(offset % PACE_TICK_MS).toBe(0);
          expect(offset / PACE_TICK_MS).toBeGreaterThan(bucket);
          expect(offset).toBeLessThan(SPREAD_MS);
          bucket = offset / PACE_TICK_MS;
          if (stepping) await takeStep();
        },
      });
      const bucketOf = (c: ChatClient): number => Math.floor(heartbeat.phaseOf(managerOf.get(c)!) * TICKS);

      /** After a bucket: every present client of that bucket still open got this sweep's ping, nobody else did. */
      async function settleBucket(): Promise<void> {
        const due = [...present].filter((c) => bucketOf(c) === bucket && !closedByClient.has(c));
        const endedNow = (c: ChatClient): boolean => sweep === 2 && c.kind === "no-pong" && pingedBySweep1.has(c);
        const answering = due.filter((c) => !endedNow(c));
        await eventually(() => answering.every((c) => pings.get(c)! === pingsAtSweepStart.get(c)! + 1), 5000, `the pings of bucket ${bucket}`);
        // Sweep 2 ends the silent ones of this bucket (they never answered sweep 1's ping) instead of pinging them.
        const silent = due.filter(endedNow);
        await eventually(() => silent.every((c) => c.ws.readyState === c.ws.CLOSED), 5000, `the silent connections of bucket ${bucket} to be terminated`);
        for (const c of answering) visits.get(c)!.push(clock - sweepStart);
        for (const c of silent) visits.get(c)!.push(clock - sweepStart);
        for (const c of clients) {
          const pinged = pings.get(c)! - (pingsAtSweepStart.get(c) ?? pings.get(c)!);
          if (!present.has(c) || bucketOf(c) > bucket) expect({ c: clients.indexOf(c), pinged }).toEqual({ c: clients.indexOf(c), pinged: 0 });
          else expect(pinged).toBeLessThanOrEqual(1);
        }
        // A later bucket is not terminated early.
        for (const c of present) if (bucketOf(c) > bucket && !closedByClient.has(c)) expect(managerOf.get(c)!.removed).toBe(false);
      }

      async function takeStep(): Promise<void> {
        const next = queue.shift() ?? { kind: "none" };
        const open = clients.filter((c) => c.ws.readyState === c.ws.OPEN);
        if (next.kind === "close" && open.length > 0) {
          const c = open[next.which % open.length]!;
          const m = managerOf.get(c)!;
          c.ws.close(1000, "bye");
          await c.closed;
          await eventually(() => m.removed, 5000, "the server to see the close");
          closedByClient.add(c);
        } else if (next.kind === "open") {
          await track(`late-${clients.length}`, next.silent);
        } else if (next.kind === "chat") {
          const live = open.filter((c) => c.kind === "live");
          if (live.length > 0) {
            chatSteps++;
            expect(await live[next.which % live.length]!.chat("between ticks")).toBe("echo: between ticks");
            chats++;
          }
        }
      }

      const runSweep = async (n: number): Promise<number> => {
        sweep = n;
        sweepStart = clock;
        bucket = 0;
        present = new Set(clients.filter((c) => !managerOf.get(c)!.removed));
        for (const c of clients) {
          pingsAtSweepStart.set(c, pings.get(c)!);
          if (!visits.has(c)) visits.set(c, []);
        }
        const terminated = await heartbeat.sweep(SPREAD_MS);
        await settleBucket(); // the last bucket
        return terminated;
      };

      // Sweep 1: everyone is pinged at their phase; the live ones answer.
      expect(await runSweep(1)).toBe(0);
      const live1 = [...present].filter((c) => c.kind === "live");
      await eventually(() => live1.every((c) => !managerOf.get(c)!.awaitingPong), 5000, "the pongs");
      const silentAtSweep1 = [...present].filter((c) => c.kind === "no-pong");
      pingedBySweep1 = new Set(present);

      // Between the sweeps some come and go (the registry's order changes), then one interval later sweep 2,
      // with steps at its ticks.
      for (let k = 0; k < between; k++) await takeStep();
      clock = sweepStart + INTERVAL_MS;
      stepping = true;
      const terminated = await runSweep(2);

      // The silent ones of sweep 1 that did not leave by themselves were terminated, and only they.
      const expected = silentAtSweep1.filter((c) => !closedByClient.has(c));
      expect(terminated).toBe(expected.length);
      for (const c of expected) expect(managerOf.get(c)!.removal).toBe("heartbeat");
      // Every connection there for both sweeps was visited at the same offset in each: one interval apart.
      for (const c of [...present].filter((p) => pingedBySweep1.has(p))) {
        const v = visits.get(c)!;
        if (closedByClient.has(c)) continue;
        if (v.length === 2) expect(v[1]).toBe(v[0]);
        else expect({ c: clients.indexOf(c), visits: v.length }).toEqual({ c: clients.indexOf(c), visits: 2 });
      }
      // Those that came during sweep 2 were left for the next one.
      for (const c of clients) if (!present.has(c)) expect(pings.get(c)).toBe(pingedBySweep1.has(c) ? 1 : 0);
      expect(chats).toBe(chatSteps);
      for (const c of clients) c.destroy();
      await f.close();
      factory = undefined;
    }),
    { numRuns: 15 },
  );
});

it("the phases spread connections evenly over the buckets, whatever their number", async () => {
  factory = await startTestFactory();
  const f = factory;
  const heartbeat = new Heartbeat("ladder", INTERVAL_MS, f.registry, new Evictor(f.registry, f.log, f.metrics, 100), f.metrics);
  // Phases are per manager; real ones, for real clients.
  for (let i = 0; i < 60; i++) await f.open(`spread-${i}`);
  const managers = [...f.registry.allManagers()];
  for (const n of [10, 30, 60]) {
    const counts = new Array<number>(10).fill(0);
    for (const m of managers.slice(0, n)) counts[Math.floor(heartbeat.phaseOf(m) * 10)]!++;
    // n·φ mod 1 (three-distance theorem): no bucket of ten holds more than one over its share, none is empty.
    expect(Math.max(...counts)).toBeLessThanOrEqual(Math.ceil(n / 10) + 1);
    expect(Math.min(...counts)).toBeGreaterThanOrEqual(Math.floor(n / 10) - 1);
  }
  // And a phase is kept for the manager's life.
  expect(managers.map((m) => heartbeat.phaseOf(m))).toEqual(managers.map((m) => heartbeat.phaseOf(m)));
});

it("stop ends a paced sweep at once, not at its next tick; the later buckets are not visited", async () => {
  factory = await startTestFactory();
  const f = factory;
  const clients: ChatClient[] = [];
  for (let i = 0; i < 8; i++) clients.push(await f.open(`stop-${i}`));
  const pinged = new Set<ChatClient>();
  for (const c of clients) c.ws.on("ping", () => pinged.add(c));
  // An hour's interval: with the real timer, the sweep's next tick is minutes away.
  const heartbeat = new Heartbeat("ladder", 3_600_000, f.registry, new Evictor(f.registry, f.log, f.metrics, 100), f.metrics);
  const managers = [...f.registry.allManagers()];
  const first = managers.filter((m) => heartbeat.phaseOf(m) * 180_000 < 1); // bucket 0 of the sweep below
  const sweeping = heartbeat.sweep(1_800_000);
  expect(first.length).toBeGreaterThan(0);
  await eventually(() => pinged.size === first.length, 5000, "bucket 0's pings");
  expect(heartbeat.sweeping).toBe(true);
  heartbeat.stop();
  expect(await sweeping).toBe(0);
  expect(heartbeat.sweeping).toBe(false);
  expect(managers.filter((m) => m.awaitingPong && !first.includes(m))).toEqual([]);
});

it("refuses a spread outside [0, 0.9]", async () => {
  factory = await startTestFactory();
  const f = factory;
  const make = (spread: number): Heartbeat => new Heartbeat("ladder", 1000, f.registry, new Evictor(f.registry, f.log, f.metrics, 100), f.metrics, { spread });
  expect(() => make(0.95)).toThrow(/heartbeat spread must be in \[0, 0.9\], got 0.95/);
  expect(() => make(-0.1)).toThrow(RangeError);
  expect(() => make(Number.NaN)).toThrow(RangeError);
  expect(make(0)).toBeInstanceOf(Heartbeat);
  expect(make(0.9)).toBeInstanceOf(Heartbeat);
});

it("the timer's sweeps are the paced ones: spread over the configured part of the interval", async () => {
  factory = await startTestFactory();
  const f = factory;
  for (let i = 0; i < 30; i++) await f.open(`timer-${i}`);
  let clock = 0;
  const waits: number[] = [];
  let ticked!: () => void;
  const swept = new Promise<void>((resolve) => (ticked = resolve));
  const heartbeat = new Heartbeat("ladder", 200, f.registry, new Evictor(f.registry, f.log, f.metrics, 100), f.metrics, {
    spread: 0.5,
    now: () => clock,
    sleep: (ms) => {
      waits.push(ms);
      clock += ms;
      if (clock >= 80) ticked(); // into the last of the spread's ten buckets
      return Promise.resolve();
    },
  });
  heartbeat.start();
  await swept;
  heartbeat.stop();
  // 200 ms × 0.5: buckets of PACE_TICK_MS over 100 ms, each wait up to the next bucket on the grid.
  expect(waits.every((w) => w > 0 && w % PACE_TICK_MS === 0)).toBe(true);
  expect(clock).toBeLessThan(100);
  expect(waits.length).toBeGreaterThanOrEqual(5);
});
