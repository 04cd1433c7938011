/**
 * The conformance checker of the control API: it holds any implementation —
 * Reclaim's factory or a backend in another language — to the contract of
 * src/contract/control.ts and docs/control-api.openapi.json, over real HTTP
 * (and, with a WebSocket URL, real connections).
 *
 * Each check is named (`auth.missing-token GET /v1/users`, `rung.probe`…)
 * and ends ok or failed with a reason; a check never stops the others. Every
 * request has a deadline (`requestTimeoutMs`), and so does every wait for a
 * connection or for state to settle (`settleTimeoutMs`).
 *
 * What it leaves behind on the server: users with ids under `userPrefix`,
 * their connections closed; a `degrade` raise of `DEGRADE_TTL_MS` for one of
 * them (rungs are the only actions the API has). Point it at a test or staging
 * instance, not at production.
 */
import { randomBytes } from "node:crypto";
import { WebSocket } from "ws";
import type { z } from "zod";
import { Admission, ControlError, RungResult, UserList, UserState } from "../contract/control.js";
import { FactoryRung } from "../contract/events.js";
import { ERROR_CODES_BY_STATUS, IDEMPOTENCY_KEY_HEADER, type ErrorStatus } from "./openapi.js";
import { RequestFailed, send, type Answer, type Ask } from "./http.js";

/** How long a `degrade` raise made by the checker lasts (1 min): short, since it is a test user's. */
export const DEGRADE_TTL_MS = 60_000;

/** The outcome of one check. */
export interface CheckResult {
  name: string;
  ok: boolean;
  /** Why it failed (empty when ok). */
  detail: string;
}

/** What the checker needs to know. */
export interface ConformanceOptions {
  /** Base URL of the control API, e.g. `http://127.0.0.1:9091`. */
  url: string;
  /** The control token. */
  token: string;
  /** WebSocket URL of the chat endpoint: enables the rung-effect checks. */
  wsUrl?: string;
  /** A client token for a user id (sent as `Authorization: Bearer`); needed with `wsUrl`. */
  clientToken?: (userId: string) => Promise<string>;
  /** Deadline of each HTTP request and WebSocket handshake (default 5000 ms). */
  requestTimeoutMs?: number;
  /** Deadline of each wait for the server's state to settle (default 10 000 ms). */
  settleTimeoutMs?: number;
  /** Prefix of the user ids the checker makes up (default `conformance-<random>`). */
  userPrefix?: string;
}

/** The failure of a check: the message is its detail. */
class CheckFailed extends Error {
  readonly code = "ERR_RECLAIM_CONFORMANCE_CHECK";
}

const fail = (message: string): never => {
  throw new CheckFailed(message);
};

/**
 * Runs every check against the implementation at `options.url`; resolves with
 * one result per check, in order. Throws `TypeError` (before sending
 * anything) for a URL that is not http(s) or a `wsUrl` without `clientToken`.
 */
export async function runConformance(options: ConformanceOptions): Promise<CheckResult[]> {
  const base = new URL(options.url);
  if (base.protocol !== "http:" && base.protocol !== "https:") throw new TypeError(`--url must be http:// or https://, got ${options.url}`);
  if (options.wsUrl !== undefined && options.clientToken === undefined) throw new TypeError("checking rung effects (wsUrl) needs clientToken");
  const timeoutMs = options.requestTimeoutMs ?? 5000;
  const settleMs = options.settleTimeoutMs ?? 10_000;
  const prefix = options.userPrefix ?? `conformance-${randomBytes(4).toString("hex")}`;
  const results: CheckResult[] = [];
  const check = async (name: string, body: () => Promise<void>): Promise<void> => {
    try {
      await body();
      results.push({ name, ok: true, detail: "" });
    } catch (err) {
      const detail = err instanceof CheckFailed || err instanceof RequestFailed ? err.message : `unexpected: ${err instanceof Error ? err.message : String(err)}`;
      results.push({ name, ok: false, detail });
    }
  };
  const ask = (a: Ask, token: string | null = options.token): Promise<Answer> =>
    send(base, { ...a, headers: { ...(token === null ? {} : { Authorization: `Bearer ${token}` }), ...a.headers } }, timeoutMs);
  const user = (suffix: string): string => `${prefix}-${suffix}`;
  const rungPath = (userId: string, rung: string): string => `/v1/users/${encodeURIComponent(userId)}/rungs/${rung}`;
  const postJson = (path: string, body: unknown, headers: Record<string, string> = {}): Ask => ({
    method: "POST",
    path,
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

  const idle = user("idle");
  const routes: Ask[] = [
    { method: "GET", path: "/v1/users" },
    { method: "GET", path: `/v1/users/${idle}` },
    { method: "GET", path: `/v1/users/${idle}/admission` },
    ...FactoryRung.options.map((rung) => postJson(rungPath(idle, rung), {})),
  ];

  // Authentication: every /v1/ route refuses a missing, a wrong and a non-bearer token, with the JSON error.
  for (const route of routes) {
    const label = `${route.method} ${route.path.replace(idle, "{userId}")}`;
    await check(`auth.missing-token ${label}`, async () => expectError(await ask(route, null), 401, "unauthorized"));
    await check(`auth.wrong-token ${label}`, async () => expectError(await ask(route, `${options.token}x`), 401, "unauthorized"));
    await check(`auth.basic-scheme ${label}`, async () =>
      expectError(await ask({ ...route, headers: { ...route.headers, Authorization: `Basic ${Buffer.from(`x:${options.token}`).toString("base64")}` } }, null), 401, "unauthorized"),
    );
  }

  // The read routes answer their schemas.
  await check("read.users", async () => void expectBody(await ask({ method: "GET", path: "/v1/users" }), 200, UserList));
  await check("read.users-at-limit", async () => {
    const list = expectBody(await ask({ method: "GET", path: "/v1/users?atLimit=true" }), 200, UserList);
    const under = list.users.find((u) => u.active < u.effectiveLimit);
    if (under !== undefined) fail(`?atLimit=true listed ${under.userId} with ${under.active}/${under.effectiveLimit}`);
  });
  await check("read.user", async () => {
    const state = expectBody(await ask({ method: "GET", path: `/v1/users/${idle}` }), 200, UserState);
    if (state.userId !== idle) fail(`userId is ${JSON.stringify(state.userId)}, asked for ${idle}`);
    if (state.active !== 0 || state.managers.length !== 0) fail(`a user never seen has ${state.active} active, ${state.managers.length} managers`);
  });
  await check("read.admission", async () => {
    const admission = expectBody(await ask({ method: "GET", path: `/v1/users/${idle}/admission` }), 200, Admission);
    if (admission.userId !== idle) fail(`userId is ${JSON.stringify(admission.userId)}, asked for ${idle}`);
    if (!admission.admit) fail("a user holding no connection would not be admitted");
  });

  // Validation: malformed input is a 4xx JSON error with the right code, and changes nothing.
  await check("validation.at-limit-query", async () => expectError(await ask({ method: "GET", path: "/v1/users?atLimit=maybe" }), 400, "invalid_params"));
  // Not `%2E%2E`: a server may resolve dot segments (RFC 3986 §6.2.2.2) before routing, and then it is not a user id at all.
  const badIds = { "space": "a%20b", "too-long": "u".repeat(129), "punctuation": "a!b", "bad-percent-encoding": "%E0%A4%A" };
  for (const [what, id] of Object.entries(badIds)) {
    await check(`validation.user-id.${what} GET`, async () => expectError(await ask({ method: "GET", path: `/v1/users/${id}` }), 400, id.startsWith("%E0") ? ["invalid_user_id", "bad_request"] : "invalid_user_id"));
  }
  await check("validation.user-id POST rung", async () => expectError(await ask(postJson(`/v1/users/a%20b/rungs/probe`, {})), 400, "invalid_user_id"));
  await check("validation.unknown-rung", async () => expectError(await ask(postJson(rungPath(idle, "reboot"), {})), 404, "not_found"));
  await check("validation.unknown-route", async () => expectError(await ask({ method: "GET", path: "/v1/nothing-here" }), 404, "not_found"));
  await check("validation.method", async () => {
    const answer = await ask({ method: "DELETE", path: "/v1/users" });
    expectError(answer, 405, "method_not_allowed");
    if (!/\bGET\b/.test(String(answer.headers.allow ?? ""))) fail(`405 without an Allow header naming GET (got ${JSON.stringify(answer.headers.allow)})`);
  });
  const badParams: Record<string, unknown> = {
    "probe-negative-timeout": ["probe", { timeoutMs: -1 }],
    "probe-unknown-key": ["probe", { bogus: 1 }],
    "force-max-zero": ["force", { max: 0 }],
    "force-max-string": ["force", { max: "2" }],
    "conservative-idle-too-short": ["conservative", { idleMs: 1 }],
    "degrade-not-an-object": ["degrade", [1, 2]],
  };
  for (const [what, [rung, body]] of Object.entries(badParams) as [string, [string, unknown]][]) {
    await check(`validation.params.${what}`, async () => expectError(await ask(postJson(rungPath(idle, rung), body)), 400, "invalid_params"));
  }
  await check("validation.invalid-json", async () =>
    expectError(await ask({ method: "POST", path: rungPath(idle, "probe"), headers: { "Content-Type": "application/json" }, body: "{" }), 400, "invalid_json"),
  );
  await check("validation.media-type", async () =>
    expectError(await ask({ method: "POST", path: rungPath(idle, "probe"), headers: { "Content-Type": "text/plain" }, body: "{}" }), 415, "unsupported_media_type"),
  );
  await check("validation.idempotency-key", async () =>
    expectError(await ask(postJson(rungPath(idle, "conservative"), {}, { [IDEMPOTENCY_KEY_HEADER]: "has space" })), 400, "invalid_params"),
  );
  await check("rung.degrade-without-connections", async () => {
    expectError(await ask(postJson(rungPath(idle, "degrade"), { ttlMs: DEGRADE_TTL_MS })), 409, "no_connections");
    const state = expectBody(await ask({ method: "GET", path: `/v1/users/${idle}` }), 200, UserState);
    if (state.degradedUntil !== null || state.effectiveLimit !== state.limit) fail("a refused degrade still raised the limit");
  });

  // Idempotency keys over HTTP alone: the same key and request gets the same answer; another request under it is refused.
  await check("idempotency.same-answer", async () => {
    const key = `${prefix}:same-answer`;
    const first = expectBody(await ask(postJson(rungPath(idle, "conservative"), {}, { [IDEMPOTENCY_KEY_HEADER]: key })), 200, RungResult);
    const again = await ask(postJson(rungPath(idle, "conservative"), {}, { [IDEMPOTENCY_KEY_HEADER]: key }));
    const second = expectBody(again, 200, RungResult);
    if (JSON.stringify(first) !== JSON.stringify(second)) fail(`the repeat answered ${JSON.stringify(second)}, the first call ${JSON.stringify(first)}`);
    if (again.headers["idempotent-replayed"] !== "true") fail("the repeat is not marked Idempotent-Replayed: true");
  });
  await check("idempotency.key-reused-for-another-request", async () => {
    const key = `${prefix}:reused`;
    expectBody(await ask(postJson(rungPath(idle, "conservative"), {}, { [IDEMPOTENCY_KEY_HEADER]: key })), 200, RungResult);
    expectError(await ask(postJson(rungPath(idle, "probe"), {}, { [IDEMPOTENCY_KEY_HEADER]: key })), 400, "invalid_params");
  });

  if (options.wsUrl !== undefined) {
    const ws = new Connections(options.wsUrl, options.clientToken!, timeoutMs);
    const state = async (userId: string): Promise<UserState> => expectBody(await ask({ method: "GET", path: `/v1/users/${encodeURIComponent(userId)}` }), 200, UserState);
    /** Waits until the server shows `count` managers for the user and returns their ids (fails at the deadline). */
    const managers = async (userId: string, count: number): Promise<string[]> => {
      const deadline = Date.now() + settleMs;
      for (;;) {
        const s = await state(userId);
        if (s.active === count && s.managers.length === count) return s.managers.map((m) => m.id);
        if (Date.now() > deadline) fail(`${userId}: the server shows ${s.active} managers, expected ${count} within ${settleMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const only = (ids: string[], before: string[]): string => {
      const fresh = ids.filter((id) => !before.includes(id));
      return fresh.length === 1 ? fresh[0]! : fail(`expected one new manager, found ${fresh.length}`);
    };
    try {
      await check("rung.conservative-keeps-live", async () => {
        const u = user("conservative");
        await ws.open(u, "live");
        const [id] = await managers(u, 1);
        const result = expectBody(await ask(postJson(rungPath(u, "conservative"), {})), 200, RungResult);
        if (result.removed.length !== 0) fail(`removed a live, fresh connection: ${JSON.stringify(result.removed)}`);
        if ((await managers(u, 1))[0] !== id) fail("the live manager is gone");
      });
      await check("rung.probe-evicts-zombie-keeps-live", async () => {
        const u = user("probe");
        const live = await ws.open(u, "live");
        const [liveId] = await managers(u, 1);
        const zombie = await ws.open(u, "no-pong");
        const zombieId = only(await managers(u, 2), [liveId!]);
        const result = expectBody(await ask(postJson(rungPath(u, "probe"), { timeoutMs: 1000 })), 200, RungResult);
        const removed = result.removed.map((r) => r.managerId);
        if (!removed.includes(zombieId)) fail(`the zombie ${zombieId} (never answers pings) was not removed: ${JSON.stringify(result.removed)}`);
        if (removed.includes(liveId!)) fail(`the live connection ${liveId} was removed`);
        const left = await managers(u, 1);
        if (left[0] !== liveId) fail(`after the probe the user holds ${JSON.stringify(left)}, expected the live ${liveId}`);
        await ws.closedWithin(zombie, settleMs, "the zombie's connection");
        if (live.readyState !== WebSocket.OPEN) fail("the live connection was closed");
      });
      await check("rung.force-evicts-least-recent-and-idempotency-runs-once", async () => {
        const u = user("force");
        const oldest = await ws.open(u, "live");
        const [oldestId] = await managers(u, 1);
        await ws.open(u, "live");
        await managers(u, 2);
        const limit = (await state(u)).effectiveLimit;
        // Free every slot but one: exactly one of the two managers must go, the least recently used.
        const body = { max: 1, freeSlots: limit - 1 };
        const key = `${prefix}:force`;
        const first = expectBody(await ask(postJson(rungPath(u, "force"), body, { [IDEMPOTENCY_KEY_HEADER]: key })), 200, RungResult);
        if (first.removed.length !== 1 || first.removed[0]!.managerId !== oldestId) fail(`expected the oldest ${oldestId} evicted, got ${JSON.stringify(first.removed)}`);
        const code = await ws.closedWithin(oldest, settleMs, "the evicted connection");
        if (code !== 1013) fail(`the evicted connection closed with ${code}, expected 1013`);
        const kept = await managers(u, 1);
        await ws.open(u, "live");
        only(await managers(u, 2), kept);
        // The same key again: the first answer, and the rung does not run again (it would evict the new connection's neighbour).
        const again = expectBody(await ask(postJson(rungPath(u, "force"), body, { [IDEMPOTENCY_KEY_HEADER]: key })), 200, RungResult);
        if (JSON.stringify(again) !== JSON.stringify(first)) fail(`the repeat answered ${JSON.stringify(again)}, the first call ${JSON.stringify(first)}`);
        const after = await state(u);
        if (after.active !== 2) fail(`the repeat ran the rung again: ${after.active} managers left, expected 2`);
      });
      await check("rung.degrade-raises-limit", async () => {
        const u = user("degrade");
        await ws.open(u, "live");
        await managers(u, 1);
        const before = await state(u);
        const result = expectBody(await ask(postJson(rungPath(u, "degrade"), { limit: before.limit + 2, ttlMs: DEGRADE_TTL_MS })), 200, RungResult);
        if (result.effectiveLimit !== before.limit + 2 || result.degradedUntil === null) fail(`degrade answered effectiveLimit ${result.effectiveLimit}, degradedUntil ${result.degradedUntil}`);
        const after = await state(u);
        if (after.effectiveLimit !== before.limit + 2) fail(`after degrade the user's effective limit is ${after.effectiveLimit}, expected ${before.limit + 2}`);
        if (after.active !== 1) fail(`degrade changed the user's managers: ${after.active} left`);
      });
    } finally {
      ws.closeAll();
    }
  }
  return results;
}

/** Fails unless `answer` is `status` with a JSON body of `schema`; returns the parsed body. */
function expectBody<T extends z.ZodType>(answer: Answer, status: number, schema: T): z.infer<T> {
  if (answer.status !== status) fail(`expected ${status}, got ${answer.status}: ${answer.text.slice(0, 200)}`);
  expectJsonType(answer);
  const parsed = schema.safeParse(answer.json);
  if (!parsed.success) fail(`the body does not match the schema: ${parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ")}`);
  return parsed.data as z.infer<T>;
}

/** Fails unless `answer` is the JSON error `{"error":{"code","message"}}` with `status` and (one of) `code`. */
function expectError(answer: Answer, status: ErrorStatus, code: string | string[]): void {
  if (answer.status !== status) fail(`expected ${status}, got ${answer.status}: ${answer.text.slice(0, 200)}`);
  expectJsonType(answer);
  const parsed = ControlError.safeParse(answer.json);
  if (!parsed.success) fail(`the error body is not {"error":{"code","message"}}: ${answer.text.slice(0, 200)}`);
  const got = parsed.data!.error.code;
  const codes = Array.isArray(code) ? code : [code];
  if (!codes.includes(got)) fail(`expected code ${codes.join(" or ")}, got ${got}`);
  if (!(ERROR_CODES_BY_STATUS[status] as readonly string[]).includes(got)) fail(`code ${got} is not one of status ${status}`);
  if (status === 401 && !/^Bearer\b/i.test(String(answer.headers["www-authenticate"] ?? ""))) fail("401 without WWW-Authenticate: Bearer");
}

function expectJsonType(answer: Answer): void {
  const type = String(answer.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") fail(`Content-Type is ${JSON.stringify(answer.headers["content-type"] ?? null)}, not application/json: ${answer.text.slice(0, 200)}`);
  if (answer.json === undefined) fail(`the body is not JSON: ${answer.text.slice(0, 200)}`);
}

/** The checker's WebSocket clients, each opened with a deadline and all closed at the end. */
class Connections {
  private readonly open_ = new Set<WebSocket>();
  /** The close code of each connection, once it closed (listened for from the start, so that none is missed). */
  private readonly closes = new WeakMap<WebSocket, Promise<number>>();

  constructor(
    private readonly url: string,
    private readonly token: (userId: string) => Promise<string>,
    private readonly timeoutMs: number,
  ) {}

  /** Opens a connection for `userId`: `live` answers pings, `no-pong` never does (a zombie). */
  async open(userId: string, kind: "live" | "no-pong"): Promise<WebSocket> {
    const token = await this.token(userId);
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, {
        headers: { Authorization: `Bearer ${token}` },
        autoPong: kind === "live",
        perMessageDeflate: false,
        handshakeTimeout: this.timeoutMs,
      });
      this.open_.add(ws);
      this.closes.set(ws, new Promise((done) => ws.once("close", (code) => done(code))));
      ws.once("unexpected-response", (_req, res) => {
        ws.terminate();
        reject(new CheckFailed(`the WebSocket upgrade for ${userId} was refused with ${res.statusCode}`));
      });
      ws.once("error", (err) => reject(new CheckFailed(`the WebSocket for ${userId} failed: ${err.message}`)));
      ws.once("open", () => {
        ws.removeAllListeners("error");
        ws.on("error", () => undefined);
        resolve(ws);
      });
    });
  }

  /** Resolves with the close code once `ws` is closed; fails after `timeoutMs`. */
  closedWithin(ws: WebSocket, timeoutMs: number, what: string): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new CheckFailed(`${what} was not closed within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([this.closes.get(ws)!, late]).finally(() => clearTimeout(timer));
  }

  closeAll(): void {
    for (const ws of this.open_) ws.terminate();
    this.open_.clear();
  }
}
