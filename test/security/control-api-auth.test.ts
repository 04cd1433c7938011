/**
 * The control API's bearer token: every `/v1` route × every wrong credential
 * (none, wrong, wrong length, wrong scheme, in the wrong place) → 401 with a
 * JSON error and `WWW-Authenticate: Bearer`, and no side effect at all — the
 * factory's state is compared before and after. The token never reaches a
 * log line, of the factory or of the operator, nor an incident record, even
 * when the operator holds the wrong one and every call fails.
 */
import { request } from "node:http";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ControlError } from "../../src/contract/control.js";
import { isRefusal, type ChatClient } from "../../src/demo/clients.js";
import { startTestFactory, TEST_AUTH_SECRET, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";
import { startTestOperator, tempDir } from "../support/operator.js";

const USER = "victim";
const T = TEST_CONTROL_TOKEN;

/** Every route of the table in src/factory/control.ts, with its method. */
const ROUTES: readonly (readonly [string, string])[] = [
  ["GET", "/v1/users"],
  ["GET", "/v1/users?atLimit=true"],
  ["GET", `/v1/users/${USER}`],
  ["GET", `/v1/users/${USER}/admission`],
  ["POST", `/v1/users/${USER}/rungs/conservative`],
  ["POST", `/v1/users/${USER}/rungs/probe`],
  ["POST", `/v1/users/${USER}/rungs/force`],
  ["POST", `/v1/users/${USER}/rungs/degrade`],
];

type Headers = Record<string, string | string[]>;

/** Credentials that must all be refused. */
const WRONG: readonly { label: string; headers: Headers; query?: string }[] = [
  { label: "no token", headers: {} },
  { label: "an empty header", headers: { Authorization: "" } },
  { label: "a wrong token of the same length", headers: { Authorization: `Bearer ${"x".repeat(T.length)}` } },
  { label: "the token with its last character changed", headers: { Authorization: `Bearer ${T.slice(0, -1)}${T.endsWith("x") ? "y" : "x"}` } },
  { label: "the token one character short", headers: { Authorization: `Bearer ${T.slice(0, -1)}` } },
  { label: "the token one character long", headers: { Authorization: `Bearer ${T}0` } },
  { label: "a one-character token", headers: { Authorization: "Bearer x" } },
  { label: "a 8 KiB token", headers: { Authorization: `Bearer ${"x".repeat(8192)}` } },
  { label: "the token's prefix (half)", headers: { Authorization: `Bearer ${T.slice(0, T.length / 2)}` } },
  { label: "the token twice", headers: { Authorization: `Bearer ${T}${T}` } },
  { label: "the token with a NUL inside", headers: { Authorization: `Bearer ${T.slice(0, 4)}%00${T.slice(4)}` } },
  { label: "the Basic scheme", headers: { Authorization: `Basic ${T}` } },
  { label: "Basic user:token", headers: { Authorization: `Basic ${Buffer.from(`x:${T}`).toString("base64")}` } },
  { label: "the Token scheme", headers: { Authorization: `Token ${T}` } },
  { label: "Bearer without a space", headers: { Authorization: `Bearer${T}` } },
  { label: "no scheme", headers: { Authorization: T } },
  { label: "two tokens", headers: { Authorization: `Bearer ${T} ${T}` } },
  { label: "the WebSocket auth secret (not the control token)", headers: { Authorization: `Bearer ${TEST_AUTH_SECRET}` } },
  { label: "the token in another header", headers: { "X-Api-Key": T, "Proxy-Authorization": `Bearer ${T}` } },
  { label: "the token as a cookie", headers: { Cookie: `token=${T}` } },
  { label: "the token in the query string", headers: {}, query: `token=${T}&access_token=${T}` },
  // Node keeps the first of two Authorization headers (and drops the rest), so the wrong one decides.
  { label: "a wrong Authorization header before the right one", headers: { Authorization: ["Bearer wrong-token-0123456789", `Bearer ${T}`] } },
];

interface Reply {
  status: number;
  www: string | undefined;
  type: string | undefined;
  body: unknown;
}

function send(f: TestFactory, method: string, path: string, headers: Headers, body?: string): Promise<Reply> {
  const url = new URL(f.controlUrl);
  const raw: Headers = { ...headers, ...(body === undefined ? {} : { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(body)) }) };
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers: raw, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, www: res.headers["www-authenticate"], type: res.headers["content-type"], body: text === "" ? null : (JSON.parse(text) as unknown) }),
      );
    });
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Everything a rung could change, for the user and overall. */
function snapshot(f: TestFactory): unknown {
  return {
    managers: f.registry.managersOf(USER).map((m) => ({ id: m.id, open: m.isOpen, removed: m.removed })),
    effectiveLimit: f.registry.effectiveLimit(USER),
    raise: f.registry.raiseOf(USER),
    size: f.registry.size,
    cleanups: f.events("factory.cleanup").length,
    evictions: f.events("factory.evicted").length + f.events("factory.zombie").length,
  };
}

let factory: TestFactory;
let tabs: ChatClient[];
let dir: string;
beforeAll(async () => {
  dir = await tempDir("reclaim-sec-auth-");
  factory = await startTestFactory({ logFile: join(dir, "factory.log"), probeTimeoutMs: 50 });
  tabs = [];
  // At the limit, with one zombie: every rung would have something to do.
  for (let i = 0; i < 19; i++) tabs.push(await factory.open(USER));
  tabs.push(await factory.open(USER, "no-pong"));
});
afterAll(async () => {
  await factory?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("every route × every wrong credential", () => {
  const cases = ROUTES.flatMap(([method, path]) => WRONG.map((w) => ({ method, path, ...w })));

  it(`${cases.length} requests: 401 unauthorized, JSON, WWW-Authenticate: Bearer, and nothing changed`, async () => {
    const before = snapshot(factory);
    for (const { method, path, label, headers, query } of cases) {
      const target = query === undefined ? path : `${path}${path.includes("?") ? "&" : "?"}${query}`;
      const body = method === "POST" ? JSON.stringify({ max: 20, freeSlots: 20, limit: 40 }).replace(',"limit":40', "") : undefined;
      const reply = await send(factory, method, target, headers, body);
      expect({ label, method, path, status: reply.status }).toEqual({ label, method, path, status: 401 });
      expect(reply.www).toBe("Bearer");
      expect(reply.type).toMatch(/^application\/json/);
      expect(ControlError.parse(reply.body).error.code).toBe("unauthorized");
    }
    expect(snapshot(factory)).toEqual(before);
    expect(tabs.every((t) => t.ws.readyState === t.ws.OPEN)).toBe(true);
    // Counted, under the route (a closed set), never the user.
    const metrics = await (await fetch(`${factory.controlUrl}/metrics`)).text();
    const refused = [...metrics.matchAll(/^reclaim_factory_control_requests_total\{route="(\w+)",status="401"\} (\d+)$/gm)];
    expect(refused.reduce((n, m) => n + Number(m[2]), 0)).toBe(cases.length);
    expect(metrics).not.toContain(USER);
  });

  it("the same routes with the right token answer 200 (so the 401s were about the credential)", async () => {
    for (const [method, path] of ROUTES.filter(([m]) => m === "GET")) {
      expect((await send(factory, method, path, { Authorization: `Bearer ${T}` })).status).toBe(200);
    }
    // One rung, to show a POST with the token does act: the zombie goes.
    expect((await send(factory, "POST", `/v1/users/${USER}/rungs/probe`, { Authorization: `bearer ${T}` })).status).toBe(200);
    expect(factory.registry.active(USER)).toBe(19);
  });

  it("the factory's log holds neither the control token, the auth secret, nor any credential tried", async () => {
    const text = await readFile(join(dir, "factory.log"), "utf8");
    expect(text.length).toBeGreaterThan(0);
    for (const secret of [T, TEST_AUTH_SECRET, T.slice(0, T.length / 2), "x".repeat(64)]) expect(text).not.toContain(secret);
    expect(factory.raw.join("\n")).not.toContain(T);
  });
});

describe("the operator never writes the token down", () => {
  it.each([
    ["the right token", T],
    ["a wrong token (every call fails with 401)", "wrong-operator-token-0123456789"],
  ])("with %s: not in its log lines, not in the incident's JSON or Markdown", async (_label, operatorToken) => {
    const opDir = await tempDir("reclaim-sec-auth-op-");
    const logFile = join(opDir, "factory.log");
    const f = await startTestFactory({ logFile, probeTimeoutMs: 50, cleanup: "legacy" });
    const operator = await startTestOperator({ dir: opDir, source: `file:${logFile}`, control: f.controlUrl, controlToken: operatorToken });
    try {
      for (let i = 0; i < 20; i++) await f.open("locked", "no-pong");
      expect(isRefusal(await f.attempt("locked"))).toBe(true);
      await operator.until((all) => all.some((i) => i.status !== "open" && i.status !== "remediating"), "the incident to end", 20_000);
      await operator.idle();
      const [incident] = await operator.incidents();
      expect(incident!.status).toBe(operatorToken === T ? "resolved" : "failed");
      const files = await readdir(join(opDir, "incidents"));
      const records = await Promise.all(files.map((name) => readFile(join(opDir, "incidents", name), "utf8")));
      const everything = [JSON.stringify(operator.lines), ...records, await readFile(logFile, "utf8")].join("\n");
      expect(everything).not.toContain(operatorToken);
      expect(everything).not.toContain(T);
    } finally {
      await operator.close();
      await f.close();
      await rm(opDir, { recursive: true, force: true });
    }
  }, 40_000);
});
