/**
 * Admission at the limit with live clients: the in-process ladder frees
 * nothing that is alive, `degrade` admits up to its raise and reverts after
 * its TTL, and the queue admits a waiting connection when a slot frees or
 * refuses it with 503 after its timeout.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FactoryEvent } from "../../src/contract/events.js";
import { isRefusal, type ChatClient, type Refusal } from "../../src/demo/clients.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";

const USER = "user-at-limit";

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

async function openMany(f: TestFactory, n: number): Promise<ChatClient[]> {
  const clients: ChatClient[] = [];
  for (let i = 0; i < n; i++) clients.push(await f.open(USER));
  return clients;
}

function refused(result: ChatClient | Refusal): Refusal {
  if (!isRefusal(result)) throw new Error("expected the connection to be refused");
  return result;
}

async function metric(f: TestFactory, name: string, labels: string): Promise<number> {
  const text = await f.metrics.registry.metrics();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

describe("20 live idle clients", () => {
  it("the in-process ladder frees nothing and the 21st is refused with 503 and Retry-After", async () => {
    factory = await startTestFactory({ retryAfterSeconds: 7 });
    await openMany(factory, 20);

    const refusal = refused(await factory.attempt(USER));
    expect(refusal.status).toBe(503);
    expect(refusal.retryAfter).toBe("7");
    expect(JSON.parse(refusal.body)).toMatchObject({ error: { code: "resource_limit", reason: "limit" } });
    expect(factory.registry.active(USER)).toBe(20);
    const cleanups = factory.events(FactoryEvent.cleanup, USER);
    expect(cleanups.map((c) => [c.rung, c.removed])).toEqual([
      ["conservative", 0],
      ["probe", 0],
    ]);
    expect(await metric(factory, "reclaim_factory_admissions_total", 'outcome="refused"')).toBe(1);
    expect(await metric(factory, "reclaim_factory_admissions_total", 'outcome="admitted"')).toBe(20);
  });

  it("with force in the in-process ladder, the tab with the oldest inbound activity is evicted with 1013", async () => {
    factory = await startTestFactory({ ladder: ["conservative", "probe", "force"] });
    const clients = await openMany(factory, 20);
    // Everyone but tab 7 speaks after it connected, so tab 7 has the oldest inbound activity.
    for (const [i, c] of clients.entries()) if (i !== 7) await c.chat(`hi ${i}`);

    const newcomer = await factory.open(USER);
    expect(await clients[7]!.closed).toMatchObject({ code: 1013, reason: "evicted to free a connection slot" });
    expect(await newcomer.chat("in")).toBe("echo: in");
    expect(factory.registry.active(USER)).toBe(20);
    expect(await metric(factory, "reclaim_factory_admissions_total", 'outcome="after_cleanup"')).toBe(1);
  });
});

describe("degrade", () => {
  it("admits up to the raised limit with a notice, refuses beyond it, and reverts after its TTL", async () => {
    factory = await startTestFactory();
    const clients = await openMany(factory, 20);
    // queueTimeoutMs 0: beyond the raise, refuse at once (the next test covers queueing under a raise).
    const res = await factory.control("POST", `/v1/users/${USER}/rungs/degrade`, { limit: 25, ttlMs: 1500, queueTimeoutMs: 0 });
    expect(res.status).toBe(200);

    const extra: ChatClient[] = [];
    for (let i = 0; i < 5; i++) extra.push(await factory.open(USER));
    const notice = await extra[0]!.next("notice");
    expect(notice).toMatchObject({ code: "resource_constraint", mode: "degraded" });
    expect(notice.retryAfterMs).toBeGreaterThan(0);
    expect(refused(await factory.attempt(USER)).status).toBe(503);
    expect(await metric(factory, "reclaim_factory_admissions_total", 'outcome="degraded"')).toBe(5);

    // After the TTL: the 25 stay connected, but nobody new gets in until the user is under 20.
    await eventually(() => factory!.events(FactoryEvent.degradeExpired, USER).length === 1, 5000, "the raise to end");
    expect(factory.registry.effectiveLimit(USER)).toBe(20);
    expect(factory.registry.active(USER)).toBe(25);
    expect(refused(await factory.attempt(USER)).status).toBe(503);
    await Promise.all([...extra, clients[0]!].map((c) => c.close()));
    await eventually(() => factory!.registry.active(USER) === 19, 5000, "six tabs to close");
    expect(isRefusal(await factory.attempt(USER))).toBe(false);
  });
});

describe("degrade with its queue", () => {
  it("queues connections beyond the raise instead of refusing them at once", async () => {
    factory = await startTestFactory();
    await openMany(factory, 20);
    await factory.control("POST", `/v1/users/${USER}/rungs/degrade`, { limit: 21, ttlMs: 60_000, queueTimeoutMs: 10_000 });
    const inUnderRaise = await factory.open(USER);
    const waiting = factory.attempt(USER);
    await eventually(() => factory!.events(FactoryEvent.queued, USER).length === 1, 5000, "the upgrade to queue");
    await inUnderRaise.close();
    const admitted = await waiting;
    if (isRefusal(admitted)) throw new Error(`queued connection refused: ${admitted.status}`);
    expect(await admitted.next("notice")).toMatchObject({ mode: "queued" });
  });
});

describe("queueing", () => {
  it("holds a connection until a slot frees, then admits it with a notice", async () => {
    factory = await startTestFactory({ queueTimeoutMs: 10_000 });
    const clients = await openMany(factory, 20);
    const waiting = factory.attempt(USER);
    await eventually(() => factory!.events(FactoryEvent.queued, USER).length === 1, 5000, "the upgrade to queue");
    expect((await factory.control("GET", `/v1/users/${USER}/admission`)).body).toMatchObject({ admit: false, queued: 1 });

    await clients[3]!.close();
    const admitted = await waiting;
    if (isRefusal(admitted)) throw new Error(`queued connection refused: ${admitted.status}`);
    expect(await admitted.next("notice")).toMatchObject({ code: "resource_constraint", mode: "queued" });
    expect(await admitted.chat("waited")).toBe("echo: waited");
    expect(await metric(factory, "reclaim_factory_admissions_total", 'outcome="queued"')).toBe(1);
  });

  it("refuses with 503 when the queue timeout passes", async () => {
    factory = await startTestFactory({ queueTimeoutMs: 300 });
    await openMany(factory, 20);
    const refusal = refused(await factory.attempt(USER));
    expect(refusal.status).toBe(503);
    expect(JSON.parse(refusal.body)).toMatchObject({ error: { reason: "queue_timeout" } });
    expect(factory.events(FactoryEvent.hardLimit, USER)).toHaveLength(1);
    expect(factory.events(FactoryEvent.refused, USER)[0]).toMatchObject({ reason: "queue_timeout" });
  });

  it("refuses at once when the user's queue is full", async () => {
    factory = await startTestFactory({ queueTimeoutMs: 10_000, queueMax: 1 });
    await openMany(factory, 20);
    const first = factory.attempt(USER);
    await eventually(() => factory!.events(FactoryEvent.queued, USER).length === 1, 5000, "the first upgrade to queue");
    const second = refused(await factory.attempt(USER));
    expect(JSON.parse(second.body)).toMatchObject({ error: { reason: "queue_full" } });
    await factory.close();
    expect(refused(await first).status).toBe(503);
  });

  it("a connection arriving while others wait does not jump the queue", async () => {
    factory = await startTestFactory({ queueTimeoutMs: 10_000 });
    const clients = await openMany(factory, 20);
    const first = factory.attempt(USER);
    await eventually(() => factory!.events(FactoryEvent.queued, USER).length === 1, 5000, "the first upgrade to queue");
    const second = factory.attempt(USER);
    await eventually(() => factory!.events(FactoryEvent.queued, USER).length === 2, 5000, "the second upgrade to queue");

    await clients[0]!.close();
    const winner = await first;
    expect(isRefusal(winner)).toBe(false);
    expect(factory.registry.active(USER)).toBe(20);
    await clients[1]!.close();
    expect(isRefusal(await second)).toBe(false);
  });
});

describe("admission bookkeeping", () => {
  it("two upgrades racing for the last slot never both win it", async () => {
    factory = await startTestFactory();
    await openMany(factory, 19);
    const results = await Promise.all([factory.attempt(USER), factory.attempt(USER), factory.attempt(USER)]);
    expect(results.filter((r) => !isRefusal(r))).toHaveLength(1);
    expect(factory.registry.active(USER)).toBe(20);
  });
  // A malformed handshake giving its slot back: test/factory/hostile-clients.test.ts sends real ones over TCP
  // (fetch refuses to send the Upgrade header, so a fetch-based test never reached the server).
});
