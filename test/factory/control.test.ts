/**
 * The control API over real HTTP on 127.0.0.1, against a real factory with
 * real WebSocket clients: auth, the read routes, the four rungs, request
 * validation, /metrics and the probes. Assertions are on status codes, error
 * `code` values and the contract's zod schemas — never on wording or timing.
 *
 * Requests go through node:http (not fetch) where the exact bytes matter:
 * node:http sends the request path verbatim, whereas fetch (the WHATWG URL
 * parser) rewrites `.`/`..`/`%2E%2E` segments before anything is sent.
 */
import { request, type IncomingHttpHeaders } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import type { Clock } from "../../src/contract/clock.js";
import { CLOSE_EVICTED } from "../../src/contract/client.js";
import {
  Admission,
  CONTROL_MAX_BODY_BYTES,
  ControlError,
  RungResult,
  UserList,
  UserState,
  type ControlErrorCode,
} from "../../src/contract/control.js";
import { FactoryEvent, type FactoryRung } from "../../src/contract/events.js";
import type { ChatClient, ClientKind } from "../../src/demo/clients.js";
import type { FactoryConfigInput } from "../../src/factory/config.js";
import { ManualClock } from "../support/clock.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type Json, type TestFactory } from "../support/factory.js";

/** Test users. Distinctive, so that "never appears in /metrics" means something. */
const FULL = "alice.full-7f3a9c";
const LIGHT = "bob.light-19c2e4";
const LIMIT = 20;
const RUNGS: readonly FactoryRung[] = ["conservative", "probe", "force", "degrade"];
const BEARER = `Bearer ${TEST_CONTROL_TOKEN}`;
/** The pressure fields of a user below the limit and never refused. */
const CALM = { atLimitSince: null, lastRefusedAt: null, refusals: 0 };
/** A user at the limit (since a time the real clock chose) and never refused. */
const AT_LIMIT = { atLimitSince: expect.any(String), lastRefusedAt: null, refusals: 0 };
/** A list's `asOf`: the factory's clock when it answered. */
const AS_OF = { asOf: expect.any(String) };


let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

async function start(config: FactoryConfigInput = {}, clock?: Clock): Promise<TestFactory> {
  factory = await startTestFactory(config, clock === undefined ? {} : { clock });
  return factory;
}

// ---------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** The parsed body when it is JSON, else null. */
  body: Json;
}

interface SendOptions {
  /** The Authorization header: omitted → the valid bearer token; null → no header at all. */
  auth?: string | null;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Send the body with `Transfer-Encoding: chunked` (no Content-Length), in several writes. */
  chunked?: boolean;
}

/** One request with node:http; the path goes on the wire exactly as given. */
function send(f: TestFactory, method: string, path: string, options: SendOptions = {}): Promise<Reply> {
  const url = new URL(f.controlUrl);
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth !== null) headers.Authorization = options.auth ?? BEARER;
  if (options.body !== undefined && options.chunked !== true) headers["Content-Length"] = String(Buffer.byteLength(options.body));
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("error", reject);
      res.on("end", () => {
        const isJson = (res.headers["content-type"] ?? "").startsWith("application/json");
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: isJson && text !== "" ? JSON.parse(text) : null });
      });
    });
    req.on("error", reject);
    if (options.body !== undefined) {
      const bytes = Buffer.from(options.body);
      if (options.chunked === true) for (let i = 0; i < bytes.length; i += 8192) req.write(bytes.subarray(i, i + 8192));
      else req.write(bytes);
    }
    req.end();
  });
}

/** POSTs a JSON body (or none) to a rung. */
function postRung(f: TestFactory, userId: string, rung: string, body?: unknown): Promise<Reply> {
  return send(f, "POST", `/v1/users/${userId}/rungs/${rung}`, {
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } }),
  });
}

/** Asserts an error answer: status, JSON content type, the `{"error":{"code","message"}}` shape and the code. */
function expectError(reply: Reply, status: number, code: ControlErrorCode): void {
  expect({ status: reply.status, body: reply.body }).toMatchObject({ status, body: { error: { code } } });
  expect(reply.headers["content-type"]).toMatch(/^application\/json/);
  const parsed = ControlError.safeParse(reply.body);
  expect(parsed.success, `error body ${reply.text} matches ControlError`).toBe(true);
  expect(typeof reply.body.error.message).toBe("string");
  expect(reply.body.error.message.length).toBeGreaterThan(0);
}

/** Asserts a 200 whose body matches `schema`, and returns the body. */
function expectOk<T>(reply: Reply, schema: { parse(v: unknown): T }): T {
  expect(reply.status, reply.text).toBe(200);
  expect(reply.headers["content-type"]).toMatch(/^application\/json/);
  return schema.parse(reply.body);
}

// ---------------------------------------------------------------------------
// Client helpers
// ---------------------------------------------------------------------------

/** Opens `n` clients of `kind` for `userId`, in order, and returns them. */
async function openMany(f: TestFactory, userId: string, n: number, kind: ClientKind = "live"): Promise<ChatClient[]> {
  const clients: ChatClient[] = [];
  for (let i = 0; i < n; i++) clients.push(await f.open(userId, kind));
  return clients;
}

/** Opens `n` live clients one clock second apart, so their creation order is exact. */
async function openSpaced(f: TestFactory, userId: string, n: number, clock: ManualClock): Promise<ChatClient[]> {
  const clients: ChatClient[] = [];
  for (let i = 0; i < n; i++) {
    clients.push(await f.open(userId));
    clock.advance(1000);
  }
  return clients;
}

/** The manager id the server gave this client in its welcome. */
async function managerIdOf(client: ChatClient): Promise<string> {
  return (await client.next("welcome")).managerId;
}

async function managerIdsOf(clients: ChatClient[]): Promise<string[]> {
  return Promise.all(clients.map(managerIdOf));
}

/** True while the client's socket is OPEN (it has not been closed by the server). */
function isOpen(client: ChatClient): boolean {
  return client.ws.readyState === client.ws.OPEN;
}

/** The value of one sample line of the Prometheus text format, e.g. `name{a="b"}`; undefined when absent. */
function sample(metrics: string, series: string): number | undefined {
  const line = metrics.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

// ---------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------

/** Every authenticated route, with a method it accepts. */
const V1_ROUTES: readonly (readonly [method: string, path: string])[] = [
  ["GET", "/v1/users"],
  ["GET", "/v1/users?atLimit=true"],
  ["GET", `/v1/users/${FULL}`],
  ["GET", `/v1/users/${FULL}/admission`],
  ...RUNGS.map((rung) => ["POST", `/v1/users/${FULL}/rungs/${rung}`] as const),
];

/** Authorization headers that must not get in (null = no header at all). */
const BAD_AUTH: readonly (readonly [label: string, header: string | null])[] = [
  ["no Authorization header", null],
  ["a wrong token of the same length", `Bearer ${"x".repeat(TEST_CONTROL_TOKEN.length)}`],
  ["a shorter token (a prefix of the real one)", `Bearer ${TEST_CONTROL_TOKEN.slice(0, -1)}`],
  ["a longer token (the real one plus a suffix)", `Bearer ${TEST_CONTROL_TOKEN}0`],
  ["the Basic scheme with the token", `Basic ${TEST_CONTROL_TOKEN}`],
  ["the Basic scheme with user:token", `Basic ${Buffer.from(`operator:${TEST_CONTROL_TOKEN}`).toString("base64")}`],
  ["an empty bearer (scheme and space only)", "Bearer "],
  ["the scheme without a token", "Bearer"],
  ["the token without a scheme", TEST_CONTROL_TOKEN],
  ["the token twice", `Bearer ${TEST_CONTROL_TOKEN} ${TEST_CONTROL_TOKEN}`],
];

describe("auth", () => {
  const cases = V1_ROUTES.flatMap(([method, path]) => BAD_AUTH.map(([label, header]) => ({ method, path, label, header })));

  it.each(cases)("$method $path with $label → 401 unauthorized + WWW-Authenticate: Bearer", async ({ method, path, header }) => {
    const f = await start();
    const reply = await send(f, method, path, { auth: header });
    expectError(reply, 401, "unauthorized");
    expect(reply.headers["www-authenticate"]).toMatch(/^Bearer\b/);
  });

  it("the same routes answer with the valid token (so the 401s above are about the token, not the route)", async () => {
    const f = await start();
    await f.open(FULL); // degrade needs a connection to raise a limit for
    for (const [method, path] of V1_ROUTES) {
      const reply = await send(f, method, path);
      expect(reply.status, `${method} ${path}: ${reply.text}`).toBe(200);
    }
  });

  it("the auth scheme is case-insensitive (RFC 7235): `bearer <token>` is accepted", async () => {
    const f = await start();
    const reply = await send(f, "GET", `/v1/users/${FULL}`, { auth: `bearer ${TEST_CONTROL_TOKEN}` });
    expectOk(reply, UserState);
  });

  it("the token is checked before the user id, the rung and the body: an unauthenticated caller learns nothing", async () => {
    const f = await start();
    for (const [method, path, body] of [
      ["GET", "/v1/users/a%20b", undefined],
      ["GET", "/v1/users?atLimit=maybe", undefined],
      ["POST", `/v1/users/${FULL}/rungs/nuke`, undefined],
      ["POST", `/v1/users/${FULL}/rungs/force`, "{not json"],
    ] as const) {
      const reply = await send(f, method, path, {
        auth: null,
        ...(body === undefined ? {} : { body, headers: { "Content-Type": "application/json" } }),
      });
      expectError(reply, 401, "unauthorized");
    }
  });

  it("an unauthenticated rung request has no effect: force at 20/20 without the token evicts nobody", async () => {
    const f = await start();
    const clients = await openMany(f, FULL, LIMIT);
    for (const [label, header] of BAD_AUTH) {
      const reply = await send(f, "POST", `/v1/users/${FULL}/rungs/force`, {
        auth: header,
        body: JSON.stringify({ max: 5, freeSlots: 5 }),
        headers: { "Content-Type": "application/json" },
      });
      expect(reply.status, label).toBe(401);
    }
    expect(f.registry.active(FULL)).toBe(LIMIT);
    expect(clients.every(isOpen)).toBe(true);
    expect(f.events(FactoryEvent.cleanup, FULL)).toHaveLength(0);
    expect(f.events(FactoryEvent.evicted, FULL)).toHaveLength(0);
  });

  it.each(["/healthz", "/readyz", "/metrics"])("%s answers 200 without a token (and ignores a wrong one)", async (path) => {
    const f = await start();
    expect((await send(f, "GET", path, { auth: null })).status).toBe(200);
    expect((await send(f, "GET", path, { auth: "Bearer wrong-token-0123456789" })).status).toBe(200);
  });
});

// ---------------------------------------------------------------------------
// GET /v1/users/{userId}
// ---------------------------------------------------------------------------

describe("GET /v1/users/{userId}", () => {
  it("shows the limits, the counts and one manager per connection with its id, times, socket state, buffer and counters", async () => {
    const f = await start();
    const clients = await openMany(f, FULL, 3);
    const ids = await managerIdsOf(clients);
    expect(await clients[1]!.chat("hello")).toBe("echo: hello");

    const state = expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState);
    expect(state).toMatchObject({ userId: FULL, limit: LIMIT, effectiveLimit: LIMIT, active: 3, queued: 0, degradedUntil: null });
    expect(state.managers).toHaveLength(3);
    expect(state.managers.map((m) => m.id).sort()).toEqual([...ids].sort());
    for (const m of state.managers) {
      expect(m.socketState).toBe("OPEN");
      expect(Number.isNaN(Date.parse(m.createdAt))).toBe(false);
      expect(new Date(m.createdAt).toISOString()).toBe(m.createdAt);
      expect(Number.isInteger(m.bufferedBytes) && m.bufferedBytes >= 0).toBe(true);
      expect(m.sendFailures).toBe(0);
      expect(m.messagesSent).toBeGreaterThanOrEqual(1); // the welcome
    }
    const chatter = state.managers.find((m) => m.id === ids[1])!;
    const silent = state.managers.filter((m) => m.id !== ids[1]);
    expect(chatter.messagesReceived).toBe(1);
    expect(chatter.messagesSent).toBeGreaterThanOrEqual(2); // welcome + reply
    expect(chatter.lastReceivedAt).not.toBeNull();
    expect(new Date(chatter.lastReceivedAt!).toISOString()).toBe(chatter.lastReceivedAt);
    expect(Date.parse(chatter.lastReceivedAt!)).toBeGreaterThanOrEqual(Date.parse(chatter.createdAt));
    expect(chatter.lastMessageAt).toBe(chatter.lastReceivedAt); // a message is both liveness and use
    for (const m of silent) {
      expect(m.messagesReceived).toBe(0);
      expect(m.lastReceivedAt).toBeNull();
      expect(m.lastMessageAt).toBeNull();
    }
  });

  it("a valid user with no connections → 200 with active 0 and no managers", async () => {
    const f = await start();
    await f.open(LIGHT); // someone else is connected; FULL is not
    const state = expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState);
    expect(state).toEqual({
      userId: FULL,
      limit: LIMIT,
      effectiveLimit: LIMIT,
      degradedUntil: null,
      active: 0,
      queued: 0,
      managers: [],
      ...CALM,
    });
  });

  it("reading the state changes nothing (no activity bump, no slot taken)", async () => {
    const f = await start();
    await openMany(f, FULL, 2);
    const first = expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState);
    const second = expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState);
    expect(second).toEqual(first);
    expect(f.registry.active(FULL)).toBe(2);
  });
});

// ---------------------------------------------------------------------------
// GET /v1/users
// ---------------------------------------------------------------------------

describe("GET /v1/users", () => {
  it("?atLimit=true lists only the user at 20/20; without the filter both users are listed", async () => {
    const f = await start();
    await openMany(f, FULL, LIMIT);
    await f.open(LIGHT);

    const atLimit = expectOk(await send(f, "GET", "/v1/users?atLimit=true"), UserList);
    expect(atLimit.users).toEqual([{ userId: FULL, active: LIMIT, limit: LIMIT, effectiveLimit: LIMIT, queued: 0, ...AT_LIMIT }]);

    const all = expectOk(await send(f, "GET", "/v1/users"), UserList);
    expect([...all.users].sort((a, b) => a.userId.localeCompare(b.userId))).toEqual([
      { userId: FULL, active: LIMIT, limit: LIMIT, effectiveLimit: LIMIT, queued: 0, ...AT_LIMIT },
      { userId: LIGHT, active: 1, limit: LIMIT, effectiveLimit: LIMIT, queued: 0, ...CALM },
    ]);
  });

  it("?atLimit=false is accepted (no filter)", async () => {
    const f = await start();
    await f.open(LIGHT);
    const list = expectOk(await send(f, "GET", "/v1/users?atLimit=false"), UserList);
    expect(list.users.map((u) => u.userId)).toEqual([LIGHT]);
  });

  it("an empty factory lists no users", async () => {
    const f = await start();
    expect(expectOk(await send(f, "GET", "/v1/users"), UserList)).toEqual({ users: [], ...AS_OF });
    expect(expectOk(await send(f, "GET", "/v1/users?atLimit=true"), UserList)).toEqual({ users: [], ...AS_OF });
  });

  it.each(["maybe", "", "1", "yes"])("?atLimit=%s → 400 invalid_params", async (value) => {
    const f = await start();
    expectError(await send(f, "GET", `/v1/users?atLimit=${value}`), 400, "invalid_params");
  });

  it("a user under a degrade raise is no longer at their (effective) limit", async () => {
    const f = await start();
    await openMany(f, FULL, LIMIT);
    expectOk(await postRung(f, FULL, "degrade", { limit: 25, ttlMs: 60_000 }), RungResult);
    const atLimit = expectOk(await send(f, "GET", "/v1/users?atLimit=true"), UserList);
    expect(atLimit.users).toEqual([]);
    const all = expectOk(await send(f, "GET", "/v1/users"), UserList);
    expect(all.users).toEqual([{ userId: FULL, active: LIMIT, limit: LIMIT, effectiveLimit: 25, queued: 0, ...CALM }]);
  });
});

// ---------------------------------------------------------------------------
// GET /v1/users/{userId}/admission
// ---------------------------------------------------------------------------

describe("GET /v1/users/{userId}/admission", () => {
  it("is true under the limit and consumes no slot: the next connection is still admitted", async () => {
    const f = await start();
    await openMany(f, FULL, LIMIT - 1);
    for (let i = 0; i < 5; i++) {
      const admission = expectOk(await send(f, "GET", `/v1/users/${FULL}/admission`), Admission);
      expect(admission).toEqual({ userId: FULL, admit: true, active: LIMIT - 1, effectiveLimit: LIMIT, queued: 0, ...CALM });
    }
    expect(f.registry.active(FULL)).toBe(LIMIT - 1);
    expect(f.registry.occupied(FULL)).toBe(LIMIT - 1); // no reservation left behind either
    expect(expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState).active).toBe(LIMIT - 1);

    const last = await f.attempt(FULL);
    expect("ws" in last, "the 20th connection is admitted").toBe(true);
    expect(f.registry.active(FULL)).toBe(LIMIT);
  });

  it("is false at 20/20, and asking runs no cleanup and changes nothing", async () => {
    const f = await start();
    const clients = await openMany(f, FULL, LIMIT);
    const admission = expectOk(await send(f, "GET", `/v1/users/${FULL}/admission`), Admission);
    expect(admission).toEqual({ userId: FULL, admit: false, active: LIMIT, effectiveLimit: LIMIT, queued: 0, ...AT_LIMIT });
    expect(f.registry.active(FULL)).toBe(LIMIT);
    expect(clients.every(isOpen)).toBe(true);
    expect(f.events(FactoryEvent.resourceLimit, FULL)).toHaveLength(0);
    expect(f.events(FactoryEvent.cleanup, FULL)).toHaveLength(0);
  });

  it("counts an upgrade waiting in the queue (queued 1, admit false) until a force frees its slot", async () => {
    const f = await start({ queueTimeoutMs: 10_000, probeTimeoutMs: 200 });
    await openMany(f, FULL, LIMIT);
    const waiting = f.attempt(FULL); // at 20/20 with queueing on: the in-process ladder finds nothing, so it queues
    await eventually(async () => (await f.control("GET", `/v1/users/${FULL}`)).body.queued === 1, 5000, "a queued upgrade");

    const admission = expectOk(await send(f, "GET", `/v1/users/${FULL}/admission`), Admission);
    expect(admission).toEqual({ userId: FULL, admit: false, active: LIMIT, effectiveLimit: LIMIT, queued: 1, ...AT_LIMIT });
    const list = expectOk(await send(f, "GET", "/v1/users?atLimit=true"), UserList);
    expect(list.users).toEqual([{ userId: FULL, active: LIMIT, limit: LIMIT, effectiveLimit: LIMIT, queued: 1, ...AT_LIMIT }]);

    const result = expectOk(await postRung(f, FULL, "force", { max: 1 }), RungResult);
    expect(result.removed).toHaveLength(1);
    const admitted = await waiting;
    expect("ws" in admitted, "the queued upgrade gets the freed slot").toBe(true);
    await eventually(() => f.registry.active(FULL) === LIMIT, 5000, "the queued client registered");
    expect(expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState).queued).toBe(0);
  });

  it("a valid user with no connections would be admitted", async () => {
    const f = await start();
    const admission = expectOk(await send(f, "GET", `/v1/users/${LIGHT}/admission`), Admission);
    expect(admission).toEqual({ userId: LIGHT, admit: true, active: 0, effectiveLimit: LIMIT, queued: 0, ...CALM });
  });
});

// ---------------------------------------------------------------------------
// POST /v1/users/{userId}/rungs/{rung}
// ---------------------------------------------------------------------------

describe("POST /v1/users/{userId}/rungs/{rung}", () => {
  it.each(RUNGS)("%s returns a RungResult (empty body = defaults) and removes no live client", async (rung) => {
    const f = await start();
    const clients = await openMany(f, FULL, 2);
    const result = expectOk(await postRung(f, FULL, rung), RungResult);
    expect(result).toMatchObject({ rung, userId: FULL, removed: [], remaining: 2, limit: LIMIT, admit: true });
    if (rung === "degrade") {
      expect(result.effectiveLimit).toBe(LIMIT + 5); // the documented default raise
      expect(result.degradedUntil).not.toBeNull();
    } else {
      expect(result).toMatchObject({ effectiveLimit: LIMIT, degradedUntil: null });
    }
    expect(clients.every(isOpen)).toBe(true);
    expect(f.events(FactoryEvent.cleanup, FULL).at(-1)).toMatchObject({ rung, trigger: "control", removed: 0 });
  });

  it.each(RUNGS)("%s accepts an explicit empty object and a JSON content type with charset", async (rung) => {
    const f = await start();
    await f.open(FULL); // degrade needs a connection to raise a limit for
    const reply = await send(f, "POST", `/v1/users/${FULL}/rungs/${rung}`, {
      body: "{}",
      headers: { "Content-Type": "Application/JSON; charset=utf-8" },
    });
    expect(expectOk(reply, RungResult).rung).toBe(rung);
  });

  it("conservative with {idleMs:1000} removes the client that sent nothing for longer, with reason idle", async () => {
    const clock = new ManualClock();
    const f = await start({}, clock);
    const [silent, talker] = await openMany(f, FULL, 2);
    clock.advance(5000);
    expect(await talker!.chat("hi")).toBe("echo: hi");
    const result = expectOk(await postRung(f, FULL, "conservative", { idleMs: 1000 }), RungResult);
    expect(result.removed).toEqual([{ managerId: await managerIdOf(silent!), reason: "idle" }]);
    expect(result.remaining).toBe(1);
    await silent!.closed;
    expect(isOpen(talker!)).toBe(true);
  });

  describe("probe", () => {
    it("over 20 live clients removes none", async () => {
      const f = await start();
      const clients = await openMany(f, FULL, LIMIT);
      const result = expectOk(await postRung(f, FULL, "probe"), RungResult);
      expect(result).toMatchObject({ rung: "probe", removed: [], remaining: LIMIT, admit: false });
      expect(clients.every(isOpen)).toBe(true);
      expect(f.registry.active(FULL)).toBe(LIMIT);
    });

    const zombieCases: { kind: ClientKind; via: "config" | "body" }[] = [
      { kind: "no-pong", via: "config" },
      { kind: "no-pong", via: "body" },
      { kind: "paused", via: "body" },
    ];
    it.each(zombieCases)("removes $kind clients with reason no_pong (timeout from the $via), keeps the live ones", async ({ kind, via }) => {
      const f = await start(via === "config" ? { probeTimeoutMs: 200 } : {});
      const live = await openMany(f, FULL, 2);
      const zombies = await openMany(f, FULL, 3, kind);
      const zombieIds = await managerIdsOf(zombies);
      const liveIds = await managerIdsOf(live);

      const result = expectOk(await postRung(f, FULL, "probe", via === "body" ? { timeoutMs: 200 } : undefined), RungResult);
      expect(result.removed.map((r) => r.reason)).toEqual(["no_pong", "no_pong", "no_pong"]);
      expect(result.removed.map((r) => r.managerId).sort()).toEqual([...zombieIds].sort());
      expect(result).toMatchObject({ rung: "probe", userId: FULL, remaining: 2, admit: true });

      const state = expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState);
      expect(state.managers.map((m) => m.id).sort()).toEqual([...liveIds].sort());
      for (const client of live) expect(await client.chat("still here")).toBe("echo: still here");
      if (kind === "no-pong") await Promise.all(zombies.map((z) => z.closed)); // terminated, not left hanging
    });
  });

  describe("force", () => {
    /**
     * `target` is the client expected to be evicted. Opening advances the
     * clock 1 s per client (distinct createdAt), each chat another 1 s.
     */
    const scenarios: { name: string; chatOrder: (n: number) => number[]; target: number }[] = [
      {
        // Every client chats; the newest-created one chatted first, so its inbound activity is the oldest.
        name: "everyone chatted, the newest connection first",
        chatOrder: (n) => [n - 1, ...Array.from({ length: n - 1 }, (_, i) => i)],
        target: LIMIT - 1,
      },
      {
        // Silent clients count from their creation; the oldest one chatted last, so the second oldest goes.
        name: "only the oldest connection chatted",
        chatOrder: () => [0],
        target: 1,
      },
    ];

    it.each(scenarios)("{max:1} at 20/20 removes exactly the oldest inbound activity ($name) with close 1013", async ({ chatOrder, target }) => {
      const clock = new ManualClock();
      const f = await start({}, clock);
      const clients = await openSpaced(f, FULL, LIMIT, clock);
      for (const i of chatOrder(LIMIT)) {
        clock.advance(1000);
        expect(await clients[i]!.chat(`x${i}`)).toBe(`echo: x${i}`);
      }
      const ids = await managerIdsOf(clients);

      const result = expectOk(await postRung(f, FULL, "force", { max: 1 }), RungResult);
      expect(result.removed).toEqual([{ managerId: ids[target], reason: "evicted" }]);
      expect(result).toMatchObject({ rung: "force", userId: FULL, remaining: LIMIT - 1, effectiveLimit: LIMIT, admit: true });

      const closed = await clients[target]!.closed;
      expect(closed.code).toBe(CLOSE_EVICTED);
      expect(clients.filter((_, i) => i !== target).every(isOpen)).toBe(true);
      const state = expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState);
      expect(state.active).toBe(LIMIT - 1);
      expect(state.managers.map((m) => m.id)).not.toContain(ids[target]);

      // Idempotent: the slot is free now, so running it again evicts nobody.
      const again = expectOk(await postRung(f, FULL, "force", { max: 1 }), RungResult);
      expect(again).toMatchObject({ removed: [], remaining: LIMIT - 1, admit: true });
      expect(clients.filter((_, i) => i !== target).every(isOpen)).toBe(true);
    });

    it("a probe's pongs do not make a tab look recently used: force still evicts the least recently chatting one", async () => {
      const clock = new ManualClock();
      const f = await start({}, clock);
      const clients = await openSpaced(f, FULL, LIMIT, clock);
      const target = LIMIT - 1;
      for (const i of [target, ...Array.from({ length: LIMIT - 1 }, (_, k) => k)]) {
        clock.advance(1000);
        await clients[i]!.chat(`x${i}`);
      }
      clock.advance(1000);
      // Every live tab pongs: lastReceivedAt is now the same for all, lastMessageAt is unchanged.
      expect(expectOk(await postRung(f, FULL, "probe"), RungResult).removed).toEqual([]);
      const state = expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState);
      expect(new Set(state.managers.map((m) => m.lastReceivedAt)).size).toBe(1);

      const result = expectOk(await postRung(f, FULL, "force", { max: 1 }), RungResult);
      expect(result.removed).toEqual([{ managerId: await managerIdOf(clients[target]!), reason: "evicted" }]);
      expect((await clients[target]!.closed).code).toBe(CLOSE_EVICTED);
    });

    it("removes nothing when the user already has a free slot (19/20)", async () => {
      const f = await start();
      const clients = await openMany(f, FULL, LIMIT - 1);
      const result = expectOk(await postRung(f, FULL, "force", { max: 5 }), RungResult);
      expect(result).toMatchObject({ removed: [], remaining: LIMIT - 1, admit: true });
      expect(clients.every(isOpen)).toBe(true);
    });

    it("{max:3,freeSlots:3} at 20/20 removes the three oldest, each with close 1013", async () => {
      const clock = new ManualClock();
      const f = await start({}, clock);
      const clients = await openSpaced(f, FULL, LIMIT, clock);
      const ids = await managerIdsOf(clients);
      const result = expectOk(await postRung(f, FULL, "force", { max: 3, freeSlots: 3 }), RungResult);
      expect(result.removed).toEqual(ids.slice(0, 3).map((managerId) => ({ managerId, reason: "evicted" })));
      expect(result.remaining).toBe(LIMIT - 3);
      for (const c of clients.slice(0, 3)) expect((await c.closed).code).toBe(CLOSE_EVICTED);
      expect(clients.slice(3).every(isOpen)).toBe(true);
    });
  });

  describe("degrade", () => {
    it("{limit:25,ttlMs:60000} at 20/20 → effectiveLimit 25, degradedUntil set, admission true, a 21st client gets in", async () => {
      const clock = new ManualClock();
      const f = await start({}, clock);
      await openMany(f, FULL, LIMIT);
      const until = new Date(clock.now() + 60_000).toISOString();

      const result = expectOk(await postRung(f, FULL, "degrade", { limit: 25, ttlMs: 60_000 }), RungResult);
      expect(result).toMatchObject({ rung: "degrade", userId: FULL, removed: [], remaining: LIMIT, limit: LIMIT, effectiveLimit: 25, admit: true });
      expect(result.degradedUntil).toBe(until);

      const state = expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState);
      expect(state).toMatchObject({ limit: LIMIT, effectiveLimit: 25, degradedUntil: until, active: LIMIT });
      const admission = expectOk(await send(f, "GET", `/v1/users/${FULL}/admission`), Admission);
      expect(admission).toEqual({ userId: FULL, admit: true, active: LIMIT, effectiveLimit: 25, queued: 0, ...CALM });

      const extra = await f.attempt(FULL);
      expect("ws" in extra, "the 21st connection is admitted under the raise").toBe(true);
      expect(f.registry.active(FULL)).toBe(LIMIT + 1);
    });

    it("is idempotent: a second call replaces the raise", async () => {
      const f = await start();
      await f.open(FULL);
      expectOk(await postRung(f, FULL, "degrade", { limit: 30, ttlMs: 60_000 }), RungResult);
      const second = expectOk(await postRung(f, FULL, "degrade", { limit: 25, ttlMs: 60_000 }), RungResult);
      expect(second.effectiveLimit).toBe(25);
      expect(expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState).effectiveLimit).toBe(25);
    });

    it("the raise ends after ttlMs: effectiveLimit back to 20 and degradedUntil null", async () => {
      const f = await start();
      await f.open(FULL);
      const result = expectOk(await postRung(f, FULL, "degrade", { limit: 25, ttlMs: 50 }), RungResult);
      expect(result.effectiveLimit).toBe(25);
      await eventually(async () => (await f.control("GET", `/v1/users/${FULL}`)).body.degradedUntil === null, 5000, "the raise to end");
      const state = expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState);
      expect(state).toMatchObject({ effectiveLimit: LIMIT, degradedUntil: null });
    });

    it("accepts the highest allowed raise (2 × limit = 40)", async () => {
      const f = await start();
      await f.open(FULL);
      expect(expectOk(await postRung(f, FULL, "degrade", { limit: 40 }), RungResult).effectiveLimit).toBe(40);
    });

    it.each([20, 19, 5, 1, 41, 100, 10_000])("limit %i (not in 21..40) → 400 invalid_params, and no raise is set", async (limit) => {
      const f = await start();
      await f.open(FULL);
      expectError(await postRung(f, FULL, "degrade", { limit, ttlMs: 60_000 }), 400, "invalid_params");
      const state = expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState);
      expect(state).toMatchObject({ effectiveLimit: LIMIT, degradedUntil: null });
      expect(f.events(FactoryEvent.degraded, FULL)).toHaveLength(0);
    });
  });
});

// ---------------------------------------------------------------------------
// Validation and routing
// ---------------------------------------------------------------------------

/** Paths that carry a user id, as a function of the (already encoded) id segment. */
const USER_PATHS: readonly (readonly [method: string, path: (id: string) => string])[] = [
  ["GET", (id) => `/v1/users/${id}`],
  ["GET", (id) => `/v1/users/${id}/admission`],
  ["POST", (id) => `/v1/users/${id}/rungs/probe`],
  ["POST", (id) => `/v1/users/${id}/rungs/force`],
];

/** User id segments (as sent on the wire) that the server sees as an invalid id. */
const BAD_IDS: readonly (readonly [label: string, segment: string])[] = [
  ["a 129-character id", "a".repeat(129)],
  ["a space (%20)", "a%20b"],
  ["an encoded slash (%2F)", "a%2Fb"],
  ["only an encoded slash", "%2F"],
  ["non-ASCII (é, as UTF-8 percent-encoding)", "%C3%A9"],
  ["non-ASCII (a CJK character)", "%E7%94%A8%E6%88%B7"],
  ["a percent sign (%25)", "100%25"],
  ["an encoded double dot behind a prefix (x%2F..)", "x%2F.."],
  ["an empty id", ""],
  ["a malformed percent-escape", "%E0%A4%A"],
];

describe("validation", () => {
  const badIdCases = USER_PATHS.flatMap(([method, path]) => BAD_IDS.map(([label, segment]) => ({ method, path: path(segment), label })));

  it.each(badIdCases)("$method $path ($label) → 400 invalid_user_id", async ({ method, path }) => {
    const f = await start();
    const reply = await send(f, method, path);
    // A segment that does not percent-decode at all is not a user id either; the server may also call it "no route".
    if (path.includes("%E0%A4%A")) {
      expect([400, 404]).toContain(reply.status);
      expectError(reply, reply.status, reply.status === 400 ? "invalid_user_id" : "not_found");
    } else {
      expectError(reply, 400, "invalid_user_id");
    }
  });

  /**
   * Dot segments can never reach the server as a user id. The WHATWG URL
   * parser — which fetch uses, and which the server itself applies to
   * `req.url` — treats `.`/`%2E` as "this directory" and `..`, `.%2E`, `%2E.`,
   * `%2E%2E` as "parent directory" (RFC 3986 remove_dot_segments). So
   * `/v1/users/..` is routed as `/v1/` (404), `/v1/users/.` as `/v1/users/`
   * (an empty id: 400), and `/v1/users/./admission` as `/v1/users/admission`
   * (a *valid* request for the user named "admission": 200). The property
   * tested: the server answers exactly as for the normalised path, a dot
   * segment is never taken as the user id, and where the raw id does reach a
   * handler it is refused as invalid.
   */
  const dotCases = USER_PATHS.flatMap(([method, path]) =>
    [".", "%2E", "..", "%2E%2E", ".%2E", "%2e."].map((seg) => ({ method, path: path(seg), normalized: new URL(path(seg), "http://x").pathname })),
  );
  it.each(dotCases)("$method $path (a dot segment) is answered as the normalised $normalized, never as user . or ..", async ({ method, path, normalized }) => {
    const f = await start();
    const reply = await send(f, method, path);
    const reference = await send(f, method, normalized);
    expect(reply.status).toBe(reference.status);
    if (reply.status === 200) {
      expect(reply.body.userId).toBe(reference.body.userId);
      expect([".", ".."]).not.toContain(reply.body.userId);
    } else {
      expect([400, 404]).toContain(reply.status);
      expectError(reply, reply.status, reply.status === 400 ? "invalid_user_id" : "not_found");
      expect(reply.body.error.code).toBe(reference.body.error.code);
    }
  });

  it.each(USER_PATHS.map(([method, path]) => ({ method, path: path("..") })))(
    "$method $path (a literal double dot) → 404 not_found: normalisation removed the id and the segment before it",
    async ({ method, path }) => {
      const f = await start();
      expectError(await send(f, method, path), 404, "not_found");
    },
  );

  it("GET /v1/users/. (a trailing single dot) → 400 invalid_user_id: it normalises to an empty id", async () => {
    const f = await start();
    expectError(await send(f, "GET", "/v1/users/."), 400, "invalid_user_id");
    expectError(await send(f, "GET", "/v1/users/%2E"), 400, "invalid_user_id");
  });

  it.each([
    ["the longest id (128 characters)", "a".repeat(128)],
    ["every allowed punctuation character", "a.b_c:d@e-f"],
    ["a Google account id", "105945141827451681156"],
    ["three dots (not a path segment)", "..."],
  ])("a valid id is accepted: %s", async (_label, id) => {
    const f = await start();
    expect(expectOk(await send(f, "GET", `/v1/users/${id}`), UserState).userId).toBe(id);
    expect(expectOk(await send(f, "GET", `/v1/users/${id}/admission`), Admission).userId).toBe(id);
  });

  it.each(["nuke", "PROBE", "legacy", "Force", "probe.json", "%70robe-x"])("unknown rung %s → 404 not_found", async (rung) => {
    const f = await start();
    expectError(await postRung(f, FULL, rung), 404, "not_found");
  });

  it.each([
    ["GET", "/"],
    ["GET", "/v1"],
    ["GET", "/v1/"],
    ["GET", "/v1/nope"],
    ["GET", "/v2/users"],
    ["GET", "/V1/users"],
    ["GET", "/v1/Users"],
    ["GET", `/v1/users/${FULL}/extra`],
    ["GET", `/v1/users/${FULL}/rungs`],
    ["POST", `/v1/users/${FULL}/rungs/probe/again`],
    ["POST", `/v1/users/${FULL}/admission/x`],
    ["GET", "/healthz/deep"],
    ["GET", "/metrics/x"],
  ])("unknown route %s %s → 404 not_found", async (method, path) => {
    const f = await start();
    expectError(await send(f, method, path), 404, "not_found");
  });

  it.each([
    ["DELETE", "/v1/users/x", "GET"],
    ["PUT", "/v1/users/x", "GET"],
    ["POST", "/v1/users/x", "GET"],
    ["PATCH", "/v1/users", "GET"],
    ["POST", "/v1/users", "GET"],
    ["POST", "/v1/users/x/admission", "GET"],
    ["GET", "/v1/users/x/rungs/probe", "POST"],
    ["DELETE", "/v1/users/x/rungs/force", "POST"],
    ["PUT", "/v1/users/x/rungs/degrade", "POST"],
  ])("%s %s → 405 method_not_allowed with Allow: %s", async (method, path, allow) => {
    const f = await start();
    const reply = await send(f, method, path);
    expectError(reply, 405, "method_not_allowed");
    expect(
      String(reply.headers.allow)
        .split(",")
        .map((m) => m.trim()),
    ).toContain(allow);
  });

  it.each(["{", '{"max":', "not json", "{'max':1}", '{"max":1,}', "\u0000"])("invalid JSON body %j → 400 invalid_json", async (body) => {
    const f = await start();
    const reply = await send(f, "POST", `/v1/users/${FULL}/rungs/force`, { body, headers: { "Content-Type": "application/json" } });
    expectError(reply, 400, "invalid_json");
  });

  it.each([
    ["text/plain", { "Content-Type": "text/plain" }],
    ["application/x-www-form-urlencoded", { "Content-Type": "application/x-www-form-urlencoded" }],
    ["application/jsonx", { "Content-Type": "application/jsonx" }],
    ["no Content-Type at all", {}],
  ])("a JSON body sent as %s → 415 unsupported_media_type", async (_label, headers: Record<string, string>) => {
    const f = await start();
    const reply = await send(f, "POST", `/v1/users/${FULL}/rungs/probe`, { body: '{"timeoutMs":200}', headers });
    expectError(reply, 415, "unsupported_media_type");
  });

  it.each(RUNGS)("%s: an unknown parameter ({\"foo\":1}) → 400 invalid_params with an issues array", async (rung) => {
    const f = await start();
    const reply = await postRung(f, FULL, rung, { foo: 1 });
    expectError(reply, 400, "invalid_params");
    expect(Array.isArray(reply.body.error.issues)).toBe(true);
    expect(reply.body.error.issues.length).toBeGreaterThan(0);
    for (const issue of reply.body.error.issues) expect(typeof issue).toBe("string");
  });

  const wrongTypes: [FactoryRung, unknown][] = [
    ["force", { max: "3" }],
    ["force", { max: 0 }],
    ["force", { max: -1 }],
    ["force", { max: 1.5 }],
    ["force", { max: null }],
    ["force", { freeSlots: 0 }],
    ["force", { max: 1001 }],
    ["probe", { timeoutMs: "200" }],
    ["probe", { timeoutMs: 0 }],
    ["probe", { timeoutMs: 60_001 }],
    ["probe", { bufferThresholdBytes: 0 }],
    ["conservative", { idleMs: 999 }],
    ["conservative", { connectionlessMs: -1 }],
    ["degrade", { limit: "25" }],
    ["degrade", { limit: 0 }],
    ["degrade", { ttlMs: 0 }],
    ["degrade", { limit: 25.5 }],
    ["force", []],
    ["force", 42],
    ["force", "max"],
    ["force", true],
  ];
  it.each(wrongTypes)("%s with %j → 400 invalid_params with issues", async (rung, body) => {
    const f = await start();
    const reply = await postRung(f, FULL, rung, body);
    expectError(reply, 400, "invalid_params");
    expect(Array.isArray(reply.body.error.issues) && reply.body.error.issues.length > 0).toBe(true);
  });

  it("rejected requests have no effect: force at 20/20 with bad bodies evicts nobody and counts no cleanup run", async () => {
    const f = await start();
    const clients = await openMany(f, FULL, LIMIT);
    const json = { "Content-Type": "application/json" };
    const path = `/v1/users/${FULL}/rungs/force`;
    for (const options of [
      { body: '{"max":', headers: json },
      { body: '{"max":1}', headers: { "Content-Type": "text/plain" } },
      { body: '{"max":1,"foo":1}', headers: json },
      { body: '{"max":"1"}', headers: json },
      { body: '{"max":0}', headers: json },
      { body: JSON.stringify({ max: 1, pad: "x".repeat(CONTROL_MAX_BODY_BYTES) }), headers: json },
    ]) {
      expect((await send(f, "POST", path, options)).status).toBeGreaterThanOrEqual(400);
    }
    expect(f.registry.active(FULL)).toBe(LIMIT);
    expect(clients.every(isOpen)).toBe(true);
    expect(f.events(FactoryEvent.cleanup, FULL)).toHaveLength(0);
    const metrics = (await send(f, "GET", "/metrics", { auth: null })).text;
    expect(sample(metrics, 'reclaim_factory_cleanup_runs_total{rung="force",trigger="control"}') ?? 0).toBe(0);
  });

  describe("body size", () => {
    const over = JSON.stringify({ timeoutMs: 200, pad: "x".repeat(CONTROL_MAX_BODY_BYTES) });

    it("a body over 64 KiB with Content-Length → 413 payload_too_large", async () => {
      const f = await start();
      const reply = await send(f, "POST", `/v1/users/${FULL}/rungs/probe`, { body: over, headers: { "Content-Type": "application/json" } });
      expectError(reply, 413, "payload_too_large");
    });

    it("a body over 64 KiB sent chunked (no Content-Length) → 413 payload_too_large", async () => {
      const f = await start();
      const reply = await send(f, "POST", `/v1/users/${FULL}/rungs/probe`, {
        body: over,
        chunked: true,
        headers: { "Content-Type": "application/json" },
      });
      expectError(reply, 413, "payload_too_large");
    });

    it("a body of exactly 64 KiB is read (the limit is inclusive), and one byte more is refused", async () => {
      const f = await start();
      const core = '{"timeoutMs":200}';
      const exact = core + " ".repeat(CONTROL_MAX_BODY_BYTES - core.length); // valid JSON: trailing whitespace
      expect(Buffer.byteLength(exact)).toBe(CONTROL_MAX_BODY_BYTES);
      const headers = { "Content-Type": "application/json" };
      expectOk(await send(f, "POST", `/v1/users/${FULL}/rungs/probe`, { body: exact, headers }), RungResult);
      expectError(await send(f, "POST", `/v1/users/${FULL}/rungs/probe`, { body: `${exact} `, headers }), 413, "payload_too_large");
      // The same without a declared length: the limit is enforced on the bytes actually read.
      expectOk(await send(f, "POST", `/v1/users/${FULL}/rungs/probe`, { body: exact, headers, chunked: true }), RungResult);
      const chunkedOver = await send(f, "POST", `/v1/users/${FULL}/rungs/probe`, { body: `${exact} `, headers, chunked: true });
      expectError(chunkedOver, 413, "payload_too_large");
    });

    it("the API keeps answering after refusing a large body", async () => {
      const f = await start();
      await send(f, "POST", `/v1/users/${FULL}/rungs/probe`, { body: over, headers: { "Content-Type": "application/json" } });
      expectOk(await send(f, "GET", `/v1/users/${FULL}`), UserState);
      const viaHelper = await f.control("GET", `/v1/users/${FULL}`);
      expect(viaHelper.status).toBe(200);
    });
  });
});

// ---------------------------------------------------------------------------
// /metrics, /healthz, /readyz
// ---------------------------------------------------------------------------

describe("/metrics", () => {
  it("is Prometheus text with the factory's series, counts a control probe, and never names a user", async () => {
    const f = await start();
    await openMany(f, FULL, 2);
    const zombies = await openMany(f, FULL, 3, "no-pong");
    await f.open(LIGHT);
    const zombieIds = await managerIdsOf(zombies);

    // Touch every user route for both users, including errors, so any leak through a label would show.
    for (const user of [FULL, LIGHT]) {
      await send(f, "GET", `/v1/users/${user}`);
      await send(f, "GET", `/v1/users/${user}/admission`);
      await send(f, "GET", `/v1/users/${user}/nope`);
      await send(f, "DELETE", `/v1/users/${user}`);
      await send(f, "GET", `/v1/users/${user}`, { auth: null });
    }
    await send(f, "GET", "/v1/users?atLimit=true");
    expectOk(await postRung(f, FULL, "probe", { timeoutMs: 200 }), RungResult);

    const reply = await send(f, "GET", "/metrics", { auth: null });
    expect(reply.status).toBe(200);
    expect(reply.headers["content-type"]).toMatch(/^text\/plain/);
    const text = reply.text;

    expect(text).toMatch(/^# HELP reclaim_factory_managers /m);
    expect(text).toMatch(/^# TYPE reclaim_factory_managers gauge$/m);
    expect(sample(text, "reclaim_factory_managers")).toBe(3); // 2 live of FULL + 1 of LIGHT
    expect(text).toMatch(/^# TYPE reclaim_factory_admissions_total counter$/m);
    expect(sample(text, 'reclaim_factory_admissions_total{outcome="admitted"}')).toBe(6);
    expect(sample(text, 'reclaim_factory_cleanup_runs_total{rung="probe",trigger="control"}')).toBe(1);
    expect(text).toMatch(/^# TYPE reclaim_factory_managers_removed_total counter$/m);
    expect(sample(text, 'reclaim_factory_managers_removed_total{rung="probe",reason="no_pong"}')).toBe(3);
    expect(sample(text, 'reclaim_factory_zombies_detected_total{kind="no_pong"}')).toBe(3);

    for (const secret of [FULL, LIGHT, ...zombieIds, TEST_CONTROL_TOKEN]) expect(text).not.toContain(secret);
  });

  it("a user id in an unknown or refused path does not leak into the metrics either", async () => {
    const f = await start();
    const canary = "canary-user-4d2b7e";
    await send(f, "GET", `/v1/users/${canary}/nope`);
    await send(f, "GET", `/v1/${canary}`);
    await send(f, "POST", `/v1/users/${canary}/rungs/${canary}`);
    await send(f, "GET", `/v1/users/${canary}`, { auth: "Bearer wrong-token-0123456789" });
    await send(f, "GET", `/v1/users/${canary}`);
    const text = (await send(f, "GET", "/metrics", { auth: null })).text;
    expect(text).not.toContain(canary);
  });
});

describe("/healthz and /readyz", () => {
  it("/readyz → 200 {status: ready} while running", async () => {
    const f = await start();
    const reply = await send(f, "GET", "/readyz", { auth: null });
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ status: "ready" });
  });

  it("/healthz → 200 {status: ok}", async () => {
    const f = await start();
    const reply = await send(f, "GET", "/healthz", { auth: null });
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ status: "ok" });
  });
});
