/**
 * The factory against clients that are alive but abusive, slow or half-dead
 * (issue 12): real `ws` clients and raw TCP on 127.0.0.1, a real factory.
 * Time that the factory keeps (use, raises) comes from a ManualClock where
 * the order of events matters; the network is real.
 */
import { connect as tcpConnect, type Socket } from "node:net";
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { CLOSE_GOING_AWAY, CLOSE_SLOW_READER, SUBPROTOCOL, tokenSubprotocol } from "../../src/contract/client.js";
import { FactoryEvent } from "../../src/contract/events.js";
import { ManualClock } from "../support/clock.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import type { ChatClient } from "../../src/demo/clients.js";
import { isRefusal } from "../../src/demo/clients.js";
import { SHUTDOWN_CLOSE_REASON } from "../../src/factory/server.js";
import { SLOW_READER_CLOSE_REASON } from "../../src/factory/evict.js";

let factory: TestFactory | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await factory?.close();
  factory = undefined;
});

const USER = "hostile-user";

/** Opens `n` live clients for USER, one after the other. */
async function openMany(f: TestFactory, n: number, user = USER): Promise<ChatClient[]> {
  const out: ChatClient[] = [];
  for (let i = 0; i < n; i++) out.push(await f.open(user));
  return out;
}

/** Sends a raw upgrade request; resolves with the first line of the answer (or "" if the server closed without one). */
function rawUpgrade(port: number, headers: Record<string, string>, opts: { keepOpen?: boolean } = {}): Promise<{ status: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, "127.0.0.1");
    sockets.push(socket);
    let data = "";
    socket.on("error", reject);
    socket.on("data", (chunk: Buffer) => {
      data += chunk.toString("latin1");
      if (data.includes("\r\n")) resolve({ status: data.slice(0, data.indexOf("\r\n")), socket });
    });
    socket.on("close", () => resolve({ status: data.split("\r\n")[0] ?? "", socket }));
    const lines = ["GET /ws HTTP/1.1", "Host: 127.0.0.1", ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (opts.keepOpen === true) socket.on("connect", () => undefined);
  });
}

/** The headers of a valid handshake for `token`. */
function handshake(token: string): Record<string, string> {
  return {
    Connection: "Upgrade",
    Upgrade: "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
    Authorization: `Bearer ${token}`,
  };
}

describe("bounded memory per connection (backpressure)", () => {
  it("stops reading from a client that sends chat but never reads, then closes it with 1008 when it stays over the mark", async () => {
    factory = await startTestFactory({ sendHighWaterBytes: 64 * 1024, sendMaxBufferedBytes: 64 * 1024 * 1024, slowReaderTimeoutMs: 300 });
    const client = await factory.open(USER);
    const [manager] = factory.registry.managersOf(USER);
    client.ws.pause(); // never reads again: the kernel's buffers fill, then the factory's
    const text = "x".repeat(16_000);
    // Keep sending until the factory stops reading us: our own send buffer then grows, as TCP pushes back.
    await eventually(
      () => {
        if (client.ws.readyState === WebSocket.OPEN && client.ws.bufferedAmount < 1024 * 1024) client.ws.send(JSON.stringify({ type: "chat", text }));
        return manager!.paused || manager!.removed;
      },
      20_000,
      "the factory to stop reading from the flooding client",
    );
    // While paused, what waits for the client stays near the high-water mark, not megabytes.
    expect(manager!.bufferedBytes).toBeLessThan(64 * 1024 + 2 * 16_100);
    await eventually(() => manager!.removed, 5000, "the slow reader to be closed");
    expect(factory.registry.active(USER)).toBe(0);
    const [line] = factory.events(FactoryEvent.slowReader, USER);
    expect(line).toMatchObject({ severity: "WARNING", reason: "slow_reader", managerId: manager!.id });
  });

  it("closes a client at once when what waits for it goes over the hard cap, with 1008 and a reason", async () => {
    factory = await startTestFactory({ sendHighWaterBytes: 64 * 1024, sendMaxBufferedBytes: 256 * 1024, slowReaderTimeoutMs: 60_000 });
    const client = await factory.open(USER);
    const [manager] = factory.registry.managersOf(USER);
    client.ws.pause();
    // The server's own sends (replies, notices) beyond the cap: one big one is enough once the kernel is full.
    const big = "y".repeat(512 * 1024);
    await eventually(
      () => {
        if (!manager!.removed) manager!.send(JSON.stringify({ type: "reply", text: big }));
        return manager!.removed;
      },
      20_000,
      "the client over the hard cap to be closed",
    );
    expect(factory.events(FactoryEvent.slowReader, USER)).toHaveLength(1);
    // It now reads again: the close frame (after the backlog) says why.
    client.ws.resume();
    expect(await client.closed).toEqual({ code: CLOSE_SLOW_READER, reason: SLOW_READER_CLOSE_REASON });
  });

  it("a reader that catches up is read from again (not closed)", async () => {
    factory = await startTestFactory({ sendHighWaterBytes: 64 * 1024, sendMaxBufferedBytes: 64 * 1024 * 1024, slowReaderTimeoutMs: 60_000 });
    const client = await factory.open(USER);
    const [manager] = factory.registry.managersOf(USER);
    client.ws.pause();
    const big = "z".repeat(256 * 1024);
    await eventually(
      () => {
        manager!.send(JSON.stringify({ type: "reply", text: big }));
        return manager!.paused;
      },
      20_000,
      "the factory to pause the client",
    );
    client.ws.resume();
    await eventually(() => !manager!.paused, 10_000, "the factory to read from the client again");
    expect(await client.chat("still here")).toBe("echo: still here");
    expect(manager!.removed).toBe(false);
  });
});

describe("only a pong answers a ping", () => {
  it("a client that keeps sending keepalives but never pongs is terminated by the heartbeat", async () => {
    factory = await startTestFactory();
    const client = await factory.open(USER, "no-pong");
    const [manager] = factory.registry.managersOf(USER);
    await factory.heartbeat.sweep(); // ping
    const before = manager!.messagesReceived;
    client.ws.send(JSON.stringify({ type: "ping" })); // an application keepalive: it writes, it does not prove it reads
    await eventually(() => manager!.messagesReceived > before, 5000, "the keepalive to arrive");
    expect(await factory.heartbeat.sweep()).toBe(1);
    expect(manager!.removed).toBe(true);
    expect(factory.events(FactoryEvent.heartbeatTerminated, USER)).toHaveLength(1);
  });

  it("a client that pongs survives the sweeps", async () => {
    factory = await startTestFactory();
    await factory.open(USER);
    const [manager] = factory.registry.managersOf(USER);
    await factory.heartbeat.sweep();
    await eventually(() => !manager!.awaitingPong, 5000, "the pong");
    expect(await factory.heartbeat.sweep()).toBe(0);
    expect(manager!.removed).toBe(false);
  });
});

describe('"use" means chat: force evicts the least recently USED tab', () => {
  it("keepalives, invalid JSON and binary frames do not make an idle tab look used", async () => {
    const clock = new ManualClock();
    factory = await startTestFactory({ limit: 2 }, { clock });
    const idle = await factory.open(USER); // opened first, never chats
    clock.advance(1000);
    const typing = await factory.open(USER);
    clock.advance(1000);
    expect(await typing.chat("hello")).toBe("echo: hello"); // the tab the user types in
    clock.advance(1000);
    const [idleManager] = factory.registry.managersOf(USER);
    const before = idleManager!.messagesReceived;
    // The idle tab's page keeps itself alive, and sends junk.
    idle.ws.send(JSON.stringify({ type: "ping" }));
    idle.ws.send("{not json");
    idle.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    idle.ws.send(JSON.stringify({ type: "unknown" }));
    await eventually(() => idleManager!.messagesReceived === before + 4, 5000, "the idle tab's frames to arrive");
    const snapshot = (await factory.control("GET", `/v1/users/${USER}`)).body;
    const idleInfo = snapshot.managers.find((m: { id: string }) => m.id === idleManager!.id);
    expect(idleInfo.lastUsedAt).toBeNull();
    expect(idleInfo.lastMessageAt).not.toBeNull();

    const result = await factory.control("POST", `/v1/users/${USER}/rungs/force`, { max: 1, freeSlots: 1 });
    expect(result.status).toBe(200);
    expect(result.body.removed).toEqual([{ managerId: idleManager!.id, reason: "evicted" }]);
    expect((await idle.closed).code).toBe(1013);
    expect(typing.ws.readyState).toBe(WebSocket.OPEN);
  });
});

describe("force never evicts for nothing", () => {
  it("a request that is not a valid handshake is refused with 400 before any cleanup: no tab is evicted", async () => {
    factory = await startTestFactory({ limit: 3, ladder: ["force"] });
    await openMany(factory, 3);
    const token = await factory.token(USER);
    const headers = handshake(token);
    delete headers["Sec-WebSocket-Key"];
    const { status } = await rawUpgrade(factory.port, headers);
    expect(status).toMatch(/^HTTP\/1\.1 400/);
    expect(factory.registry.active(USER)).toBe(3);
    expect(factory.events(FactoryEvent.evicted, USER)).toEqual([]);
    expect(factory.events(FactoryEvent.resourceLimit, USER)).toEqual([]);
  });

  it("a malformed handshake that passed admission gives its reserved slot back (a real malformed request, not fetch)", async () => {
    factory = await startTestFactory({ limit: 3 });
    await openMany(factory, 2);
    const token = await factory.token(USER);
    const brokenHeaders: Record<string, string>[] = [{ "Sec-WebSocket-Version": "12" }, { Upgrade: "h2c" }, { "Sec-WebSocket-Protocol": "a,,b" }];
    for (const broken of brokenHeaders) {
      const { status } = await rawUpgrade(factory.port, { ...handshake(token), ...broken });
      expect(status).toMatch(/^HTTP\/1\.1 400/);
    }
    expect(factory.registry.occupied(USER)).toBe(2);
    await factory.open(USER); // the third slot is still there
    expect(factory.registry.active(USER)).toBe(3);
  });

  it("a user left above the normal limit when a raise ended loses no tab to force and is refused", async () => {
    const clock = new ManualClock();
    factory = await startTestFactory({ limit: 3, ladder: ["force"] }, { clock });
    await openMany(factory, 3);
    expect((await factory.control("POST", `/v1/users/${USER}/rungs/degrade`, { limit: 5, ttlMs: 60_000 })).status).toBe(200);
    await openMany(factory, 2); // 5/5 under the raise
    clock.advance(60_001); // the raise is over: 5 managers, limit 3
    const result = await factory.attempt(USER);
    expect(isRefusal(result)).toBe(true);
    expect(factory.registry.active(USER)).toBe(5);
    expect(factory.events(FactoryEvent.evicted, USER)).toEqual([]);
    // Asked to make room it cannot make with max 1, force evicts none; with max 3 it frees exactly one slot.
    expect((await factory.control("POST", `/v1/users/${USER}/rungs/force`, { max: 1 })).body.removed).toEqual([]);
    const freed = await factory.control("POST", `/v1/users/${USER}/rungs/force`, { max: 3 });
    expect(freed.body.removed).toHaveLength(3);
    expect(freed.body.admit).toBe(true);
  });
});

describe("a client catching up is not a zombie", () => {
  it("the probe keeps a client that reads its backlog (bytes drained) though its pong cannot arrive in time, and evicts one that reads nothing", async () => {
    factory = await startTestFactory({
      sendHighWaterBytes: 64 * 1024 * 1024,
      sendMaxBufferedBytes: 256 * 1024 * 1024,
      probeBufferThresholdBytes: 1024 * 1024,
    });
    const reader = await factory.open(USER);
    const stuck = await factory.open(USER);
    const [readerManager, stuckManager] = factory.registry.managersOf(USER);
    reader.ws.pause();
    stuck.ws.pause();
    // A backlog of 32 MiB each, far more than either can read within the probe, in replies of a realistic size
    // (the kernel takes a write whole or not at all as far as Node can tell, so progress shows in steps of one write).
    const chunk = JSON.stringify({ type: "reply", text: "b".repeat(16 * 1024) });
    for (let i = 0; i < 2048; i++) {
      readerManager!.send(chunk);
      stuckManager!.send(chunk);
    }
    await eventually(() => readerManager!.bufferedBytes > 8 * 1024 * 1024, 10_000, "a backlog to build");
    // The reader reads slowly: a little every few milliseconds, so it cannot reach the ping within 500 ms.
    let reading = true;
    const trickle = async (): Promise<void> => {
      while (reading) {
        reader.ws.resume();
        await new Promise((r) => setImmediate(r));
        reader.ws.pause();
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    const trickling = trickle();
    const result = await factory.control("POST", `/v1/users/${USER}/rungs/probe`, { timeoutMs: 500 });
    reading = false;
    await trickling;
    expect(result.status).toBe(200);
    expect(result.body.removed).toEqual([{ managerId: stuckManager!.id, reason: "send_buffer_stuck" }]);
    expect(readerManager!.removed).toBe(false);
  });
});

describe("the heartbeat and a client catching up", () => {
  it("keeps a client that read part of its backlog since the last ping, and drops one that read nothing", async () => {
    factory = await startTestFactory({ sendHighWaterBytes: 64 * 1024 * 1024, sendMaxBufferedBytes: 256 * 1024 * 1024 });
    const reader = await factory.open(USER);
    const stuck = await factory.open(USER);
    const [readerManager, stuckManager] = factory.registry.managersOf(USER);
    reader.ws.pause();
    stuck.ws.pause();
    const chunk = JSON.stringify({ type: "reply", text: "h".repeat(16 * 1024) });
    for (let i = 0; i < 2048; i++) {
      readerManager!.send(chunk);
      stuckManager!.send(chunk);
    }
    await eventually(() => readerManager!.bufferedBytes > 8 * 1024 * 1024, 10_000, "a backlog to build");
    await factory.heartbeat.sweep(); // pings, queued behind the backlogs
    const sent = readerManager!.bytesSent;
    // It reads 4 MiB of the 32 MiB (enough for the kernel to take more from the factory), far from the ping.
    let read = 0;
    const onMessage = (): void => {
      if (++read < 256) return;
      reader.ws.pause();
      reader.ws.off("message", onMessage);
    };
    reader.ws.on("message", onMessage);
    reader.ws.resume();
    await eventually(() => readerManager!.bytesSent > sent, 10_000, "the reader to take some bytes");
    expect(readerManager!.awaitingPong).toBe(true);
    expect(await factory.heartbeat.sweep()).toBe(1);
    expect(stuckManager!.removed).toBe(true);
    expect(readerManager!.removed).toBe(false);
  });
});

describe("queued clients that left are gone", () => {
  it("an upgrade whose client half-closed (FIN) while queued leaves the queue at once", async () => {
    factory = await startTestFactory({ limit: 2, queueTimeoutMs: 30_000, queueMax: 1 });
    const clients = await openMany(factory, 2);
    const token = await factory.token(USER);
    const first = tcpConnect(factory.port, "127.0.0.1");
    sockets.push(first);
    await new Promise<void>((resolve) => first.once("connect", () => resolve()));
    first.write(`GET /ws HTTP/1.1\r\nHost: x\r\n${Object.entries(handshake(token)).map(([k, v]) => `${k}: ${v}`).join("\r\n")}\r\n\r\n`);
    await eventually(() => factory!.events(FactoryEvent.queued, USER).length === 1, 5000, "the first upgrade to queue");
    first.end(); // FIN: the tab was closed
    // The user's real retry now queues (it is not refused with queue_full), and gets the next free slot.
    const retry = factory.attempt(USER);
    await eventually(() => factory!.events(FactoryEvent.queued, USER).length === 2, 5000, "the retry to queue");
    clients[0]!.ws.close();
    expect(isRefusal(await retry)).toBe(false);
    expect(factory.events(FactoryEvent.refused, USER)).toEqual([]);
  });
});

describe("degrade ends", () => {
  it("reconnecting under an in-process raise does not extend it, and no new raise follows at once", async () => {
    const clock = new ManualClock();
    factory = await startTestFactory({ limit: 2, ladder: ["degrade"] }, { clock });
    await openMany(factory, 2);
    await factory.open(USER); // 3/7 under an in-process raise
    const raise = factory.registry.raiseOf(USER);
    expect(raise).not.toBeNull();
    clock.advance(60_000);
    await factory.open(USER); // admitted under the same raise
    expect(factory.registry.raiseOf(USER)?.until).toBe(raise!.until);
    clock.advance(raise!.until - clock.now() + 1); // it ends
    expect(factory.registry.raiseOf(USER)).toBeNull();
    const again = await factory.attempt(USER);
    expect(isRefusal(again)).toBe(true);
    expect(factory.registry.raiseOf(USER)).toBeNull();
  });
});

describe("the token as a subprotocol", () => {
  it("is accepted, and the server selects reclaim.v1, never the token", async () => {
    factory = await startTestFactory();
    const token = await factory.token(USER);
    const ws = new WebSocket(factory.wsUrl, [SUBPROTOCOL, tokenSubprotocol(token)]);
    const opened = await new Promise<string>((resolve, reject) => {
      ws.once("open", () => resolve(ws.protocol));
      ws.once("error", reject);
    });
    expect(opened).toBe(SUBPROTOCOL);
    expect(factory.registry.active(USER)).toBe(1);
    ws.close();
  });

  it("a bad token in the subprotocol is a 401, and is not echoed", async () => {
    factory = await startTestFactory();
    const { status } = await rawUpgrade(factory.port, {
      ...handshake("x"),
      Authorization: "",
      "Sec-WebSocket-Protocol": `${SUBPROTOCOL}, ${tokenSubprotocol("not-a-token")}`,
    });
    expect(status).toMatch(/^HTTP\/1\.1 401/);
  });
});

describe("browsers (Origin) and refusals", () => {
  it("a refused client with Origin gets the upgrade, one refused message and close 1013; without Origin, a 503", async () => {
    factory = await startTestFactory({ limit: 1, retryAfterSeconds: 7 });
    await factory.open(USER);
    const token = await factory.token(USER);
    const browser = new WebSocket(factory.wsUrl, [SUBPROTOCOL, tokenSubprotocol(token)], { origin: "http://chat.example" });
    const messages: unknown[] = [];
    browser.on("message", (data: Buffer) => messages.push(JSON.parse(data.toString("utf8"))));
    const closed = await new Promise<{ code: number; reason: string }>((resolve) => browser.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
    expect(messages).toEqual([{ type: "refused", reason: "limit", retryAfterMs: 7000 }]);
    expect(closed.code).toBe(1013);
    expect(closed.reason).toMatch(/retry after 7 s/);
    const plain = await factory.attempt(USER);
    expect(isRefusal(plain) && plain.status).toBe(503);
    expect(isRefusal(plain) && plain.retryAfter).toBe("7");
    expect(factory.registry.active(USER)).toBe(1);
  });

  it("--allowed-origins: another origin gets 403 and no slot; an allowed one and a client without Origin connect", async () => {
    factory = await startTestFactory({ allowedOrigins: ["https://chat.example"] });
    const token = await factory.token(USER);
    const { status } = await rawUpgrade(factory.port, { ...handshake(token), Origin: "https://evil.example" });
    expect(status).toMatch(/^HTTP\/1\.1 403/);
    expect(factory.registry.occupied(USER)).toBe(0);
    expect(factory.events(FactoryEvent.originRefused)).toHaveLength(1);
    const ok = new WebSocket(factory.wsUrl, { headers: { Authorization: `Bearer ${token}` }, origin: "https://chat.example" });
    await new Promise<void>((resolve, reject) => {
      ok.once("open", () => resolve());
      ok.once("error", reject);
    });
    await factory.open(USER);
    expect(factory.registry.active(USER)).toBe(2);
    ok.close();
  });
});

describe("graceful drain", () => {
  it("fails readiness at once, then closes each connection with 1001 at its own jittered moment within the drain", async () => {
    const timers = new ManualClock();
    const jitter = [0.8, 0.2, 0.6, 0.0, 0.4];
    let next = 0;
    factory = await startTestFactory({ drainMs: 1000, shutdownGraceMs: 5000 }, { timers, random: () => jitter[next++ % jitter.length]! });
    const clients = await openMany(factory, 5);
    const closedOrder: number[] = [];
    clients.forEach((c, i) => void c.closed.then(() => closedOrder.push(i)));
    const closing = factory.shutdown();
    await eventually(async () => (await fetch(`${factory!.controlUrl}/readyz`).catch(() => null))?.status === 503, 5000, "readiness to fail");
    // Each step of the drain closes exactly the next client, in the order of its jitter.
    for (const [step, expected] of [[0, [3]], [200, [3, 1]], [200, [3, 1, 4]], [200, [3, 1, 4, 2]], [200, [3, 1, 4, 2, 0]]] as const) {
      timers.advance(step);
      await eventually(() => closedOrder.length === expected.length, 5000, `${expected.length} clients closed`);
      expect(closedOrder).toEqual(expected);
    }
    for (const c of clients) expect(await c.closed).toEqual({ code: CLOSE_GOING_AWAY, reason: SHUTDOWN_CLOSE_REASON });
    await closing;
    factory = undefined;
  });
});
