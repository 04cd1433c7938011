/**
 * The outage and its fix, with real zombie clients: for each kind of zombie,
 * legacy cleanup locks the user out at 20/20 and keeps them out; ladder
 * cleanup admits the 21st connection.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FactoryEvent } from "../../src/contract/events.js";
import { isRefusal, type ChatClient } from "../../src/demo/clients.js";
import { LEGACY_CUTOFF_MS } from "../../src/factory/legacy.js";
import { ManualClock } from "../support/clock.js";
import { startTestFactory, type TestFactory } from "../support/factory.js";

const USER = "105945141827451681156";


type ZombieKind = "no-pong" | "paused" | "leaked";

/** Fills the user's 20 slots with zombies of one kind. */
async function fillWithZombies(factory: TestFactory, kind: ZombieKind): Promise<void> {
  if (kind === "leaked") {
    const tabs: ChatClient[] = [];
    for (let i = 0; i < 20; i++) tabs.push(await factory.open(USER, "live"));
    await Promise.all(tabs.map((t) => t.close()));
  } else {
    for (let i = 0; i < 20; i++) await factory.open(USER, kind);
  }
  expect(factory.registry.active(USER)).toBe(20);
}

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

describe.each<ZombieKind>(["no-pong", "paused", "leaked"])("zombies of kind %s", (kind) => {
  const faults = kind === "leaked" ? (["leak-on-close"] as const) : ([] as const);

  it("legacy cleanup locks the user out at 20/20, and they stay locked out", async () => {
    const clock = new ManualClock();
    factory = await startTestFactory({ cleanup: "legacy", faults: [...faults] }, { clock });
    await fillWithZombies(factory, kind);

    const first = await factory.attempt(USER);
    expect(isRefusal(first) && first.status).toBe(503);

    // Past the original cutoffs: the periodic stats read refreshes "activity",
    // exactly as in the original, so nothing looks dead.
    clock.advance(LEGACY_CUTOFF_MS + 5_000);
    await factory.heartbeat.sweep();
    const second = await factory.attempt(USER);
    expect(isRefusal(second) && second.status).toBe(503);
    expect(factory.registry.active(USER)).toBe(20);
    // Both refused; the second within the same minute is counted, not written again (the log cannot be flooded).
    expect(factory.refusals.of(USER)?.refusals).toBe(2);
    expect(factory.events(FactoryEvent.hardLimit, USER)).toHaveLength(1);
    expect(factory.events(FactoryEvent.zombie, USER)).toHaveLength(0);
  });

  it("ladder cleanup finds the zombies and admits the 21st connection", async () => {
    factory = await startTestFactory({ cleanup: "ladder", probeTimeoutMs: 300, faults: [...faults] });
    await fillWithZombies(factory, kind);

    const client = await factory.open(USER);
    expect(await client.chat("back in?")).toBe("echo: back in?");
    const zombies = factory.events(FactoryEvent.zombie, USER);
    expect(zombies).toHaveLength(20);
    expect(new Set(zombies.map((z) => z.kind))).toEqual(new Set([kind === "leaked" ? "socket_not_open" : "no_pong"]));
    expect(factory.events(FactoryEvent.hardLimit, USER)).toHaveLength(0);
    expect(factory.registry.active(USER)).toBe(1);
  });
});

describe("the probe", () => {
  it("reports a reader whose send buffer is stuck as send_buffer_stuck", async () => {
    factory = await startTestFactory({ probeTimeoutMs: 300, probeBufferThresholdBytes: 64 * 1024 });
    await factory.open(USER, "paused");
    const live = await factory.open(USER, "live");
    const [stuck] = factory.registry.managersOf(USER);
    // Chat-sized traffic is absorbed by kernel buffers; push enough that ws itself has to buffer.
    const chunk = JSON.stringify({ type: "reply", text: "x".repeat(64 * 1024) });
    for (let i = 0; i < 200 && stuck!.socket.bufferedAmount < 256 * 1024; i++) stuck!.send(chunk);
    expect(stuck!.socket.bufferedAmount).toBeGreaterThanOrEqual(64 * 1024);

    const result = await factory.control("POST", `/v1/users/${USER}/rungs/probe`, {});
    expect(result.body.removed).toEqual([{ managerId: stuck!.id, reason: "send_buffer_stuck" }]);
    expect(await live.chat("unaffected")).toBe("echo: unaffected");
  });

  it("moves the zombie, removal, cleanup and duration metrics", async () => {
    factory = await startTestFactory({ probeTimeoutMs: 200 });
    for (let i = 0; i < 3; i++) await factory.open(USER, "no-pong");
    await factory.open(USER, "live");
    await factory.control("POST", `/v1/users/${USER}/rungs/probe`, {});
    const text = await factory.metrics.registry.metrics();
    expect(text).toContain('reclaim_factory_zombies_detected_total{kind="no_pong"} 3');
    expect(text).toContain('reclaim_factory_managers_removed_total{rung="probe",reason="no_pong"} 3');
    expect(text).toContain('reclaim_factory_cleanup_runs_total{rung="probe",trigger="control"} 1');
    expect(text).toContain("reclaim_factory_probe_duration_seconds_count 1");
    expect(text).toContain("reclaim_factory_managers 1");
    expect(text).not.toContain(USER);
  });
});

describe("legacy cleanup is a faithful reproduction, not a no-op", () => {
  it("still frees a manager that is clearly dead (its active flag cleared by a socket error)", async () => {
    factory = await startTestFactory({ cleanup: "legacy" });
    for (let i = 0; i < 20; i++) await factory.open(USER, "no-pong");
    // What the original's error handler did: clear the flag. The socket stays open.
    factory.registry.managersOf(USER)[0]!.active = false;

    const client = await factory.attempt(USER);
    expect(isRefusal(client)).toBe(false);
    expect(factory.events(FactoryEvent.cleanup, USER).at(-1)).toMatchObject({ removed: 1 });
    expect(factory.events(FactoryEvent.hardLimit, USER)).toHaveLength(0);
  });
});
