/**
 * `reclaim factory --upstream` in front of a backend that is not Node: a
 * Python `websockets` server (test/support/python/ws_backend.py). Real
 * clients, a real factory, the real Python process, all on 127.0.0.1.
 */
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { tokenSubprotocol } from "../../src/contract/client.js";
import type { FactoryConfigInput } from "../../src/factory/config.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { describeNeeding } from "../support/needs.js";
import { pythonWebsocketsMissing, startPythonBackend, type PythonBackend } from "../support/python-backend.js";
import { isRawRefusal, mustOpen, openRaw, text, type RawClient } from "../support/raw-ws.js";

let backend: PythonBackend;
const factories: TestFactory[] = [];
const clients: RawClient[] = [];

async function proxy(path: string, config: FactoryConfigInput = {}): Promise<TestFactory> {
  const factory = await startTestFactory({ upstream: backend.url(path), ...config });
  factories.push(factory);
  return factory;
}

async function client(factory: TestFactory, userId: string, options: { protocols?: string[]; query?: string; headers?: Record<string, string> } = {}): Promise<RawClient> {
  const token = await factory.token(userId);
  const c = await mustOpen(`${factory.wsUrl}${options.query ?? ""}`, options.protocols ?? [], { headers: { Authorization: `Bearer ${token}`, ...options.headers } });
  clients.push(c);
  return c;
}

async function gauge(factory: TestFactory, slow: "client" | "upstream"): Promise<number> {
  const values = (await factory.metrics.upstreamPaused.get()).values;
  return values.find((v) => v.labels.slow === slow)?.value ?? 0;
}

async function counter(factory: TestFactory, name: "upstreamConnects" | "upstreamCloses", label: string, value: string): Promise<number> {
  const values = (await factory.metrics[name].get()).values;
  return values.find((v) => v.labels[label as never] === value)?.value ?? 0;
}

describeNeeding(pythonWebsocketsMissing(), "the proxy in front of a Python websockets backend", () => {
  beforeAll(async () => {
    backend = await startPythonBackend();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.ws.terminate();
    for (const f of factories.splice(0)) await f.close();
  });
  afterAll(async () => {
    await backend.stop();
  });

  it("passes text and binary frames both ways unchanged, and tells the backend who the user is from the token only", async () => {
    const factory = await proxy("/chat");
    const c = await client(factory, "alice", { query: "?room=42&token=leak", headers: { "X-Reclaim-User": "mallory", Cookie: "sid=secret" } });
    const hello = await c.nextJson((m) => m.type === "hello");
    const state = await factory.control("GET", "/v1/users/alice");
    expect(hello.user).toBe("alice");
    expect(hello.manager).toBe(state.body.managers[0].id);
    expect(hello.admission).toBe("admitted");
    // The path is the upstream's; the client's query goes along without its token.
    expect(hello.path).toBe("/chat?room=42");
    // No credentials unless asked for.
    expect(hello.authorization).toBeNull();
    expect(hello.cookie).toBeNull();
    expect(hello.forwardedFor).toBe("127.0.0.1");

    c.ws.send("héllo wörld");
    expect(text(await c.next((f) => !f.binary && text(f) === "héllo wörld"))).toBe("héllo wörld");
    const payload = Buffer.from([0, 1, 2, 255, 254, 10, 13, 0]);
    c.ws.send(payload);
    const echoed = await c.next((f) => f.binary);
    expect(echoed.data.equals(payload)).toBe(true);
    // A frame from the client is use of the tab (the proxy cannot tell chat from keepalive).
    const after = await factory.control("GET", "/v1/users/alice");
    expect(after.body.managers[0].lastUsedAt).not.toBeNull();
  });

  it("lets the backend choose the subprotocol, and never shows it the token carrier", async () => {
    const factory = await proxy("/chat");
    const token = await factory.token("bob");
    const c = await mustOpen(factory.wsUrl, ["chat.v2", tokenSubprotocol(token)]);
    clients.push(c);
    expect(c.ws.protocol).toBe("chat.v2");
    const hello = await c.nextJson((m) => m.type === "hello");
    expect(hello.subprotocol).toBe("chat.v2");
    expect(hello.user).toBe("bob");
    expect(hello.authorization).toBeNull();
    expect(JSON.stringify(hello)).not.toContain(token);
  });

  it("forwards the token as a bearer and the cookie only with upstreamForwardAuth", async () => {
    const factory = await proxy("/chat", { upstreamForwardAuth: true });
    const token = await factory.token("carol");
    const c = await mustOpen(factory.wsUrl, ["chat.v2", tokenSubprotocol(token)], { headers: { Cookie: "sid=abc" } });
    clients.push(c);
    const hello = await c.nextJson((m) => m.type === "hello");
    expect(hello.authorization).toBe(`Bearer ${token}`);
    expect(hello.cookie).toBe("sid=abc");
  });

  it("an upstream that refuses the handshake refuses the client: 502 (503 with its Retry-After), close 1014 for a browser; the slot is given back", async () => {
    const refusing = await proxy("/refuse", { limit: 1 });
    const token = await refusing.token("dave");
    const plain = await openRaw(refusing.wsUrl, [], { headers: { Authorization: `Bearer ${token}` } });
    if (!isRawRefusal(plain)) throw new Error("expected a refusal");
    expect(plain.status).toBe(502);
    expect(JSON.parse(plain.body).error).toMatchObject({ code: "upstream_refused", message: expect.stringContaining("HTTP 403") });
    // A browser sends Origin and cannot read a status: it gets the upgrade and close 1014 with the reason.
    const browser = await mustOpen(refusing.wsUrl, [], { headers: { Authorization: `Bearer ${token}`, Origin: "https://chat.example.com" } });
    const closed = await browser.closed;
    expect(closed.code).toBe(1014);
    expect(closed.reason).toContain("HTTP 403");
    // Neither attempt kept dave's only slot.
    expect((await refusing.control("GET", "/v1/users/dave/admission")).body).toMatchObject({ admit: true, active: 0 });
    expect(await counter(refusing, "upstreamConnects", "result", "refused")).toBe(2);
    expect(refusing.events("factory.upstream_failed", "dave")).toHaveLength(2);

    const busy = await proxy("/busy");
    const refused = await openRaw(busy.wsUrl, [], { headers: { Authorization: `Bearer ${await busy.token("dave")}` } });
    if (!isRawRefusal(refused)) throw new Error("expected a refusal");
    expect(refused.status).toBe(503);
    expect(refused.headers["retry-after"]).toBe("7");
  });

  it("an upstream that cannot be reached is 502, one that does not answer in time is 504", async () => {
    const gone = await startPythonBackend();
    const deadUrl = gone.url("/chat");
    await gone.stop();
    const unreachable = await startTestFactory({ upstream: deadUrl });
    factories.push(unreachable);
    const r1 = await openRaw(unreachable.wsUrl, [], { headers: { Authorization: `Bearer ${await unreachable.token("erin")}` } });
    if (!isRawRefusal(r1)) throw new Error("expected a refusal");
    expect(r1.status).toBe(502);
    expect(JSON.parse(r1.body).error.code).toBe("upstream_unreachable");

    const hanging = await proxy("/hang", { upstreamConnectTimeoutMs: 200 });
    const r2 = await openRaw(hanging.wsUrl, [], { headers: { Authorization: `Bearer ${await hanging.token("erin")}` } });
    if (!isRawRefusal(r2)) throw new Error("expected a refusal");
    expect(r2.status).toBe(504);
    expect(JSON.parse(r2.body).error.code).toBe("upstream_timeout");
    expect(await counter(hanging, "upstreamConnects", "result", "timeout")).toBe(1);
  });

  it("carries close codes both ways; an upstream that drops the connection closes the client with 1014", async () => {
    const factory = await proxy("/chat");
    const a = await client(factory, "frank");
    const aHello = await a.nextJson((m) => m.type === "hello");
    a.ws.close(4001, "bye from client");
    const seen = await backend.next((e) => e.event === "closed" && e.manager === aHello.manager);
    expect(seen).toMatchObject({ code: 4001, reason: "bye from client" });

    const b = await client(factory, "frank");
    await b.nextJson((m) => m.type === "hello");
    b.ws.send("close 4002 done here");
    expect(await b.closed).toEqual({ code: 4002, reason: "done here" });

    const c = await client(factory, "frank");
    await c.nextJson((m) => m.type === "hello");
    c.ws.send("drop");
    expect((await c.closed).code).toBe(1014);
    await eventually(async () => (await factory.control("GET", "/v1/users/frank")).body.managers.length === 0, 5000, "frank's managers removed");
  });

  it("a manager the ladder removes closes its upstream connection, saying why", async () => {
    const factory = await proxy("/chat", { limit: 2 });
    const zombie = await client(factory, "gina", { headers: {} });
    const zombieHello = await zombie.nextJson((m) => m.type === "hello");
    // A frozen tab: it stops answering pings (its TCP stays open).
    zombie.ws.pong = (): void => undefined;
    (zombie.ws as unknown as { _receiver: { removeAllListeners(e: string): void } })._receiver.removeAllListeners("ping");
    const live = await client(factory, "gina");
    const liveHello = await live.nextJson((m) => m.type === "hello");

    const probe = await factory.control("POST", "/v1/users/gina/rungs/probe", {});
    expect(probe.status).toBe(200);
    expect(probe.body.removed).toHaveLength(1);
    const zombieClosed = await backend.next((e) => e.event === "closed" && e.manager === zombieHello.manager);
    expect(zombieClosed).toMatchObject({ code: 1001, reason: "client removed by reclaim (no_pong)" });

    const force = await factory.control("POST", "/v1/users/gina/rungs/force", { freeSlots: 2 });
    expect(force.status).toBe(200);
    expect((await live.closed).code).toBe(1013);
    const liveClosed = await backend.next((e) => e.event === "closed" && e.manager === liveHello.manager);
    expect(liveClosed).toMatchObject({ code: 1001, reason: "client removed by reclaim (evicted)" });
    expect(await counter(factory, "upstreamCloses", "by", "factory")).toBe(2);
  });

  it("answers the upstream's pings", async () => {
    const factory = await proxy("/chat");
    const c = await client(factory, "hank");
    await c.nextJson((m) => m.type === "hello");
    c.ws.send("ping");
    expect(text(await c.next((f) => text(f) === "pong-received"))).toBe("pong-received");
  });

  it("survives an upstream restart: clients see 1001, a connection while it is down gets 502, and after it is back connections work", async () => {
    const own = await startPythonBackend();
    const factory = await startTestFactory({ upstream: own.url("/chat") });
    factories.push(factory);
    try {
      const c = await client(factory, "ivan");
      await c.nextJson((m) => m.type === "hello");
      await own.stop();
      expect((await c.closed).code).toBe(1001);
      const down = await openRaw(factory.wsUrl, [], { headers: { Authorization: `Bearer ${await factory.token("ivan")}` } });
      if (!isRawRefusal(down)) throw new Error("expected a refusal while the upstream is down");
      expect(down.status).toBe(502);
      const again = await startPythonBackend(own.port);
      try {
        const d = await client(factory, "ivan");
        expect((await d.nextJson((m) => m.type === "hello")).user).toBe("ivan");
      } finally {
        for (const x of clients.splice(0)) x.ws.terminate();
        await again.stop();
      }
    } finally {
      await own.stop();
    }
  });

  it("a slow upstream holds its client back (bounded) instead of buffering without end, and is not taken for a zombie", async () => {
    const factory = await proxy("/sink", { sendHighWaterBytes: 64 * 1024 });
    const c = await client(factory, "jane");
    await c.nextJson((m) => m.type === "hello");
    const chunk = Buffer.alloc(60 * 1024, 7);
    let sent = 0;
    // Send until the factory says it holds this client back; never more than 256 MiB.
    while ((await gauge(factory, "upstream")) === 0) {
      if (sent > 256 * 1024 * 1024) throw new Error("the factory kept reading a client whose upstream does not read");
      if (c.ws.bufferedAmount < 4 * 1024 * 1024) {
        c.ws.send(chunk);
        sent += chunk.length;
      } else {
        await new Promise((r) => setImmediate(r));
      }
    }
    expect(await gauge(factory, "upstream")).toBe(1);
    // Held back, its pongs wait unread behind its own frames: that is not a zombie, and the probe leaves it alone.
    const probe = await factory.control("POST", "/v1/users/jane/rungs/probe", { timeoutMs: 200 });
    expect(probe.body.removed).toEqual([]);
    expect(await factory.heartbeat.sweep()).toBe(0);
    expect(await factory.heartbeat.sweep()).toBe(0);
    // Removed by the ladder, it is let go: the gauge comes back to 0.
    const force = await factory.control("POST", "/v1/users/jane/rungs/force", { freeSlots: 20 });
    expect(force.body.removed).toHaveLength(1);
    await eventually(async () => (await gauge(factory, "upstream")) === 0, 5000, "the gauge back to 0 after the client was removed");
  });

  it("a client that does not read pauses its upstream, and is closed as a slow reader, which closes the upstream", async () => {
    const factory = await proxy("/chat", { sendHighWaterBytes: 64 * 1024, sendMaxBufferedBytes: 256 * 1024 * 1024, slowReaderTimeoutMs: 1000 });
    const c = await client(factory, "kim");
    const hello = await c.nextJson((m) => m.type === "hello");
    c.ws.send("flood 4000 65536");
    // It stops reading: everything the backend sends piles up in the factory or in TCP.
    await eventually(() => c.frames.length > 1, 5000, "the flood to begin");
    (c.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    await eventually(async () => (await gauge(factory, "client")) === 1, 10_000, "the upstream paused for a slow client");
    const closed = await backend.next((e) => e.event === "closed" && e.manager === hello.manager, 15_000);
    expect(closed).toMatchObject({ code: 1001, reason: "client removed by reclaim (slow_reader)" });
    // The backend was held back: of 250 MiB it could not send them all.
    expect(closed.sent).toBeLessThan(4000 * 65536);
    expect(await gauge(factory, "client")).toBe(0);
  });
});
