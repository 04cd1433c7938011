/**
 * Fault matrix, row 12: the factory's control port answers, but its
 * WebSocket port is dead. The control API says the user would be admitted,
 * yet nobody can chat: with a canary in the rule's `verify`, verification
 * must fail after every rung and the incident escalate — never be reported
 * resolved — and the operator must go back to resolving incidents once the
 * port serves again.
 *
 * The operator reaches the factory's WebSocket port the way it would in a
 * cluster, through a network path (here a TCP forwarder on 127.0.0.1 that
 * the test controls): forwarding, then closed (connection refused), then
 * accepting and resetting every connection, then answering HTTP 502 as a
 * proxy whose backend is gone, then forwarding again. The factory, the
 * control API and the canary's WebSocket client are real.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Incident } from "../../src/operator/incidents/model.js";
import { startTestFactory, type TestFactory } from "../support/factory.js";
import { faultRule, lockOut, rungsRun } from "../support/fault-matrix.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

/**
 * Probe, then force; each verified by admission AND a real chat round trip as
 * the canary. The circuit breaker allows the three escalations this test
 * provokes (with the default of 3 the rule would rightly stop acting after them).
 */
const RULE = faultRule({ extraRungs: ["{ rung: force, timeout: 2s, params: { max: 1 } }"] })
  .replace("verify: { settle: 100ms, timeout: 2s }", "verify: { settle: 100ms, timeout: 2s, canary: { message: reclaim canary } }")
  .replace("guards: { cooldown: 10m }", "guards: { cooldown: 10m, circuitBreaker: { failures: 4, openFor: 30m } }");

type Mode = "forward" | "reset" | "http502";

describe("fault matrix 12: control port reachable, WebSocket port dead", () => {
  let factory: TestFactory;
  let operator: TestOperator;
  let port = 0;
  let path: Server | null = null;
  let mode: Mode = "forward";
  const sockets = new Set<Socket>();

  /** Opens the network path to the factory's WebSocket port (on `port` once it is known), behaving as `mode` says. */
  async function openPath(): Promise<void> {
    const server = createServer((client) => {
      sockets.add(client);
      client.on("close", () => sockets.delete(client));
      client.on("error", () => undefined);
      if (mode === "reset") return void client.resetAndDestroy();
      if (mode === "http502") return void client.end("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      const upstream = connect(factory.port, "127.0.0.1");
      sockets.add(upstream);
      upstream.on("close", () => sockets.delete(upstream));
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    port = (server.address() as { port: number }).port;
    path = server;
  }

  /** The port is dead: nothing listens (connection refused), and open connections are cut. */
  async function closePath(): Promise<void> {
    const server = path;
    path = null;
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => (server === null ? resolve() : server.close(() => resolve())));
  }

  beforeAll(async () => {
    const dir = await tempDir("reclaim-fault12-");
    const log = join(dir, "factory.log");
    await writeFile(log, "");
    factory = await startTestFactory({ cleanup: "legacy", logFile: log, logLevel: "info", probeTimeoutMs: 300 });
    await openPath();
    operator = await startTestOperator({
      dir,
      source: `file:${log}`,
      control: factory.controlUrl,
      rule: RULE,
      canary: { url: `ws://127.0.0.1:${port}/ws`, token: await factory.token("reclaim-canary") },
    });
  });

  afterAll(async () => {
    await operator?.close();
    if (operator !== undefined) await rm(operator.dir, { recursive: true, force: true });
    await closePath();
    await factory?.close();
  });

  /** Locks `user` out on the factory (a real HARD LIMIT line) and waits for the incident to end. */
  async function incidentFor(user: string): Promise<Incident> {
    await lockOut(factory, user, 20);
    const all = await operator.until((incidents) => incidents.some((i) => i.target.userId === user && i.closedAt !== null), `${user}'s incident to end`);
    const mine = all.filter((i) => i.target.userId === user);
    expect(mine).toHaveLength(1);
    return mine[0]!;
  }

  /** Escalated after both rungs, each run once, each verification failing on the canary while admission said yes. */
  function expectEscalated(incident: Incident, canary: RegExp): void {
    expect(incident.status).toBe("escalated");
    expect(incident.resolvedAt).toBeNull();
    expect(incident.rungs.map((r) => [r.rung, r.outcome])).toEqual([
      ["probe", "ok"],
      ["force", "ok"],
    ]);
    for (const run of incident.rungs) {
      expect(run.verification).toMatchObject({ verified: false, admission: { admit: true }, canary: { ok: false } });
      expect(run.verification!.canary!.detail).toMatch(canary);
      expect(run.verification!.detail).toContain("admitted, but the canary failed");
    }
    expect(incident.followUps.join("\n")).toContain("page the owner");
    expect(rungsRun(factory, incident.target.userId)).toEqual(["probe", "force"]);
  }

  it("with the port serving, the canary chats and the incident resolves (the path works)", async () => {
    const incident = await incidentFor("ws-alive");
    expect(incident.status).toBe("resolved");
    expect(incident.rungs[0]!.verification).toMatchObject({ verified: true, canary: { ok: true, detail: "chat message answered" } });
    expect(rungsRun(factory, "ws-alive")).toEqual(["probe"]);
  });

  it("connection refused: admission says yes, the canary cannot connect, the incident escalates instead of resolving", async () => {
    await closePath();
    expectEscalated(await incidentFor("ws-refused"), /connection failed: .*ECONNREFUSED/);
  });

  it("connections reset, or a proxy's 502: the same, with the cause in each verification", async () => {
    mode = "reset";
    await openPath();
    expectEscalated(await incidentFor("ws-reset"), /connection failed: .*(ECONNRESET|socket hang up)/);
    mode = "http502";
    expectEscalated(await incidentFor("ws-502"), /upgrade refused with HTTP 502/);
  });

  it("once the port serves again the operator resolves as before: nothing lost or doubled, the process serving throughout", async () => {
    mode = "forward";
    const incident = await incidentFor("ws-back");
    expect(incident.status).toBe("resolved");
    const all = await operator.incidents();
    expect(all.map((i) => [i.target.userId, i.status]).sort()).toEqual([
      ["ws-502", "escalated"],
      ["ws-alive", "resolved"],
      ["ws-back", "resolved"],
      ["ws-refused", "escalated"],
      ["ws-reset", "escalated"],
    ]);
    const text = await operator.metrics.registry.metrics();
    expect(text).toMatch(/^reclaim_operator_incidents_total\{status="escalated"\} 3$/m);
    expect((await fetch(`http://127.0.0.1:${operator.metricsPort}/healthz`)).status).toBe(200);
  });
});
