/**
 * Rung calls with an `Idempotency-Key` (ADR 13): a key runs its rung once;
 * later calls with it get the first run's answer, marked replayed.
 */
import { afterEach, describe, expect, it } from "vitest";
import { IdempotencyCache } from "../../src/factory/idempotency.js";
import { TEST_CONTROL_TOKEN, startTestFactory, type TestFactory } from "../support/factory.js";

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

async function rung(
  f: TestFactory,
  userId: string,
  name: string,
  body: unknown,
  key?: string,
): Promise<{ status: number; replayed: string | null; body: { removed?: unknown[]; error?: { code: string; message: string } } }> {
  const res = await fetch(`${f.controlUrl}/v1/users/${userId}/rungs/${name}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${TEST_CONTROL_TOKEN}`, "Content-Type": "application/json", ...(key === undefined ? {} : { "Idempotency-Key": key }) },
    body: JSON.stringify(body),
  });
  return { status: res.status, replayed: res.headers.get("idempotent-replayed"), body: (await res.json()) as never };
}

const controlRuns = (f: TestFactory, userId: string): number => f.events("factory.cleanup", userId).filter((l) => l.trigger === "control").length;

describe("Idempotency-Key on rung calls", () => {
  it("force with the same key after the user took the freed slot evicts nothing more: the first run's answer, replayed", async () => {
    factory = await startTestFactory({ limit: 3 });
    const tabs = [await factory.open("u"), await factory.open("u"), await factory.open("u")];
    const first = await rung(factory, "u", "force", { max: 1 }, "incident-1/0");
    expect(first).toMatchObject({ status: 200, replayed: null });
    expect(first.body.removed).toHaveLength(1);
    const refill = await factory.open("u"); // the user's new tab takes the freed slot
    const again = await rung(factory, "u", "force", { max: 1 }, "incident-1/0");
    expect(again).toMatchObject({ status: 200, replayed: "true", body: first.body });
    expect(controlRuns(factory, "u")).toBe(1);
    expect(factory.registry.active("u")).toBe(3);
    expect(refill.ws.readyState).toBe(refill.ws.OPEN);
    expect(tabs.filter((t) => t.ws.readyState === t.ws.OPEN)).toHaveLength(2);
    // Another key is another request: it runs.
    const other = await rung(factory, "u", "force", { max: 1 }, "incident-2/0");
    expect(other).toMatchObject({ status: 200, replayed: null });
    expect(controlRuns(factory, "u")).toBe(2);
  });

  it("a call that arrives while the first is still running waits for it and runs nothing", async () => {
    factory = await startTestFactory({ limit: 3, probeTimeoutMs: 300 });
    await factory.open("z", "no-pong");
    const [a, b] = await Promise.all([rung(factory, "z", "probe", {}, "k/0"), rung(factory, "z", "probe", {}, "k/0")]);
    expect([a.replayed, b.replayed].sort()).toEqual([null, "true"]);
    expect(a.body).toEqual(b.body);
    expect(a.body.removed).toHaveLength(1);
    expect(controlRuns(factory, "z")).toBe(1);
  });

  it.each([
    ["another user", "v", "probe", {}],
    ["another rung", "u", "conservative", {}],
    ["another body", "u", "probe", { timeoutMs: 50 }],
  ])("refuses a key used again for %s (400 invalid_params)", async (_what, userId, name, body) => {
    factory = await startTestFactory();
    expect((await rung(factory, "u", "probe", {}, "same")).status).toBe(200);
    const reused = await rung(factory, userId, name, body, "same");
    expect(reused.status).toBe(400);
    expect(reused.body.error).toMatchObject({ code: "invalid_params" });
    expect(reused.body.error!.message).toContain("different request");
  });

  it.each([["has a space"], ["x".repeat(201)], ["é"]])("refuses a malformed key %j (400 invalid_params) and runs nothing", async (key) => {
    factory = await startTestFactory();
    const res = await rung(factory, "u", "probe", {}, key);
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: "invalid_params" });
    expect(controlRuns(factory, "u")).toBe(0);
  });

  it("forgets a run that failed: the same key with valid parameters then runs", async () => {
    factory = await startTestFactory();
    expect((await rung(factory, "u", "force", { max: 0 }, "retry-me")).status).toBe(400);
    expect(await rung(factory, "u", "force", { max: 1 }, "retry-me")).toMatchObject({ status: 200, replayed: null });
  });
});

describe("IdempotencyCache", () => {
  it("forgets keys after ttlMs, and holds at most maxKeys (the oldest go first)", async () => {
    let now = 0;
    const cache = new IdempotencyCache<number>({ maxKeys: 2, ttlMs: 1000, now: () => now });
    let runs = 0;
    const run = (): Promise<number> => Promise.resolve(++runs);
    expect(await cache.run("a", "r", run)).toEqual({ value: 1, replayed: false });
    expect(await cache.run("a", "r", run)).toEqual({ value: 1, replayed: true });
    now = 1000;
    expect(await cache.run("a", "r", run)).toEqual({ value: 2, replayed: false }); // expired
    await cache.run("b", "r", run);
    await cache.run("c", "r", run);
    expect(cache.size).toBe(2);
    expect((await cache.run("a", "r", run)).replayed).toBe(false); // evicted as the oldest
  });

  it("refuses a non-positive bound or TTL with a TypeError", () => {
    expect(() => new IdempotencyCache({ maxKeys: 0 })).toThrow(TypeError);
    expect(() => new IdempotencyCache({ ttlMs: 0 })).toThrow(TypeError);
  });
});
