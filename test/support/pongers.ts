/**
 * Clients that answer pings late, as tabs on a slow network do, and heartbeat
 * sweeps that give each connection a round-trip history (the adaptive
 * probe's tests, ADR 28 and 38).
 */
import { WebSocket } from "ws";
import { eventually, type TestFactory } from "./factory.js";

/**
 * A client of `userId` that answers each ping after `delay(n)` ms (autoPong
 * off), `n` counting its pings from 1. Resolves once the factory welcomed it.
 */
export async function slowPonger(f: TestFactory, userId: string, delay: (n: number) => number): Promise<WebSocket> {
  const ws = new WebSocket(f.wsUrl, { headers: { Authorization: `Bearer ${await f.token(userId)}` }, autoPong: false, perMessageDeflate: false });
  let pings = 0;
  ws.on("ping", (data: Buffer) => {
    const t = setTimeout(() => {
      if (ws.readyState === WebSocket.OPEN) ws.pong(data);
    }, delay(++pings));
    t.unref();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("message", () => resolve()); // the welcome
    ws.once("error", reject);
  });
  return ws;
}

/** Runs `n` heartbeat sweeps, each waiting for every connection of `userIds` to answer: `n` round trips each. */
export async function buildHistory(f: TestFactory, userIds: string | readonly string[], n: number): Promise<void> {
  const users = typeof userIds === "string" ? [userIds] : userIds;
  for (let i = 0; i < n; i++) {
    await f.heartbeat.sweep();
    await eventually(() => users.every((u) => f.registry.managersOf(u).every((m) => !m.awaitingPong)), 10_000, "every pong");
  }
}
