/**
 * User ids from logs and from requests cannot escape the incident directory
 * or reach another control route: `../`, encoded slashes and dots (once and
 * twice), NUL, backslashes, overlong UTF-8, query and fragment characters.
 *
 * - the control API: every hostile id, in every route that takes one, is a
 *   4xx, and the victim a traversal would land on is never acted on;
 * - the operator: a lockout line naming a hostile id opens no incident (it is
 *   counted as `unkeyed`), and the incident folder only ever holds files
 *   named by incident ids (which hold no user id at all), nothing beside it;
 * - the control client refuses to build a URL from a hostile id, before any
 *   request leaves; the incident store refuses a hostile incident id before
 *   it builds a path.
 */
import { createServer } from "node:http";
import { appendFile, readdir, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isUserId } from "../../src/contract/ids.js";
import { ControlClient } from "../../src/operator/act/control-client.js";
import { FileIncidentStore, IncidentIdError } from "../../src/operator/incidents/file-store.js";
import { INCIDENT_ID_PATTERN } from "../../src/operator/incidents/model.js";
import { startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

const VICTIM = "victim";

/** Ids as they would be written in a log line (decoded text). */
const HOSTILE_IDS = [
  "../victim",
  "../../../../etc/passwd",
  "..",
  ".",
  "a/../victim",
  "victim/rungs/force",
  "x/../../users/victim/rungs/force",
  "..\\victim",
  "victim\u0000",
  "\u0000",
  "victim%2Frungs%2Fforce",
  "%2e%2e%2fvictim",
  "%252e%252e%252f",
  "victim?x=1",
  "victim#frag",
  "victim;rungs=force",
  "\u2024\u2024/victim", // one-dot leaders
  "\uff0e\uff0e/victim", // fullwidth full stops
  "victim\n",
  " victim",
  "",
  "x".repeat(129),
];

/** The same as raw path segments on the wire (what a client could send that no encoder would). */
const RAW_SEGMENTS = [
  "..",
  "%2e%2e",
  "%2E%2E%2F",
  "..%2F..%2Fusers%2Fvictim",
  "victim%2Frungs%2Fforce",
  "victim%2frungs%2fforce",
  "%252e%252e%252fvictim",
  "victim%00",
  "%00",
  "..%5Cvictim",
  "%C0%AE%C0%AE%2Fvictim", // overlong UTF-8 dots
  "%E2%80%A4%E2%80%A4%2Fvictim",
  "victim%3Fx%3D1",
  "victim%23x",
  "victim;x",
  "%ZZ",
  "%",
];

const ROUTES = [
  ["GET", (id: string) => `/v1/users/${id}`],
  ["GET", (id: string) => `/v1/users/${id}/admission`],
  ["POST", (id: string) => `/v1/users/${id}/rungs/force`],
  ["POST", (id: string) => `/v1/users/${id}/rungs/degrade`],
] as const;

function send(f: TestFactory, method: string, path: string): Promise<{ status: number; body: { userId?: string; error?: { code: string } } }> {
  const url = new URL(f.controlUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers: { Authorization: `Bearer ${TEST_CONTROL_TOKEN}` }, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { userId?: string } }));
    });
    req.on("error", reject);
    req.end();
  });
}

let dir: string;
let factory: TestFactory;
beforeAll(async () => {
  dir = await tempDir("reclaim-sec-paths-");
  factory = await startTestFactory({ logFile: join(dir, "factory.log"), probeTimeoutMs: 50 });
  for (let i = 0; i < 20; i++) await factory.open(VICTIM);
});
afterAll(async () => {
  await factory?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("the control API", () => {
  const cases = ROUTES.flatMap(([method, path]) => [
    ...HOSTILE_IDS.map((id) => ({ method, path: path(encodeURIComponent(id)), how: `encoded ${JSON.stringify(id)}` })),
    ...RAW_SEGMENTS.map((seg) => ({ method, path: path(seg), how: `raw ${seg}` })),
  ]);

  it(`${cases.length} hostile ids: never a 2xx for another user, never a rung on the victim`, async () => {
    const managers = factory.registry.managersOf(VICTIM).map((m) => m.id);
    for (const { method, path, how } of cases) {
      const reply = await send(factory, method, path);
      expect(reply.status, `${method} ${path} (${how})`).toBeLessThan(500);
      if (reply.status === 200) {
        // Only dot segments normalise to another valid path; it must then name a valid, non-victim id.
        expect(reply.body.userId, `${method} ${path}`).not.toBe(VICTIM);
        expect(isUserId(reply.body.userId ?? "")).toBe(true);
      } else {
        expect(["invalid_user_id", "not_found", "method_not_allowed"]).toContain(reply.body.error?.code);
      }
    }
    expect(factory.registry.managersOf(VICTIM).map((m) => m.id)).toEqual(managers);
    expect(factory.registry.raiseOf(VICTIM)).toBeNull();
    expect(factory.events("factory.cleanup").filter((l) => l.userId === VICTIM)).toEqual([]);
  });
});

describe("the operator", () => {
  let operator: TestOperator;
  let opDir: string;
  beforeAll(async () => {
    opDir = await tempDir("reclaim-sec-paths-op-");
    await writeFile(join(opDir, "factory.log"), "");
    operator = await startTestOperator({ dir: opDir, source: `file:${join(opDir, "factory.log")}`, control: factory.controlUrl });
  });
  afterAll(async () => {
    await operator?.close();
    await rm(opDir, { recursive: true, force: true });
  });

  it("lockout lines naming hostile ids open nothing, write nothing outside the incident folder, and are counted", async () => {
    const line = (userId: unknown): string =>
      JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod: "test-factory-0", event: "factory.hard_limit", userId, managers: 20, limit: 20, message: "HARD LIMIT" });
    const before = await readdir(opDir);
    await appendFile(join(opDir, "factory.log"), `${HOSTILE_IDS.map(line).join("\n")}\n${line("sentinel-user")}\n`);
    await operator.until((all) => all.some((i) => i.target.userId === "sentinel-user"), "the sentinel incident");
    await operator.idle();

    expect((await operator.incidents()).map((i) => i.target.userId)).toEqual(["sentinel-user"]);
    // Only incident files, named by incident ids (no user id in them), in the folder; nothing new beside it.
    const files = await readdir(join(opDir, "incidents"));
    expect(files.length).toBeGreaterThan(0);
    for (const name of files) expect(name.replace(/\.(json|md)$/, "")).toMatch(INCIDENT_ID_PATTERN);
    expect((await readdir(opDir)).sort()).toEqual([...new Set([...before, "incidents"])].sort());
    const metrics = await (await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).text();
    const unkeyed = /reclaim_operator_entries_dropped_total\{[^}]*reason="unkeyed"[^}]*\} (\d+)/.exec(metrics);
    expect(Number(unkeyed?.[1])).toBe(HOSTILE_IDS.filter((id) => !isUserId(id)).length);
  });
});

describe("the control client and the incident store refuse before building a path", () => {
  it("ControlClient: a hostile id throws a TypeError and no request is sent", async () => {
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      res.end("{}");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const client = new ControlClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, TEST_CONTROL_TOKEN);
    try {
      // Thrown or rejected, either way before a request (an async caller sees a rejection).
      const call = async (f: () => Promise<unknown>): Promise<unknown> => f();
      for (const id of HOSTILE_IDS) {
        await expect(call(() => client.admission(id, 1000))).rejects.toThrow(TypeError);
        await expect(call(() => client.user(id, 1000))).rejects.toThrow(TypeError);
        await expect(call(() => client.runRung(id, "force", {}, 1000))).rejects.toThrow(TypeError);
      }
      expect(requests).toBe(0);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("FileIncidentStore: an id that is not an incident id is refused, and no file appears anywhere", async () => {
    const root = await tempDir("reclaim-sec-store-");
    try {
      const store = new FileIncidentStore({ dir: join(root, "incidents") });
      for (const id of [...HOSTILE_IDS, "../20261126T120000Z-x-1a2b3c4d", "20261126T120000Z-x-1a2b3c4d/../../x", "20261126T120000Z-x-1a2b3c4d\u0000"]) {
        await expect(store.get(id)).rejects.toBeInstanceOf(IncidentIdError);
        await expect(store.remove(id)).rejects.toBeInstanceOf(IncidentIdError);
      }
      expect(await readdir(root)).toEqual([]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
