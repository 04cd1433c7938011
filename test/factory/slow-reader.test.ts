/**
 * A client reading slowly through a large backlog is alive, however the
 * backlog reached the socket. Node hands whatever waits behind a write still
 * under way to the kernel as ONE batched write, so a backlog of many small
 * replies soon becomes a single write of tens of MiB that completes only when
 * the client has read nearly all of it. A reader that takes 4 MiB of it
 * completes no write; the kernel took 4 MiB of it all the same. Both the
 * heartbeat and the probe must see that as progress (found by the mutation
 * work on the probe: progress was counted in whole writes only).
 *
 * Real factory, real `ws` clients on 127.0.0.1; the clients stop reading
 * (`ws.pause()`) and read exactly what each test says.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { ChatClient } from "../../src/demo/clients.js";
import type { Manager } from "../../src/factory/manager.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";

const MiB = 1024 * 1024;
const USER = "slow-reader";
/** Replies of a realistic size: 16 KiB of text each. */
const REPLY = JSON.stringify({ type: "reply", text: "r".repeat(16 * 1024) });
const REPLIES = 2048; // 32 MiB each

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

/** Reads exactly `n` messages, then stops reading again; resolves once it has. */
function readMessages(tab: ChatClient, n: number): Promise<void> {
  return new Promise((resolve) => {
    let read = 0;
    const onMessage = (): void => {
      if (++read < n) return;
      tab.ws.pause();
      tab.ws.off("message", onMessage);
      resolve();
    };
    tab.ws.on("message", onMessage);
    tab.ws.resume();
  });
}

/**
 * Two tabs of USER with 32 MiB of replies waiting each: `reader` has read until
 * one write completed, so what is left waits as one batched write under way;
 * `stuck` has read nothing.
 */
async function backlogs(): Promise<{ reader: ChatClient; readerManager: Manager; stuck: ChatClient; stuckManager: Manager }> {
  factory = await startTestFactory({ sendHighWaterBytes: 64 * MiB, sendMaxBufferedBytes: 256 * MiB, probeBufferThresholdBytes: MiB });
  const reader = await factory.open(USER);
  const stuck = await factory.open(USER);
  const [readerManager, stuckManager] = factory.registry.managersOf(USER);
  reader.ws.pause();
  stuck.ws.pause();
  for (let i = 0; i < REPLIES; i++) {
    readerManager!.send(REPLY);
    stuckManager!.send(REPLY);
  }
  // Read 256 KiB at a time until a write completes: the next one then takes all that waits.
  const completed = readerManager!.bytesSent;
  for (let read = 0; readerManager!.bytesSent === completed; read++) {
    expect(read).toBeLessThan(64); // 16 MiB read and still no write completed: the premise does not hold here
    await readMessages(reader, 16);
    await new Promise((resolve) => setImmediate(resolve)); // the kernel's window update reaches the factory's socket
  }
  // The premise: the rest is one write under way, far larger than what the tests read of it.
  expect(readerManager!.sendProgress().queued).toBeGreaterThan(16 * MiB);
  return { reader, readerManager: readerManager!, stuck, stuckManager: stuckManager! };
}

describe("a slow reader in the middle of one large batched write", () => {
  it("the heartbeat keeps it after it read 4 MiB of the write since the last ping, and drops the one that read nothing", async () => {
    const { reader, readerManager, stuckManager } = await backlogs();
    await factory!.heartbeat.sweep(); // pings, queued behind the backlogs
    const { completed, queued } = readerManager.sendProgress();
    await readMessages(reader, 256);
    // The room the reader made reaches the factory's socket: the kernel takes more of the write under way.
    await eventually(() => readerManager.sendProgress().queued < queued, 10_000, "the kernel to take more of the write");
    // No write completed: counted in whole writes, this reader read nothing.
    expect(readerManager.bytesSent).toBe(completed);
    expect(readerManager.awaitingPong).toBe(true);
    expect(await factory!.heartbeat.sweep()).toBe(1);
    expect(stuckManager.removal).toBe("heartbeat");
    expect(readerManager.removed).toBe(false);
  });

  it("the probe keeps it when it reads 4 MiB of the write during the probe, and evicts the one that read nothing", async () => {
    const { reader, readerManager, stuckManager } = await backlogs();
    const completed = readerManager.bytesSent;
    const buffered = readerManager.bufferedBytes;
    const probing = factory!.control("POST", `/v1/users/${USER}/rungs/probe`, { timeoutMs: 3000 });
    // The probe has looked at the backlogs once its ping waits behind them.
    await eventually(() => readerManager.bufferedBytes > buffered, 10_000, "the probe's ping");
    await readMessages(reader, 256);
    expect(readerManager.bytesSent).toBe(completed);
    const result = await probing;
    expect(result.status).toBe(200);
    expect(result.body.removed).toEqual([{ managerId: stuckManager.id, reason: "send_buffer_stuck" }]);
    expect(readerManager.removed).toBe(false);
  });
});
