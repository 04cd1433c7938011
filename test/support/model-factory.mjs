// A factory's control API over real HTTP on 127.0.0.1, answering as the
// factory does (the contract's schemas: src/contract/control.ts), with users
// whose managers are counted, not connected. For simulations that need
// thousands of lockouts in seconds and a clock moved by hand: the
// model-based test of the operator's lifecycle and the soak benchmark. The
// real factory, with real WebSocket clients, is tested on its own.
//
// A user's managers are either live (answer pings, in use) or zombies (never
// answer). `probe` removes the zombies; `force` removes the oldest managers
// until `freeSlots` are free, at most `max`; `degrade` raises the limit;
// `conservative` removes nothing (every manager looks active, as in the
// outage). Idempotency keys are honoured as the factory honours them (ADR 13):
// a key seen before answers the first run's result. Every rung call is
// recorded with the caller (by its bearer token) and the model's time.
//
// Faults, for the next calls that match: `hang` (never answers), `500`, or
// `reset` (the connection is destroyed); `heal()` answers normally again.
import { createServer } from "node:http";

const REFUSAL_RETENTION_MS = 3_600_000;

/**
 * @param {{ tokens: Record<string, string>, now: () => number, limit?: number }} options
 *   tokens: bearer token → caller name; now: the model's clock (ms); limit: per user (default 20)
 */
export async function startModelFactory(options) {
  const limitDefault = options.limit ?? 20;
  const now = options.now;
  /** @type {Map<string, { managers: { id: string, zombie: boolean, createdAt: number, lastMessageAt: number | null }[], limit: number, degradedUntil: number | null, atLimitSince: number | null, lastRefusedAt: number | null, refusals: number }>} */
  const users = new Map();
  const calls = [];
  const idempotent = new Map();
  const held = new Set();
  let fault = null;
  let nextId = 1;
  let active = 0;

  const userOf = (userId) => {
    let u = users.get(userId);
    if (u === undefined) {
      u = { managers: [], limit: limitDefault, degradedUntil: null, atLimitSince: null, lastRefusedAt: null, refusals: 0 };
      users.set(userId, u);
    }
    return u;
  };
  const effectiveLimit = (u) => (u.degradedUntil !== null && u.degradedUntil > now() ? u.limit : limitDefault);
  const iso = (ms) => (ms === null ? null : new Date(ms).toISOString());
  const touch = (u) => {
    const full = u.managers.length >= effectiveLimit(u);
    if (full && u.atLimitSince === null) u.atLimitSince = now();
    if (!full) u.atLimitSince = null;
  };
  const pressure = (u) => ({ atLimitSince: iso(u.atLimitSince), lastRefusedAt: iso(u.lastRefusedAt), refusals: u.refusals });
  const admission = (userId, u) => ({ userId, admit: u.managers.length < effectiveLimit(u), active: u.managers.length, effectiveLimit: effectiveLimit(u), queued: 0, ...pressure(u) });

  const model = {
    /** Rung calls received, in order: { caller, userId, rung, params, key, at, replayed }. */
    calls,
    users,
    /** Opens `live` live managers and `zombies` zombie managers for the user (no admission check: they were admitted earlier). */
    connect(userId, live, zombies = 0) {
      const u = userOf(userId);
      for (let i = 0; i < zombies; i++) u.managers.push({ id: `m${nextId++}`, zombie: true, createdAt: now(), lastMessageAt: null });
      for (let i = 0; i < live; i++) u.managers.push({ id: `m${nextId++}`, zombie: false, createdAt: now(), lastMessageAt: now() });
      touch(u);
    },
    /** One more connection: admitted if a slot is free (true), else refused and the refusal recorded (false). */
    attempt(userId, zombie = false) {
      const u = userOf(userId);
      if (u.managers.length < effectiveLimit(u)) {
        u.managers.push({ id: `m${nextId++}`, zombie, createdAt: now(), lastMessageAt: zombie ? null : now() });
        touch(u);
        return true;
      }
      u.lastRefusedAt = now();
      u.refusals++;
      return false;
    },
    /** The user closes `n` of their live tabs (the newest first). */
    leave(userId, n) {
      const u = userOf(userId);
      for (let i = 0; i < n; i++) {
        const at = u.managers.findLastIndex((m) => !m.zombie);
        if (at < 0) break;
        u.managers.splice(at, 1);
      }
      touch(u);
    },
    /** Would a connection of the user be admitted now? */
    admits(userId) {
      const u = users.get(userId);
      return u === undefined || u.managers.length < effectiveLimit(u);
    },
    /** The next `times` calls whose path matches get `kind` (`hang`, `500`, `reset`); `times` default: all until heal(). */
    fault(kind, match = () => true, times = Infinity) {
      fault = { kind, match, left: times };
    },
    heal() {
      fault = null;
      for (const res of held) res.destroy();
      held.clear();
    },
    /** Requests being handled now that no fault holds (a simulation waits until this is 0). */
    busy() {
      return active;
    },
    /** Forgets every user, call and idempotency key (a fresh factory on the same port). */
    reset() {
      users.clear();
      calls.length = 0;
      idempotent.clear();
      model.heal();
    },
  };

  const answer = (res, status, body) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
    res.end(text);
  };
  const error = (res, status, code, message) => answer(res, status, { error: { code, message } });

  const server = createServer((req, res) => {
    const chunks = [];
    active++;
    let counted = true;
    const done = () => {
      if (counted) active--;
      counted = false;
    };
    res.on("finish", done);
    res.on("close", done);
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://model");
      const caller = options.tokens[(req.headers.authorization ?? "").replace(/^Bearer /, "")];
      if (caller === undefined) return error(res, 401, "unauthorized", "a valid bearer token is required");
      if (fault !== null && fault.match(req.method ?? "GET", url.pathname)) {
        const { kind } = fault;
        if (--fault.left <= 0) fault = null;
        if (kind === "hang") {
          done(); // held on purpose: not busy
          held.add(res);
          res.on("close", () => held.delete(res));
          return;
        }
        if (kind === "reset") return req.socket.destroy();
        return error(res, 500, "internal", "injected 500");
      }
      if (req.method === "GET" && url.pathname === "/v1/users") {
        const atLimit = url.searchParams.get("atLimit") === "true";
        const list = [...users.entries()]
          .filter(([, u]) => !atLimit || u.managers.length >= effectiveLimit(u))
          .map(([userId, u]) => ({ userId, active: u.managers.length, limit: limitDefault, effectiveLimit: effectiveLimit(u), queued: 0, ...pressure(u) }));
        return answer(res, 200, { users: list, asOf: iso(now()) });
      }
      const m = /^\/v1\/users\/([^/]+)(\/admission|\/rungs\/(conservative|probe|force|degrade))?$/.exec(url.pathname);
      if (m === null) return error(res, 404, "not_found", "not found");
      const userId = decodeURIComponent(m[1]);
      const u = userOf(userId);
      if (req.method === "GET" && m[2] === "/admission") return answer(res, 200, admission(userId, u));
      if (req.method === "GET" && m[2] === undefined) {
        return answer(res, 200, {
          userId,
          limit: limitDefault,
          effectiveLimit: effectiveLimit(u),
          degradedUntil: iso(u.degradedUntil),
          active: u.managers.length,
          queued: 0,
          ...pressure(u),
          managers: u.managers.map((x) => ({
            id: x.id,
            createdAt: iso(x.createdAt),
            lastReceivedAt: x.zombie ? null : iso(now()),
            lastMessageAt: iso(x.lastMessageAt),
            socketState: "OPEN",
            bufferedBytes: 0,
            messagesReceived: 0,
            messagesSent: 0,
            sendFailures: 0,
          })),
        });
      }
      if (req.method !== "POST" || m[3] === undefined) return error(res, 404, "not_found", "not found");
      let params;
      try {
        params = chunks.length === 0 ? {} : JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return error(res, 400, "invalid_json", "the body is not JSON");
      }
      const rung = m[3];
      const key = req.headers["idempotency-key"];
      const request = `${userId}\u0000${rung}\u0000${JSON.stringify(params)}`;
      if (typeof key === "string" && idempotent.has(key)) {
        const known = idempotent.get(key);
        calls.push({ caller, userId, rung, params, key, at: now(), replayed: true });
        if (known.request !== request) return error(res, 409, "idempotency_key_reused", "the key was used for another request");
        res.setHeader("Idempotent-Replayed", "true");
        return answer(res, 200, known.result);
      }
      calls.push({ caller, userId, rung, params, key: typeof key === "string" ? key : null, at: now(), replayed: false });
      const removed = [];
      if (rung === "probe") {
        for (const x of u.managers.filter((x) => x.zombie)) removed.push({ managerId: x.id, reason: "no_pong" });
        u.managers = u.managers.filter((x) => !x.zombie);
      } else if (rung === "force") {
        const max = params.max ?? 1;
        const freeSlots = params.freeSlots ?? 1;
        const byAge = [...u.managers].sort((a, b) => (a.lastMessageAt ?? a.createdAt) - (b.lastMessageAt ?? b.createdAt));
        while (removed.length < max && effectiveLimit(u) - u.managers.length < freeSlots && byAge.length > 0) {
          const x = byAge.shift();
          u.managers = u.managers.filter((y) => y !== x);
          removed.push({ managerId: x.id, reason: "evicted" });
        }
      } else if (rung === "degrade") {
        u.limit = params.limit ?? limitDefault + 5;
        u.degradedUntil = now() + (params.ttlMs ?? 600_000);
      }
      touch(u);
      const result = {
        rung,
        userId,
        removed,
        remaining: u.managers.length,
        limit: limitDefault,
        effectiveLimit: effectiveLimit(u),
        degradedUntil: iso(u.degradedUntil),
        admit: u.managers.length < effectiveLimit(u),
        durationMs: 0,
        managerIds: u.managers.map((x) => x.id),
      };
      if (typeof key === "string") idempotent.set(key, { request, result, at: now() });
      // Forget keys and refusals as the factory does: keys after an hour, a user who holds nothing and was not
      // refused for an hour.
      for (const [k, v] of idempotent) if (now() - v.at > 3_600_000) idempotent.delete(k);
      for (const [id, v] of users) if (v.managers.length === 0 && (v.lastRefusedAt === null || now() - v.lastRefusedAt > REFUSAL_RETENTION_MS)) users.delete(id);
      return answer(res, 200, result);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    ...model,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        model.heal();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
