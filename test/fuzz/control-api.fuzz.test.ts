/**
 * The control API under arbitrary requests, property-based (fast-check, fixed
 * seeds), against one real factory over one keep-alive HTTP connection
 * (node:http, so that paths go on the wire verbatim: fetch would normalise
 * them first).
 *
 * Expected, whatever the method, path, token, content type or body: a 2xx or
 * a 4xx with a JSON error — never a 5xx, never a crash; a user id accepted
 * exactly when the contract's validator accepts it; a rung runs only for a
 * request that got 200 (the factory's own cleanup counter is the witness);
 * and memory stays bounded (no managers, no queue, a closed set of metric
 * series, whatever was sent).
 */
import { Agent, request, type IncomingHttpHeaders } from "node:http";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTROL_MAX_BODY_BYTES, ControlError } from "../../src/contract/control.js";
import { isUserId } from "../../src/contract/ids.js";
import { startTestFactory, TEST_CONTROL_TOKEN, type Json, type TestFactory } from "../support/factory.js";

const SEED = 20261126;
const RUNS = 10_000;
const TIMEOUT = 300_000;
/** The only user with a connection; the fuzzer never names it, so it must stay untouched. */
const KEEP = "alice";

let factory: TestFactory;
let agent: Agent;
beforeAll(async () => {
  factory = await startTestFactory({ probeTimeoutMs: 20 });
  await factory.open(KEEP);
  agent = new Agent({ keepAlive: true, maxSockets: 1 });
});
afterAll(async () => {
  agent.destroy();
  await factory.close();
});

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Json;
}

/** One request on the shared keep-alive connection; the path is sent verbatim. */
function send(method: string, path: string, headers: Record<string, string>, body?: Buffer, chunked = false): Promise<Reply> {
  const url = new URL(factory.controlUrl);
  const all = { ...headers, ...(body !== undefined && !chunked ? { "Content-Length": String(body.length) } : {}) };
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers: all, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === "" ? null : JSON.parse(text) });
      });
    });
    req.on("error", reject);
    if (body !== undefined) {
      if (chunked) for (let i = 0; i < body.length; i += 16_384) req.write(body.subarray(i, i + 16_384));
      else req.write(body);
    }
    req.end();
  });
}

/** Sum of a counter's samples in /metrics whose labels include `filter`. */
async function counter(name: string, filter = ""): Promise<number> {
  const text = await (await fetch(`${factory.controlUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(`${name}{`) && line.includes(filter)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

function expectJsonError(reply: Reply, method: string): void {
  expect(reply.status).toBeGreaterThanOrEqual(400);
  expect(reply.status).toBeLessThan(500);
  if (method === "HEAD") return; // no body on a HEAD answer
  expect(ControlError.safeParse(reply.body).success).toBe(true);
}

const BEARER = `Bearer ${TEST_CONTROL_TOKEN}`;

// Path segments: valid ids, hostile ids, every encoding trick, route words and their near misses.
const segment = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._:@-]{1,20}$/).filter((s) => s !== KEEP),
  fc.string({ maxLength: 20 }).map((s) => encodeURIComponent(s)),
  fc.constantFrom(
    "users",
    "rungs",
    "admission",
    "probe",
    "force",
    "degrade",
    "conservative",
    "PROBE",
    "v1",
    "..",
    ".",
    "%2e%2e",
    "%2E.",
    "%2F",
    "..%2F..%2Fv1%2Fusers",
    "x%2Frungs%2Fforce",
    "%00",
    "a%00b",
    "%ZZ",
    "%E0%A4%A",
    "%C0%AE%C0%AE",
    "%252e%252e",
    "%5C",
    "a;b",
    "",
    "x".repeat(129),
    "105945141827451681156",
  ),
);
const path = fc.oneof(
  fc.array(segment, { maxLength: 5 }).map((s) => `/v1/${s.join("/")}`),
  fc.tuple(segment, fc.constantFrom("", "/admission", "/rungs/probe", "/rungs/force", "/rungs/degrade", "/rungs/conservative", "/rungs/nuke")).map(
    ([id, rest]) => `/v1/users/${id}${rest}`,
  ),
  fc.constantFrom("/v1/users", "/v1/users?atLimit=true", "/v1/users?atLimit=maybe", "/v1/users?atLimit=true&atLimit=false", "/", "/v2/users", "//v1/users", "/v1//users"),
  fc.array(segment, { maxLength: 3 }).map((s) => `/v1/users/${s.join("/")}?${s.join("&")}`),
);
const auth = fc.oneof(
  { arbitrary: fc.constant<string | null>(BEARER), weight: 6 },
  {
    arbitrary: fc.constantFrom<string | null>(
      null,
      "",
      "Bearer",
      "Bearer ",
      `Bearer ${TEST_CONTROL_TOKEN.slice(0, -1)}`,
      `Bearer ${TEST_CONTROL_TOKEN}x`,
      `Basic ${TEST_CONTROL_TOKEN}`,
      TEST_CONTROL_TOKEN,
      `Bearer ${TEST_CONTROL_TOKEN} ${TEST_CONTROL_TOKEN}`,
    ),
    weight: 2,
  },
  { arbitrary: fc.string({ unit: fc.constantFrom(..."abcXYZ019-_ ."), maxLength: 40 }).map((s) => `Bearer ${s}`), weight: 1 },
);
const contentType = fc.constantFrom(undefined, "application/json", "application/json; charset=utf-8", "text/plain", "APPLICATION/JSON", "application/x-www-form-urlencoded");
const body = fc.oneof(
  { arbitrary: fc.constant(undefined), weight: 3 },
  fc.constant(Buffer.from("{}")),
  fc.json().map((j) => Buffer.from(j)),
  fc.record({ max: fc.anything(), freeSlots: fc.anything() }, { requiredKeys: [] }).map((v) => Buffer.from(JSON.stringify(v) ?? "null")),
  fc.record({ limit: fc.integer(), ttlMs: fc.integer(), queueTimeoutMs: fc.integer() }, { requiredKeys: [] }).map((v) => Buffer.from(JSON.stringify(v))),
  fc.record({ timeoutMs: fc.integer({ min: -5, max: 30 }), bufferThresholdBytes: fc.integer() }, { requiredKeys: [] }).map((v) => Buffer.from(JSON.stringify(v))),
  fc.string().map((s) => Buffer.from(s)),
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
);
const method = fc.constantFrom("GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD");

describe("the control API under arbitrary requests", () => {
  it.each(["null", "[]", "3", '"probe"'])("a rung body that is not an object (%s) is invalid_params", async (text) => {
    const reply = await send("POST", "/v1/users/bob/rungs/probe", { Authorization: BEARER, "Content-Type": "application/json" }, Buffer.from(text));
    expect(reply.status).toBe(400);
    expect((reply.body as ControlError).error.code).toBe("invalid_params");
  });

  it(
    `any method, path, token, content type and body: 2xx or a 4xx JSON error, never 5xx; rungs run only on a 200 (${RUNS} cases)`,
    async () => {
      const runsBefore = await counter("reclaim_factory_cleanup_runs_total", 'trigger="control"');
      const refusedBefore = await counter("reclaim_factory_control_requests_total", 'status="4');
      let rungsOk = 0;
      let refused = 0;
      await fc.assert(
        fc.asyncProperty(method, path, auth, contentType, body, async (m, p, a, type, b) => {
          const headers: Record<string, string> = {};
          if (a !== null) headers.Authorization = a;
          if (type !== undefined) headers["Content-Type"] = type;
          const reply = await send(m, p, headers, m === "GET" || m === "HEAD" ? undefined : b);
          if (reply.status >= 300) {
            expectJsonError(reply, m);
            refused++;
          } else {
            expect(reply.status).toBe(200);
            // Only a valid token gets a 2xx on a /v1 route.
            if (p.startsWith("/v1")) expect(a).toBe(BEARER);
            if (m === "POST") rungsOk++;
          }
          // Without the token a /v1 request learns nothing: 401, or what any path gets (404, 405, or 400 bad_request for a
          // target that does not parse, e.g. a dot segment that leaves /v1 followed by a broken % escape).
          const malformed = reply.status === 400 && (reply.body as ControlError | null)?.error.code === "bad_request";
          if (a !== BEARER && reply.status !== 404 && reply.status !== 405 && !malformed && p.startsWith("/v1")) expect(reply.status).toBe(401);
        }),
        { seed: SEED, numRuns: RUNS },
      );
      // Every rung that ran is one that answered 200: nothing refused had an effect.
      expect((await counter("reclaim_factory_cleanup_runs_total", 'trigger="control"')) - runsBefore).toBe(rungsOk);
      // Every refusal is counted (route and status labels); HEAD/PUT/… included.
      expect((await counter("reclaim_factory_control_requests_total", 'status="4')) - refusedBefore).toBe(refused);
      expect(refused).toBeGreaterThan(RUNS / 10);
      expect(rungsOk).toBeGreaterThan(RUNS / 1000);
    },
    TIMEOUT,
  );

  it(
    `GET /v1/users/{id}: 200 exactly for valid ids, else a 4xx JSON error (${RUNS} cases)`,
    async () => {
      const userIds = fc.oneof(
        fc.string({ minLength: 1, maxLength: 140 }),
        fc.stringMatching(/^[A-Za-z0-9._:@-]{1,128}$/),
        fc.constantFrom(".", "..", "...", "a/b", "%2e%2e", "x".repeat(129), "é", "a b", "\u0000"),
      );
      await fc.assert(
        fc.asyncProperty(userIds, async (id) => {
          const reply = await send("GET", `/v1/users/${encodeURIComponent(id)}`, { Authorization: BEARER });
          if (isUserId(id)) {
            expect(reply.status).toBe(200);
            expect((reply.body as { userId: string }).userId).toBe(id);
          } else {
            expectJsonError(reply, "GET");
          }
        }),
        { seed: SEED, numRuns: RUNS },
      );
    },
    TIMEOUT,
  );

  it(
    "bodies around and far over the 64 KiB cap, with and without Content-Length: 413 beyond it, never a 5xx (300 cases)",
    async () => {
      const size = fc.oneof(fc.integer({ min: CONTROL_MAX_BODY_BYTES - 16, max: CONTROL_MAX_BODY_BYTES + 16 }), fc.integer({ min: 0, max: CONTROL_MAX_BODY_BYTES * 8 }));
      await fc.assert(
        fc.asyncProperty(size, fc.boolean(), fc.constantFrom("probe", "force", "degrade"), async (n, chunked, rung) => {
          // A JSON object padded with spaces to exactly n bytes (when n allows one).
          const text = n >= 2 ? `{}${" ".repeat(n - 2)}` : " ".repeat(n);
          const reply = await send("POST", `/v1/users/bob/rungs/${rung}`, { Authorization: BEARER, "Content-Type": "application/json" }, Buffer.from(text), chunked);
          if (n > CONTROL_MAX_BODY_BYTES) {
            expect(reply.status).toBe(413);
            expect((reply.body as ControlError).error.code).toBe("payload_too_large");
          } else {
            // bob holds no connection: degrade has nothing to raise (409 no_connections); the other rungs just run.
            expect(reply.status).toBe(rung === "degrade" ? 409 : 200);
          }
        }),
        { seed: SEED, numRuns: 300 },
      );
    },
    TIMEOUT,
  );

  it("afterwards: the one real client untouched, nothing held, metric series from closed sets only", async () => {
    expect(factory.registry.active(KEEP)).toBe(1);
    expect(factory.registry.size).toBe(1);
    const metrics = await (await fetch(`${factory.controlUrl}/metrics`)).text();
    const series = metrics.split("\n").filter((l) => l.startsWith("reclaim_factory_control_requests_total{"));
    const routes = new Set(series.map((l) => /route="([^"]*)"/.exec(l)?.[1]));
    expect([...routes].every((r) => ["unknown", "users", "user", "admission", "rung", "healthz", "readyz", "metrics"].includes(r!))).toBe(true);
    expect(series.length).toBeLessThanOrEqual(8 * 10);
    expect(metrics).not.toContain("105945141827451681156");
    expect(/reclaim_factory_queue_length (\d+)/.exec(metrics)?.[1]).toBe("0");
    // The API still answers normally.
    expect((await send("GET", `/v1/users/${KEEP}`, { Authorization: BEARER })).status).toBe(200);
  });
});
