/**
 * The rules of the probe, the evictor and the rung runner, each pinned
 * (mutation testing found these unpinned): the stuck-buffer rule's "not
 * draining" half, the ghost check, pingAll's listeners and when it ends,
 * what an eviction sends, logs and counts, and what a rung run returns,
 * logs and counts.
 *
 * The parts are built by hand around a real `ws` server on 127.0.0.1 with
 * real `ws` clients: each accepted socket becomes a Manager (with its TCP
 * socket, as the factory builds it) in a real Registry, with a real Evictor,
 * FactoryMetrics and RungRunner. Only the log is an in-memory recorder.
 */
import { once } from "node:events";
import type { AddressInfo, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { ZodError } from "zod";
import { FactoryEvent, type RemovalReason } from "../../src/contract/events.js";
import { Evictor } from "../../src/factory/evict.js";
import { Manager } from "../../src/factory/manager.js";
import { FactoryMetrics } from "../../src/factory/metrics.js";
import { Registry } from "../../src/factory/registry.js";
import type { RungContext, RungDefaults } from "../../src/factory/rungs/context.js";
import { NoConnectionsError, RungParamError } from "../../src/factory/rungs/degrade.js";
import { pingAll, probe } from "../../src/factory/rungs/probe.js";
import { breakdown, RungRunner } from "../../src/factory/rungs/runner.js";
import { DEFAULTS, NEVER_MS } from "../support/admission.js";
import { ManualClock } from "../support/clock.js";
import { RecordingEventLog } from "../support/event-log.js";
import { eventually } from "../support/factory.js";

const MiB = 1024 * 1024;
/** A server ping carrying the manager's 4-byte sequence number: 2 bytes of header (unmasked) + 4. */
const PING_FRAME_BYTES = 6;

interface Conn {
  /** The test's client. */
  client: WebSocket;
  /** The server's side of the connection (what the manager holds). */
  server: WebSocket;
  raw: Socket;
  manager: Manager;
}

interface Harness {
  clock: ManualClock;
  registry: Registry;
  evictor: Evictor;
  metrics: FactoryMetrics;
  log: RecordingEventLog;
  ctx: RungContext;
  runner: RungRunner;
  /** userIds `wouldAdmit` was asked about. */
  admitAsked: string[];
  /** Opens a client for `userId` and registers its manager (the registry keeps it until evicted: a closed socket stays, a ghost). */
  connect(userId: string, options?: { autoPong?: boolean }): Promise<Conn>;
  close(): Promise<void>;
}


let current: Harness | undefined;
afterEach(async () => {
  await current?.close();
  current = undefined;
});

async function harness(options: { limit?: number; closeGraceMs?: number; defaults?: Partial<RungDefaults>; admit?: boolean } = {}): Promise<Harness> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await once(wss, "listening");
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`;
  const arrivals = new Map<string, (side: { ws: WebSocket; raw: Socket }) => void>();
  wss.on("connection", (ws, req) => {
    ws.on("error", () => undefined);
    arrivals.get(new URL(req.url ?? "/", url).searchParams.get("c") ?? "")?.({ ws, raw: req.socket });
  });
  const clock = new ManualClock();
  const registry = new Registry(options.limit ?? 5, clock);
  const log = new RecordingEventLog();
  const metrics = new FactoryMetrics({ managers: () => registry.size, connections: () => 0, usersAtLimit: () => 0, queueLength: () => 0 }, { defaultMetrics: false });
  const evictor = new Evictor(registry, log, metrics, options.closeGraceMs ?? NEVER_MS);
  const ctx: RungContext = { registry, evictor, clock, metrics, defaults: { ...DEFAULTS, ...options.defaults } };
  const admitAsked: string[] = [];
  const runner = new RungRunner(ctx, log, (userId) => {
    admitAsked.push(userId);
    return options.admit ?? true;
  });
  const conns: Conn[] = [];
  let seq = 0;
  const h: Harness = {
    clock,
    registry,
    evictor,
    metrics,
    log,
    ctx,
    runner,
    admitAsked,
    async connect(userId, { autoPong = true } = {}) {
      const key = String(++seq);
      const serverSide = new Promise<{ ws: WebSocket; raw: Socket }>((resolve) => arrivals.set(key, resolve));
      const client = new WebSocket(`${url}?c=${key}`, { autoPong, perMessageDeflate: false });
      client.on("error", () => undefined);
      await once(client, "open");
      const { ws: server, raw } = await serverSide;
      const manager = new Manager(userId, server, clock, raw);
      registry.commit(manager);
      const conn = { client, server, raw, manager };
      conns.push(conn);
      return conn;
    },
    async close() {
      for (const c of conns) {
        c.client.terminate();
        c.server.terminate();
      }
      registry.clearTimers();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
  current = h;
  return h;
}

/** The value of a counter or histogram series with exactly these labels (0 when it was never moved). */
async function value(metric: { get(): Promise<{ values: { value: number; labels: object; metricName?: string }[] }> }, labels: Record<string, string>, metricName?: string): Promise<number> {
  const { values } = await metric.get();
  const hit = values.find(
    (v) =>
      (metricName === undefined || v.metricName === metricName) &&
      JSON.stringify(Object.entries(v.labels).sort()) === JSON.stringify(Object.entries(labels).sort()),
  );
  return hit?.value ?? 0;
}

/** Every series of a counter that was moved, as `label=value,...` → value. */
async function series(metric: { get(): Promise<{ values: { value: number; labels: object }[] }> }): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await metric.get()).values) {
    out[Object.entries(v.labels).map(([k, x]) => `${k}=${String(x)}`).join(",")] = v.value;
  }
  return out;
}

/**
 * A client that stopped reading with a backlog of `bytes` waiting for it:
 * one binary message too large for the kernel's buffers, so the write of it
 * cannot complete and `bytesSent` does not move while the client stays paused.
 */
async function stalledReader(h: Harness, userId: string, backlogs: number[] = [16 * MiB]): Promise<Conn> {
  const c = await h.connect(userId, { autoPong: false });
  c.client.pause();
  const sent = c.manager.bytesSent;
  for (const bytes of backlogs) c.manager.send(Buffer.alloc(bytes), true);
  // The premise: the first backlog's write is still under way (the kernel could not take it all).
  expect(c.manager.bytesSent).toBe(sent);
  expect(c.manager.bufferedBytes).toBeGreaterThan(backlogs.reduce((a, b) => a + b, 0) - 1);
  return c;
}

describe("probe: which connections are zombies", () => {
  it("a connection that answers the ping is kept; one that does not, with nothing waiting to be sent, is no_pong", async () => {
    const h = await harness();
    const live = await h.connect("u");
    const silent = await h.connect("u", { autoPong: false });
    const removed = await probe(h.ctx, "u", { timeoutMs: 150 });
    expect(removed).toEqual([{ managerId: silent.manager.id, reason: "no_pong" }]);
    expect(h.registry.managersOf("u")).toEqual([live.manager]);
    expect(silent.manager.removal).toBe("no_pong");
    // Its buffer was empty at the start: the ping itself reaching the kernel is no "drain".
    expect(h.log.lines.filter((l) => l.event === FactoryEvent.zombie).map((l) => l.fields)).toEqual([
      { userId: "u", managerId: silent.manager.id, reason: "no_pong", managers: 1, limit: 5, kind: "no_pong" },
    ]);
  });

  it("without params it waits the default probe timeout", async () => {
    const h = await harness({ defaults: { probeTimeoutMs: 150 } });
    const silent = await h.connect("u", { autoPong: false });
    expect(await probe(h.ctx, "u", {})).toEqual([{ managerId: silent.manager.id, reason: "no_pong" }]);
  });

  it("a send buffer at the threshold that did not drain is send_buffer_stuck; one byte below it, no_pong", async () => {
    const h = await harness();
    const at = await stalledReader(h, "at");
    const below = await stalledReader(h, "below");
    // Each threshold is what the buffer will hold at the end: the backlog plus the probe's own ping (or one byte more).
    const [atRemoved, belowRemoved] = await Promise.all([
      probe(h.ctx, "at", { timeoutMs: 150, bufferThresholdBytes: at.manager.bufferedBytes + PING_FRAME_BYTES }),
      probe(h.ctx, "below", { timeoutMs: 150, bufferThresholdBytes: below.manager.bufferedBytes + PING_FRAME_BYTES + 1 }),
    ]);
    expect(atRemoved).toEqual([{ managerId: at.manager.id, reason: "send_buffer_stuck" }]);
    expect(belowRemoved).toEqual([{ managerId: below.manager.id, reason: "no_pong" }]);
    // The two probes run at once and either may end first: each manager's line, whatever the order.
    const kinds = h.log.lines.filter((l) => l.event === FactoryEvent.zombie).map((l) => [l.fields.managerId, l.fields.kind]);
    expect(kinds).toHaveLength(2);
    expect(Object.fromEntries(kinds)).toEqual({ [at.manager.id]: "send_buffer_stuck", [below.manager.id]: "no_pong" });
  });

  it("without params the threshold is the default one", async () => {
    const h = await harness({ defaults: { bufferThresholdBytes: MiB } });
    const stuck = await stalledReader(h, "u");
    expect(await probe(h.ctx, "u", { timeoutMs: 150 })).toEqual([{ managerId: stuck.manager.id, reason: "send_buffer_stuck" }]);
  });

  it("a send buffer above the threshold that DID drain during the probe (bytes went to the kernel) is no zombie", async () => {
    const h = await harness();
    // Two backlogs: the client reads the first during the probe, then stops again with the second still waiting.
    const c = await stalledReader(h, "u", [16 * MiB, 16 * MiB]);
    const sent = c.manager.bytesSent;
    const running = probe(h.ctx, "u", { timeoutMs: 3000, bufferThresholdBytes: MiB });
    c.client.once("message", () => c.client.pause());
    c.client.resume();
    await eventually(() => c.manager.bytesSent > sent, 3000, "the first backlog to reach the kernel");
    expect(await running).toEqual([]);
    // Still at/above the threshold at the end, and no pong: only the drain kept it.
    expect(c.manager.bufferedBytes).toBeGreaterThanOrEqual(MiB);
    expect(h.registry.managersOf("u")).toEqual([c.manager]);
    expect(c.manager.removal).toBeNull();
    expect(h.log.lines).toEqual([]);
  });

  it("a manager the application holds back (heldByApp) that did not pong is kept", async () => {
    const h = await harness();
    const held = await h.connect("u");
    held.manager.pauseReading();
    expect(held.manager.heldByApp).toBe(true);
    let pongs = 0;
    held.server.on("pong", () => pongs++);
    expect(await probe(h.ctx, "u", { timeoutMs: 150 })).toEqual([]);
    // Its pong was not read (it waits behind the held frames), not missing because the client is dead.
    expect(pongs).toBe(0);
    expect(h.registry.managersOf("u")).toEqual([held.manager]);
    held.manager.resumeReading();
    await once(held.server, "pong");
  });

  it("a held manager whose send buffer is stuck is still send_buffer_stuck", async () => {
    const h = await harness();
    const stuck = await stalledReader(h, "u");
    stuck.manager.pauseReading();
    expect(await probe(h.ctx, "u", { timeoutMs: 150, bufferThresholdBytes: MiB })).toEqual([{ managerId: stuck.manager.id, reason: "send_buffer_stuck" }]);
  });

  it("a socket that is not OPEN but still held by the registry is removed as socket_not_open, the live one kept", async () => {
    const h = await harness();
    const live = await h.connect("u");
    const ghost = await h.connect("u");
    const serverClosed = once(ghost.server, "close");
    ghost.client.close(1000, "bye");
    await serverClosed;
    expect(ghost.manager.isOpen).toBe(false);
    expect(h.registry.active("u")).toBe(2);
    const running = probe(h.ctx, "u", { timeoutMs: NEVER_MS });
    // The ghost is taken away before any ping: nobody waits for its pong.
    const pingListeners = ghost.server.listenerCount("pong");
    expect(await running).toEqual([{ managerId: ghost.manager.id, reason: "socket_not_open" }]);
    expect(pingListeners).toBe(0);
    expect(h.registry.managersOf("u")).toEqual([live.manager]);
    expect(h.log.lines.map((l) => [l.level, l.event, l.fields.kind, l.fields.managers])).toEqual([["warn", FactoryEvent.zombie, "socket_not_open", 1]]);
    // Counted as the probe's removal.
    expect(await series(h.metrics.managersRemoved)).toEqual({ "rung=probe,reason=socket_not_open": 1 });
  });
});

describe("pingAll", () => {
  it("with no managers resolves at once (before the next turn of the event loop) with an empty set", async () => {
    const later = new Promise<"later">((resolve) => setImmediate(() => resolve("later")));
    const answered = await Promise.race([pingAll([], []), later]);
    expect(answered).toEqual(new Set());
  });

  it("resolves as soon as every connection has answered, long before the deadlines, and removes its pong listeners", async () => {
    const h = await harness();
    const a = await h.connect("u");
    const b = await h.connect("u");
    const before = [a.server.listenerCount("pong"), b.server.listenerCount("pong")];
    const running = pingAll([a.manager, b.manager], [NEVER_MS, NEVER_MS]);
    expect([a.server.listenerCount("pong"), b.server.listenerCount("pong")]).toEqual([before[0]! + 1, before[1]! + 1]);
    expect(await running).toEqual(new Set([a.manager, b.manager]));
    expect([a.server.listenerCount("pong"), b.server.listenerCount("pong")]).toEqual(before);
  });

  it("at the deadline resolves without those that did not answer, and removes their pong listeners", async () => {
    const h = await harness();
    const live = await h.connect("u");
    const silent = await h.connect("u", { autoPong: false });
    const before = silent.server.listenerCount("pong");
    const answered = await pingAll([live.manager, silent.manager], [NEVER_MS, 50]);
    expect(answered).toEqual(new Set([live.manager]));
    expect(silent.server.listenerCount("pong")).toBe(before);
    expect(live.server.listenerCount("pong")).toBe(before);
  });

  it("counts a pong that comes after its own deadline while it still waits for another connection", async () => {
    const h = await harness();
    const late = await h.connect("u", { autoPong: false });
    const other = await h.connect("u", { autoPong: false });
    // `late`'s deadline (0 ms) has passed before any pong can arrive; `other` answers only once the server has seen `late`'s pong.
    late.client.once("ping", () => late.client.pong());
    const running = pingAll([late.manager, other.manager], [0, NEVER_MS]);
    late.server.once("pong", () => other.client.pong());
    expect(await running).toEqual(new Set([late.manager, other.manager]));
  });

  it("a manager whose socket closed does not make it throw: it simply did not answer", async () => {
    const h = await harness();
    const gone = await h.connect("u");
    const closed = once(gone.server, "close");
    gone.client.close(1000, "bye");
    await closed;
    expect(await pingAll([gone.manager], [20])).toEqual(new Set());
  });
});

describe("evict", () => {
  it("a force-evicted client gets close 1013 'evicted to free a connection slot', logged as factory.evicted and counted", async () => {
    const h = await harness({ limit: 5 });
    const c = await h.connect("u");
    await h.connect("u");
    await h.connect("u");
    const clientClosed = once(c.client, "close");
    const serverClosed = once(c.server, "close");
    expect(h.evictor.evict(c.manager, "evicted", "force")).toBe(true);
    expect(c.manager.removed).toBe(true);
    expect(c.manager.removal).toBe("evicted");
    expect(h.registry.active("u")).toBe(2);
    expect(h.log.lines).toEqual([
      {
        level: "info",
        event: FactoryEvent.evicted,
        fields: { userId: "u", managerId: c.manager.id, reason: "evicted", managers: 2, limit: 5 },
        message: `Manager ${c.manager.id} of user u removed (evicted)`,
      },
    ]);
    const [code, reason] = (await clientClosed) as [number, Buffer];
    expect([code, reason.toString("utf8")]).toEqual([1013, "evicted to free a connection slot"]);
    // The client finished the close handshake: no termination.
    const [serverCode] = (await serverClosed) as [number];
    expect(serverCode).toBe(1013);
    expect(await series(h.metrics.managersRemoved)).toEqual({ "rung=force,reason=evicted": 1 });
    expect(await series(h.metrics.zombiesDetected)).toEqual({});
  });

  it("an evicted client that never finishes the close handshake is terminated after closeGraceMs", async () => {
    const h = await harness({ closeGraceMs: 100 });
    const c = await h.connect("u");
    c.client.pause(); // it will not read the close frame, so it never answers it
    const serverClosed = once(c.server, "close");
    expect(h.evictor.evict(c.manager, "evicted", "force")).toBe(true);
    expect(c.server.readyState).toBe(WebSocket.CLOSING);
    // Terminated (1006: no close frame came back), not left CLOSING for ws's own 30 s close timeout.
    const [code] = (await serverClosed) as [number];
    expect(code).toBe(1006);
    expect(c.server.readyState).toBe(WebSocket.CLOSED);
  });

  it.each<["no_pong" | "socket_not_open" | "send_buffer_stuck"]>([["no_pong"], ["socket_not_open"], ["send_buffer_stuck"]])(
    "a zombie (%s) is terminated at once, logged as factory.zombie and counted by kind",
    async (kind) => {
      const h = await harness({ limit: 4 });
      const c = await h.connect("u");
      await h.connect("u");
      const clientClosed = once(c.client, "close");
      expect(h.evictor.evict(c.manager, kind, "probe")).toBe(true);
      // No close frame: the client sees the connection drop (1006), and the socket is not left CLOSING.
      const [code] = (await clientClosed) as [number];
      expect(code).toBe(1006);
      expect(c.server.readyState).toBe(WebSocket.CLOSED);
      expect(c.manager.removal).toBe(kind);
      expect(h.log.lines).toEqual([
        {
          level: "warn",
          event: FactoryEvent.zombie,
          fields: { userId: "u", managerId: c.manager.id, reason: kind, managers: 1, limit: 4, kind },
          message: `Zombie manager ${c.manager.id} of user u removed (${kind})`,
        },
      ]);
      expect(await series(h.metrics.zombiesDetected)).toEqual({ [`kind=${kind}`]: 1 });
      expect(await series(h.metrics.managersRemoved)).toEqual({ [`rung=probe,reason=${kind}`]: 1 });
    },
  );

  it("a slow reader gets close 1008 'not reading: too much unsent data', logged as factory.slow_reader", async () => {
    const h = await harness();
    const c = await h.connect("u");
    const clientClosed = once(c.client, "close");
    expect(h.evictor.evict(c.manager, "slow_reader", "backpressure")).toBe(true);
    const [code, reason] = (await clientClosed) as [number, Buffer];
    expect([code, reason.toString("utf8")]).toEqual([1008, "not reading: too much unsent data"]);
    expect(h.log.lines).toEqual([
      {
        level: "warn",
        event: FactoryEvent.slowReader,
        fields: { userId: "u", managerId: c.manager.id, reason: "slow_reader", managers: 0, limit: 5 },
        message: `Manager ${c.manager.id} of user u closed: it did not read what it was sent (0 bytes unsent)`,
      },
    ]);
    expect(await series(h.metrics.managersRemoved)).toEqual({ "rung=backpressure,reason=slow_reader": 1 });
    expect(await series(h.metrics.zombiesDetected)).toEqual({});
  });

  it.each<[RemovalReason, "heartbeat" | "conservative", string, string]>([
    ["heartbeat", "heartbeat", FactoryEvent.heartbeatTerminated, "terminated: no pong since the last heartbeat"],
    ["closed", "conservative", FactoryEvent.evicted, "removed (closed)"],
    ["idle", "conservative", FactoryEvent.evicted, "removed (idle)"],
  ])("%s: terminated at once (no close frame), an info line, no zombie counted", async (reason, by, event, tail) => {
    const h = await harness();
    const c = await h.connect("u");
    const clientClosed = once(c.client, "close");
    expect(h.evictor.evict(c.manager, reason, by)).toBe(true);
    const [code] = (await clientClosed) as [number];
    expect(code).toBe(1006);
    expect(h.log.lines).toEqual([
      { level: "info", event, fields: { userId: "u", managerId: c.manager.id, reason, managers: 0, limit: 5 }, message: `Manager ${c.manager.id} of user u ${tail}` },
    ]);
    expect(await series(h.metrics.managersRemoved)).toEqual({ [`rung=${by},reason=${reason}`]: 1 });
    expect(await series(h.metrics.zombiesDetected)).toEqual({});
  });

  it("evicting a manager already removed returns false, and logs, counts and closes nothing", async () => {
    const h = await harness();
    const first = await h.connect("u");
    expect(h.evictor.evict(first.manager, "no_pong", "probe")).toBe(true);
    expect(h.evictor.evict(first.manager, "evicted", "force")).toBe(false);
    expect(first.manager.removal).toBe("no_pong");
    // One the registry let go of otherwise (its socket still open): left alone.
    const other = await h.connect("u");
    expect(h.registry.remove(other.manager)).toBe(true);
    expect(h.evictor.evict(other.manager, "no_pong", "probe")).toBe(false);
    expect(other.manager.removal).toBeNull();
    // Still open: a round trip on it works after the refused eviction.
    other.client.ping();
    await once(other.client, "pong");
    expect(other.client.readyState).toBe(WebSocket.OPEN);
    expect(h.log.lines).toHaveLength(1);
    expect(await series(h.metrics.managersRemoved)).toEqual({ "rung=probe,reason=no_pong": 1 });
    expect(await series(h.metrics.zombiesDetected)).toEqual({ "kind=no_pong": 1 });
  });
});

describe("the rung runner", () => {
  it("probe: returns the removals and the user's state, counts the run and its duration, logs factory.cleanup", async () => {
    const h = await harness({ limit: 5, admit: true });
    const live = await h.connect("u");
    const silent = await h.connect("u", { autoPong: false });
    const t0 = performance.now();
    const result = await h.runner.run("probe", "u", { timeoutMs: 150 }, "control");
    const elapsed = performance.now() - t0;
    expect(result).toEqual({
      rung: "probe",
      userId: "u",
      removed: [{ managerId: silent.manager.id, reason: "no_pong" }],
      remaining: 1,
      limit: 5,
      effectiveLimit: 5,
      degradedUntil: null,
      admit: true,
      durationMs: result.durationMs,
      managerIds: [live.manager.id],
    });
    expect(h.admitAsked).toEqual(["u"]);
    // Its own duration: within the call, and what the histogram observed (in seconds).
    expect(result.durationMs).toBeGreaterThan(0);
    expect(result.durationMs).toBeLessThanOrEqual(elapsed);
    expect(await value(h.metrics.probeDuration, {}, "reclaim_factory_probe_duration_seconds_count")).toBe(1);
    expect(await value(h.metrics.probeDuration, {}, "reclaim_factory_probe_duration_seconds_sum")).toBeCloseTo(result.durationMs / 1000, 9);
    expect(await series(h.metrics.cleanupRuns)).toEqual({ "rung=probe,trigger=control": 1 });
    const cleanup = h.log.lines.filter((l) => l.event === FactoryEvent.cleanup);
    expect(cleanup).toEqual([
      {
        level: "info",
        event: FactoryEvent.cleanup,
        fields: { userId: "u", rung: "probe", trigger: "control", removed: 1, managers: 1, limit: 5, effectiveLimit: 5 },
        message: "Cleanup rung probe for user u removed 1 manager(s) [1 no_pong] (1/5)",
      },
    ]);
    expect(h.log.lines.some((l) => l.event === FactoryEvent.degraded)).toBe(false);
  });

  it("conservative: writes to the log it is given (not its own), says what wouldAdmit says, observes no probe duration", async () => {
    const h = await harness({ admit: false });
    const dead = await h.connect("u");
    const kept = await h.connect("u");
    dead.manager.active = false;
    const own = new RecordingEventLog();
    const result = await h.runner.run("conservative", "u", {}, "in_process", own);
    expect(result.removed).toEqual([{ managerId: dead.manager.id, reason: "closed" }]);
    expect(result.admit).toBe(false);
    expect(result.managerIds).toEqual([kept.manager.id]);
    expect(own.lines.map((l) => [l.level, l.event, l.message])).toEqual([
      ["info", FactoryEvent.cleanup, "Cleanup rung conservative for user u removed 1 manager(s) [1 closed] (1/5)"],
    ]);
    // The evictor still writes to the factory's log; the runner's line is not there.
    expect(h.log.lines.map((l) => l.event)).toEqual([FactoryEvent.evicted]);
    expect(await series(h.metrics.cleanupRuns)).toEqual({ "rung=conservative,trigger=in_process": 1 });
    expect(await value(h.metrics.probeDuration, {}, "reclaim_factory_probe_duration_seconds_count")).toBe(0);
  });

  it("force: evicts the least recently used and lists the rest in registration order", async () => {
    const h = await harness({ limit: 3 });
    const oldest = await h.connect("u");
    const a = await h.connect("u");
    const b = await h.connect("u");
    h.clock.advance(1000);
    a.manager.markUse();
    b.manager.markUse();
    const result = await h.runner.run("force", "u", { max: 1 }, "control");
    expect(result).toMatchObject({ rung: "force", removed: [{ managerId: oldest.manager.id, reason: "evicted" }], remaining: 2, limit: 3, effectiveLimit: 3 });
    expect(result.managerIds).toEqual([a.manager.id, b.manager.id]);
    expect(h.log.lines.at(-1)?.message).toBe("Cleanup rung force for user u removed 1 manager(s) [1 evicted] (2/3)");
  });

  it("degrade: raises the limit, reports until when, and also logs factory.degraded", async () => {
    const h = await harness({ limit: 5 });
    await h.connect("u");
    const until = new Date(h.clock.now() + 60_000).toISOString();
    const result = await h.runner.run("degrade", "u", { limit: 8, ttlMs: 60_000 }, "control");
    expect(result).toMatchObject({ rung: "degrade", removed: [], remaining: 1, limit: 5, effectiveLimit: 8, degradedUntil: until });
    expect(h.log.lines).toEqual([
      {
        level: "info",
        event: FactoryEvent.cleanup,
        fields: { userId: "u", rung: "degrade", trigger: "control", removed: 0, managers: 1, limit: 5, effectiveLimit: 8 },
        message: "Cleanup rung degrade for user u removed 0 manager(s) (1/8)",
      },
      {
        level: "warn",
        event: FactoryEvent.degraded,
        fields: { userId: "u", managers: 1, limit: 5, effectiveLimit: 8 },
        message: `User u limit raised to 8 until ${until}`,
      },
    ]);
    expect(await value(h.metrics.probeDuration, {}, "reclaim_factory_probe_duration_seconds_count")).toBe(0);
  });

  it.each<[string, "probe" | "force" | "conservative" | "degrade", unknown, new (...args: never[]) => Error]>([
    ["probe with timeoutMs 0", "probe", { timeoutMs: 0 }, ZodError],
    ["probe with an unknown parameter", "probe", { bogus: 1 }, ZodError],
    ["force with max 0", "force", { max: 0 }, ZodError],
    ["conservative with idleMs under 1 s", "conservative", { idleMs: 10 }, ZodError],
    ["degrade to the normal limit", "degrade", { limit: 5 }, RungParamError],
  ])("%s is refused before anything runs: nothing removed, logged or counted", async (_what, rung, params, error) => {
    const h = await harness({ limit: 5 });
    const c = await h.connect("u", { autoPong: false });
    c.manager.active = false;
    await expect(h.runner.run(rung, "u", params, "control")).rejects.toBeInstanceOf(error);
    expect(h.registry.managersOf("u")).toEqual([c.manager]);
    expect(h.log.lines).toEqual([]);
    expect(await series(h.metrics.cleanupRuns)).toEqual({});
    expect(h.admitAsked).toEqual([]);
  });

  it("degrade for a user with no connection is refused with NoConnectionsError, nothing logged or counted", async () => {
    const h = await harness();
    await expect(h.runner.run("degrade", "nobody", {}, "control")).rejects.toBeInstanceOf(NoConnectionsError);
    expect(h.log.lines).toEqual([]);
    expect(await series(h.metrics.cleanupRuns)).toEqual({});
  });

  it("breakdown counts the removals by reason in the order each reason first came, and is empty for none", () => {
    expect(breakdown([])).toBe("");
    expect(
      breakdown([
        { managerId: "a", reason: "no_pong" },
        { managerId: "b", reason: "socket_not_open" },
        { managerId: "c", reason: "no_pong" },
      ]),
    ).toBe(" [2 no_pong, 1 socket_not_open]");
  });
});
