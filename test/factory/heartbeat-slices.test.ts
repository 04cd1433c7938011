/**
 * The heartbeat sweeps in slices (issue 18) — a model-based test: random
 * interleavings of clients closing, clients connecting and chat between the
 * slices of one sweep, against a real factory and real clients. The sweep
 * yields after every connection (`maxPerSlice: 1`) to a gate the test
 * drives; invariants are checked after every step.
 */
import fc from "fast-check";
import { afterEach, expect, it } from "vitest";
import type { ChatClient } from "../../src/demo/clients.js";
import { Evictor } from "../../src/factory/evict.js";
import { Heartbeat } from "../../src/factory/heartbeat.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

type Step = { kind: "close"; which: number } | { kind: "open" } | { kind: "chat"; which: number } | { kind: "none" };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant("close" as const), which: fc.nat(20) }),
  fc.record({ kind: fc.constant("open" as const) }),
  fc.record({ kind: fc.constant("chat" as const), which: fc.nat(20) }),
  fc.record({ kind: fc.constant("none" as const) }),
);

it("a sweep in slices removes exactly the silent connections it reaches, pings each other one once, and lets chat through between slices", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.boolean(), { minLength: 2, maxLength: 6 }), fc.array(step, { maxLength: 8 }), async (silentFlags, steps) => {
      factory = await startTestFactory();
      const f = factory;
      const evictor = new Evictor(f.registry, f.log, f.metrics, 100);
      const queue = [...steps];
      const clients: ChatClient[] = [];
      const users = new Map<ChatClient, string>();
      const pings = new Map<ChatClient, number>();
      const track = (c: ChatClient, userId: string): void => {
        clients.push(c);
        users.set(c, userId);
        pings.set(c, 0);
        c.ws.on("ping", () => pings.set(c, (pings.get(c) ?? 0) + 1));
      };
      for (const [i, silent] of silentFlags.entries()) track(await f.open(`user-${i}`, silent ? "no-pong" : "live"), `user-${i}`);
      const closedByClient = new Set<string>();
      const openedDuring = new Set<string>();
      let chats = 0;
      let yields = 0;
      let chatSteps = 0;

      // After every slice: the next step, then the invariants.
      const check = (): void => {
        for (const m of f.registry.allManagers()) expect(m.removed).toBe(false);
        for (const n of pings.values()) expect(n).toBeLessThanOrEqual(sweeps);
      };
      let sweeps = 0;
      let stepping = false;
      const gate = async (): Promise<void> => {
        if (!stepping) return new Promise((resolve) => setImmediate(resolve));
        yields++;
        const next = queue.shift() ?? { kind: "none" };
        const open = clients.filter((c) => c.ws.readyState === c.ws.OPEN);
        if (next.kind === "close" && open.length > 0) {
          const c = open[next.which % open.length]!;
          const user = users.get(c)!;
          const id = f.registry.managersOf(user)[0]?.id;
          c.ws.close(1000, "bye");
          await c.closed;
          await eventually(() => f.registry.active(user) === 0, 5000, "the server to see the close");
          if (id !== undefined) closedByClient.add(id);
        } else if (next.kind === "open") {
          const user = `late-${clients.length}`;
          track(await f.open(user, "live"), user);
          openedDuring.add(f.registry.managersOf(user)[0]!.id);
        } else if (next.kind === "chat") {
          const live = open.filter((c) => c.kind === "live");
          if (live.length > 0) {
            chatSteps++;
            // The sweep is mid-way: chat is served all the same.
            expect(await live[next.which % live.length]!.chat("between slices")).toBe("echo: between slices");
            chats++;
          }
        }
        check();
      };
      const heartbeat = new Heartbeat("ladder", 60_000, f.registry, evictor, f.metrics, { maxPerSlice: 1, yieldToLoop: gate });

      // Sweep 1 pings everyone; the live ones answer.
      sweeps = 1;
      expect(await heartbeat.sweep()).toBe(0);
      const live = clients.filter((c) => c.kind === "live");
      await eventually(() => live.every((c) => f.registry.managersOf(users.get(c)!).every((m) => !m.awaitingPong)), 5000, "the pongs");
      const silentAtStart = new Set(
        [...f.registry.allManagers()].filter((m) => m.awaitingPong).map((m) => m.id),
      );
      const removedBefore = await removedByHeartbeat(f);

      // Sweep 2, with the steps between its slices.
      sweeps = 2;
      stepping = true;
      const atStart = f.registry.size;
      const joined = heartbeat.sweep();
      expect(heartbeat.sweep()).toBe(joined); // a second call joins the running sweep
      const terminated = await joined;
      // One connection per slice: the sweep yielded between every two.
      expect(yields).toBe(atStart - 1);

      const expected = [...silentAtStart].filter((id) => !closedByClient.has(id)).length;
      expect(terminated).toBe(expected);
      expect((await removedByHeartbeat(f)) - removedBefore).toBe(expected);
      for (const m of f.registry.allManagers()) {
        // Left: the live ones, and those that connected during the sweep (not pinged by it).
        expect(silentAtStart.has(m.id)).toBe(false);
        if (openedDuring.has(m.id)) expect(m.awaitingPong).toBe(false);
      }
      // Every chat step with a live client open was answered mid-sweep.
      expect(chats).toBe(chatSteps);
      for (const c of clients) c.destroy();
      await f.close();
      factory = undefined;
    }),
    { numRuns: 15 },
  );
});

async function removedByHeartbeat(f: TestFactory): Promise<number> {
  const values = (await f.metrics.managersRemoved.get()).values;
  return values.filter((v) => v.labels.rung === "heartbeat").reduce((a, v) => a + v.value, 0);
}
