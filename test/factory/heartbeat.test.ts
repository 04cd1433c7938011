/**
 * The heartbeat: one shared timer; a connection that has not answered since
 * the previous sweep is terminated and unregistered; live ones stay.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FactoryEvent } from "../../src/contract/events.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

function timers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
}

describe("heartbeat sweeps", () => {
  it("terminate a connection that missed the previous sweep's ping and keep live ones", async () => {
    factory = await startTestFactory();
    const live = await factory.open("alice", "live");
    const silent = await factory.open("alice", "no-pong");
    const stuck = await factory.open("bob", "paused");

    await factory.heartbeat.sweep(); // pings everyone
    await eventually(() => factory!.registry.managersOf("alice").some((m) => m.lastReceivedAt !== null), 2000, "a pong");
    expect(await factory.heartbeat.sweep()).toBe(2); // the two that did not answer

    expect(factory.registry.active("alice")).toBe(1);
    expect(factory.registry.active("bob")).toBe(0);
    expect((await silent.closed).code).toBe(1006);
    expect(live.ws.readyState).toBe(live.ws.OPEN);
    expect(await live.chat("still here")).toBe("echo: still here");
    expect(factory.events(FactoryEvent.heartbeatTerminated)).toHaveLength(2);
    stuck.destroy();
  });

  it("clear ghost managers whose socket is already gone", async () => {
    factory = await startTestFactory({ faults: ["leak-on-close"] });
    const tab = await factory.open("carol");
    await tab.close();
    expect(factory.registry.active("carol")).toBe(1);
    await factory.heartbeat.sweep();
    await factory.heartbeat.sweep();
    expect(factory.registry.active("carol")).toBe(0);
  });

  it("run on their own at the configured interval", async () => {
    factory = await startTestFactory({ heartbeatIntervalMs: 50 });
    await factory.open("dave", "no-pong");
    await factory.open("dave", "live");
    await eventually(() => factory!.registry.active("dave") === 1, 5000, "the silent connection to be terminated");
    expect(factory.events(FactoryEvent.heartbeatTerminated, "dave")).toHaveLength(1);
  });

  it("stop the timer without stopping sweeps asked for later", async () => {
    factory = await startTestFactory();
    await factory.open("gina", "no-pong");
    factory.heartbeat.stop();
    await factory.heartbeat.sweep(); // pings: a sweep asked for after stop runs whole
    expect(await factory.heartbeat.sweep()).toBe(1);
    expect(factory.registry.active("gina")).toBe(0);
  });

  it("use one timer for all connections, not one per socket", async () => {
    factory = await startTestFactory({ heartbeatIntervalMs: 1000 });
    await factory.open("erin");
    const before = timers();
    for (let i = 0; i < 30; i++) await factory.open(`user-${i}`);
    expect(timers() - before).toBeLessThan(5);
  });
});

describe("legacy mode", () => {
  it("never pings and never terminates: its sweep is the original stats read", async () => {
    factory = await startTestFactory({ cleanup: "legacy" });
    const silent = await factory.open("frank", "no-pong");
    await factory.heartbeat.sweep();
    await factory.heartbeat.sweep();
    await factory.heartbeat.sweep();
    expect(factory.registry.active("frank")).toBe(1);
    expect(silent.ws.readyState).toBe(silent.ws.OPEN);
    expect(factory.events(FactoryEvent.heartbeatTerminated)).toHaveLength(0);
  });
});
