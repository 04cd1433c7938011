/**
 * The chat port's HTTP limits (issue 12, item 10), against a real factory
 * with real `ws` clients: a connection that holds a partial request header is
 * cut after `httpHeadersTimeoutMs` with a JSON 408; one address cannot hold
 * more than `httpMaxPendingPerAddress` connections that have not sent their
 * request (503); and neither upgraded WebSockets nor upgrades waiting in the
 * admission queue count against that cap, because behind a Google Cloud load
 * balancer every WebSocket comes from a few proxy addresses.
 *
 * No test sleeps: a cut connection is its socket's `close`.
 */
import type { Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { FactoryEvent } from "../../src/contract/events.js";
import { isRefusal } from "../../src/demo/clients.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { openRaw, sample, type RawReply } from "../support/raw-http.js";


let factory: TestFactory | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await factory?.close();
  factory = undefined;
});





/** A connection to `port` that has sent `bytes` (see `openRaw`). */
function open(port: number, bytes: string): Promise<{ socket: Socket; closed: Promise<RawReply> }> {
  return openRaw(port, bytes, sockets);
}

/** A plain (non-upgrade) GET of the WebSocket path: answered 426 by the chat server once it gets through. */
const PLAIN_GET = "GET /ws HTTP/1.1\r\nHost: chat\r\nConnection: close\r\n\r\n";
/** The start of a WebSocket handshake that never finishes its headers. */
const PARTIAL_UPGRADE = "GET /ws HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Ver";

describe("the chat port's HTTP limits", () => {
  it("a handshake whose headers never finish is cut after httpHeadersTimeoutMs with 408 request_timeout", async () => {
    const f = (factory = await startTestFactory({ httpHeadersTimeoutMs: 200 }));
    const { closed } = await open(f.port, PARTIAL_UPGRADE);
    const reply = await closed;
    expect({ status: reply.status, code: reply.body?.error?.code }, reply.raw).toEqual({ status: 408, code: "request_timeout" });
    expect(sample(await f.metrics.registry.metrics(), 'reclaim_factory_http_refused_total{server="chat",code="request_timeout"}')).toBe(1);
    // Nothing of it reached admission: no slot was reserved for anyone.
    expect(f.registry.userCount).toBe(0);
  });

  it("one connection over httpMaxPendingPerAddress is answered 503 too_many_connections and closed", async () => {
    const f = (factory = await startTestFactory({ httpMaxPendingPerAddress: 2 }));
    // Connections are accepted in the order they were made: both of these are pending before the third arrives.
    await open(f.port, PARTIAL_UPGRADE);
    await open(f.port, PARTIAL_UPGRADE);
    const over = await (await open(f.port, PLAIN_GET)).closed;
    expect({ status: over.status, code: over.body?.error?.code }, over.raw).toEqual({ status: 503, code: "too_many_connections" });
    expect(sample(await f.metrics.registry.metrics(), 'reclaim_factory_http_refused_total{server="chat",code="too_many_connections"}')).toBe(1);
  });

  it("upgraded WebSockets from one address do not count: 5 clients open under a cap of 2, and a request still gets through", async () => {
    const f = (factory = await startTestFactory({ httpMaxPendingPerAddress: 2 }));
    for (let i = 0; i < 5; i++) await f.open(`user-${i}`);
    expect(f.registry.size).toBe(5);
    expect((await (await open(f.port, PLAIN_GET)).closed).status).toBe(426);
  });

  it("upgrades waiting in the admission queue do not count either", async () => {
    const f = (factory = await startTestFactory({ httpMaxPendingPerAddress: 2, limit: 1, queueTimeoutMs: 60_000 }));
    await f.open("alice");
    const waiting = [f.attempt("alice"), f.attempt("alice")];
    await eventually(() => f.events(FactoryEvent.queued, "alice").length === 2, 5000, "two upgrades to queue");
    const bob = await f.attempt("bob");
    expect(isRefusal(bob), "a new WebSocket gets in while two upgrades wait").toBe(false);
    expect((await (await open(f.port, PLAIN_GET)).closed).status).toBe(426);
    await f.close();
    await Promise.all(waiting);
  });
});
