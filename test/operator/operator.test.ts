/**
 * The operator's own behaviour: failures of the control API and of the
 * store, restarts from the records, hot reload of the rules, the canary,
 * and its metrics.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { appendFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FileIncidentStore } from "../../src/operator/incidents/file-store.js";
import type { Incident } from "../../src/operator/incidents/model.js";
import { MemoryIncidentStore } from "../../src/operator/incidents/memory-store.js";
import { eventually, startTestFactory, TEST_AUTH_SECRET, type TestFactory } from "../support/factory.js";
import { buildIncident } from "../support/incidents.js";
import { emptyLog, LOCKOUT_RULE, startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let server: Server | undefined;
afterEach(async () => {
  await operator?.close();
  await factory?.close();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  operator = undefined;
  factory = undefined;
  server = undefined;
});

const hardLimitLine = (userId: string, pod = "p0", offsetMs = 0): string =>
  `${JSON.stringify({ severity: "ERROR", time: new Date(Date.now() + offsetMs).toISOString(), pod, event: "factory.hard_limit", userId, managers: 20, limit: 20, message: `HARD LIMIT: User ${userId} still over limit after cleanup (20/20)` })}\n`;



/** A real factory, its log file as the operator's source, and the operator. */
async function factoryAndOperator(extra: Partial<Parameters<typeof startTestOperator>[0]> = {}): Promise<{ dir: string; log: string }> {
  factory = await startTestFactory();
  const dir = await tempDir();
  const log = await emptyLog(dir);
  operator = await startTestOperator({ dir, source: `file:${log}`, control: factory.controlUrl, ...extra });
  return { dir, log };
}

describe("a control API that answers 500", () => {
  it("is retried a bounded number of times, then the incident fails with the cause", async () => {
    let calls = 0;
    server = createServer((req, res) => {
      calls++;
      res.writeHead(500, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { code: "internal", message: "database on fire" } }));
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
    const dir = await tempDir();
    const log = await emptyLog(dir);
    operator = await startTestOperator({
      dir,
      source: `file:${log}`,
      control: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      ladder: { attempts: 4, backoffMs: [5] },
    });
    await appendFile(log, hardLimitLine("u500"));
    const [incident] = await operator.until((all) => all.some((i) => i.status === "failed"), "the incident to fail");
    expect(incident!.rungs[0]).toMatchObject({ rung: "probe", outcome: "error", attempts: 4, response: { status: 500 } });
    expect(incident!.rungs[0]!.error).toContain("internal: database on fire");
    expect(incident!.followUps.join(" ")).toContain("control API");
    expect(calls).toBe(4 + 1); // 4 attempts of the rung + 1 admission snapshot before it
  });

  it("a 4xx is not retried: the request itself is wrong", async () => {
    server = createServer((req, res) => {
      res.writeHead(req.url?.includes("/rungs/") ? 401 : 200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(req.url?.includes("/rungs/") ? { error: { code: "unauthorized", message: "a valid bearer token is required" } } : {}));
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
    const dir = await tempDir();
    const log = await emptyLog(dir);
    operator = await startTestOperator({ dir, source: `file:${log}`, control: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
    await appendFile(log, hardLimitLine("u401"));
    const [incident] = await operator.until((all) => all.some((i) => i.status === "failed"), "the incident to fail");
    expect(incident!.rungs[0]).toMatchObject({ attempts: 1, response: { status: 401 } });
  });
});

describe("the incident store", () => {
  it("when it cannot write, the operator does not act, says so, and acts again once it can", async () => {
    factory = await startTestFactory();
    const dir = await tempDir();
    const log = await emptyLog(dir);
    const inner = new MemoryIncidentStore();
    let broken = true;
    const store = {
      save: (i: Incident) => (broken ? Promise.reject(Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" })) : inner.save(i)),
      get: (id: string) => inner.get(id),
      list: () => inner.list(),
    };
    operator = await startTestOperator({ dir, source: `file:${log}`, control: factory.controlUrl }, { store });
    for (let i = 0; i < 20; i++) await factory.open("victim", "no-pong");
    await appendFile(log, hardLimitLine("victim"));
    await eventually(() => operator!.lines.some((l) => l.event === "operator.store_error"), 5000, "the store error to be logged");
    await operator.idle();
    expect(factory.events("factory.cleanup", "victim")).toHaveLength(0); // nothing was run on the factory
    expect(factory.registry.active("victim")).toBe(20);
    expect(String(operator.lines.find((l) => l.event === "operator.store_error")?.message)).toContain("NOT acting");

    broken = false;
    await appendFile(log, hardLimitLine("victim"));
    await operator.until((all) => all.some((i) => i.status === "resolved"), "the incident to resolve once the store works");
  });
});

describe("restarts", () => {
  it("an incident left remediating by a stopped operator is resumed (its pending rung runs again) and resolved, not duplicated", async () => {
    factory = await startTestFactory({ probeTimeoutMs: 200 });
    for (let i = 0; i < 20; i++) await factory.open("resume-me", "no-pong");
    const dir = await tempDir();
    const store = new FileIncidentStore({ dir: join(dir, "incidents") });
    const left = buildIncident({ status: "remediating", userId: "resume-me", pod: "test-factory-0", rule: "lockout", detectedAt: new Date(Date.now() - 5_000).toISOString() });
    left.target.control = factory.controlUrl;
    left.rungs = [{ ...left.rungs[0]!, rung: "probe", outcome: "pending", finishedAt: null, durationMs: null, response: null, result: null, error: null, verification: null }];
    left.updatedAt = new Date(Date.now() - 1000).toISOString();
    await store.save(left);

    operator = await startTestOperator({ dir, source: `file:${await emptyLog(dir)}`, control: factory.controlUrl });
    const all = await operator.until((incidents) => incidents.some((i) => i.status === "resolved"), "the resumed incident to resolve");
    expect(all).toHaveLength(1);
    expect(all[0]!.id).toBe(left.id);
    expect(all[0]!.rungs).toHaveLength(1);
    expect(all[0]!.rungs[0]).toMatchObject({ rung: "probe", outcome: "ok" });
    expect(all[0]!.decisions.map((d) => d.kind)).toContain("resumed");
    expect(factory.registry.active("resume-me")).toBe(0);
  });

  it("an incident left open too long ago, or whose rule is gone, is marked interrupted", async () => {
    const dir = await tempDir();
    const store = new FileIncidentStore({ dir: join(dir, "incidents") });
    const old = buildIncident({ status: "remediating", userId: "old-user", rule: "lockout", detectedAt: new Date(Date.now() - 3_600_000).toISOString(), salt: "a" });
    old.updatedAt = new Date(Date.now() - 3_000_000).toISOString();
    const orphan = buildIncident({ status: "open", userId: "orphan", rule: "no-such-rule", detectedAt: new Date(Date.now() - 1000).toISOString(), salt: "b" });
    await store.save(old);
    await store.save(orphan);
    operator = await startTestOperator({ dir, source: `file:${await emptyLog(dir)}`, control: "http://127.0.0.1:9" });
    const all = await operator.incidents();
    expect(all.map((i) => [i.target.userId, i.status])).toEqual([
      ["old-user", "interrupted"],
      ["orphan", "interrupted"],
    ]);
    expect(all.find((i) => i.target.userId === "orphan")!.decisions.at(-1)!.detail).toContain("no longer loaded");
  });

  it("cooldowns survive a restart: a trigger right after restarting is suppressed, counted on the old incident", async () => {
    const { dir, log } = await factoryAndOperator();
    await appendFile(log, hardLimitLine("cool"));
    await operator!.until((all) => all.some((i) => i.status === "resolved"), "the first incident");
    await operator!.close();
    operator = await startTestOperator({ dir, source: `file:${log}`, control: factory!.controlUrl });
    await appendFile(log, hardLimitLine("cool"));
    const all = await operator.until((incidents) => incidents[0]?.suppressed.cooldown?.count === 1, "the suppression to be counted");
    expect(all).toHaveLength(1);
  });
});

describe("hot reload", () => {
  it("applies a valid change and keeps the last good rules when a change is invalid", async () => {
    const { dir, log } = await factoryAndOperator();
    const ruleFile = join(dir, "rules", "rules.yaml");

    await writeFile(ruleFile, "apiVersion: reclaim.dev/v1\nkind: RemediationRule\nmetadata: { name: lockout }\nspec: { ladder: [] }\n");
    await eventually(() => operator!.lines.some((l) => l.event === "operator.rules_invalid"), 5000, "the invalid reload");
    expect(String(operator!.lines.find((l) => l.event === "operator.rules_invalid")?.message)).toMatch(/rules\.yaml:4:\d+: /);
    await appendFile(log, hardLimitLine("still-served"));
    await operator!.until((all) => all.some((i) => i.target.userId === "still-served"), "the old rule to still act");

    await writeFile(ruleFile, LOCKOUT_RULE.replace("name: lockout", "name: renamed").replace("guards: { cooldown: 10m }", "guards: { cooldown: 10m, dryRun: true }"));
    await eventually(() => operator!.rules().some((r) => r.name === "renamed"), 5000, "the valid reload");
    await appendFile(log, hardLimitLine("after-reload"));
    const all = await operator!.until((incidents) => incidents.some((i) => i.target.userId === "after-reload"), "the new rule");
    expect(all.find((i) => i.target.userId === "after-reload")).toMatchObject({ rule: "renamed", dryRun: true, status: "suppressed" });
    const metrics = await (await fetch(`http://127.0.0.1:${operator!.metricsPort}/metrics`)).text();
    expect(metrics).toContain('reclaim_operator_rule_reloads_total{result="invalid"} 1');
    expect(metrics).toContain('reclaim_operator_rule_reloads_total{result="ok"} 1');
  });
});

describe("verification with a canary", () => {
  it("a rule with a canary is verified only after a real chat round trip as the canary identity", async () => {
    factory = await startTestFactory({ authSecret: TEST_AUTH_SECRET });
    const dir = await tempDir();
    const log = await emptyLog(dir);
    operator = await startTestOperator({
      dir,
      source: `file:${log}`,
      control: factory.controlUrl,
      canary: { url: factory.wsUrl, token: await factory.token("reclaim-canary") },
      rule: LOCKOUT_RULE.replace("verify: { settle: 200ms, timeout: 3s }", "verify: { settle: 200ms, timeout: 3s, canary: { message: canary ping } }"),
    });
    await appendFile(log, hardLimitLine("canary-user"));
    const [incident] = await operator.until((all) => all.some((i) => i.status === "resolved"), "the incident");
    expect(incident!.rungs[0]!.verification).toMatchObject({ verified: true, canary: { ok: true, detail: "chat message answered" } });
  });

  it("a canary that cannot chat keeps the incident from being called resolved", async () => {
    factory = await startTestFactory();
    const dir = await tempDir();
    const log = await emptyLog(dir);
    operator = await startTestOperator({
      dir,
      source: `file:${log}`,
      control: factory.controlUrl,
      canary: { url: factory.wsUrl, token: "not-a-valid-token" },
      rule: LOCKOUT_RULE.replace("verify: { settle: 200ms, timeout: 3s }", "verify: { settle: 200ms, timeout: 3s, canary: {} }"),
    });
    await appendFile(log, hardLimitLine("canary-fails"));
    const [incident] = await operator.until((all) => all.some((i) => i.status === "escalated"), "the incident to escalate");
    expect(incident!.rungs.map((r) => r.verification?.canary?.detail)).toEqual(["upgrade refused with HTTP 401", "upgrade refused with HTTP 401"]);
  });
});

describe("metrics", () => {
  it("count lines, matches, triggers, rungs and incidents, with no user id in any label", async () => {
    const { log } = await factoryAndOperator();
    // Two different entries (1 ms apart) for one user: the second finds the first ladder in flight.
    await appendFile(log, `not json\n${hardLimitLine("metric-user")}${hardLimitLine("metric-user", "p0", 1)}`);
    await operator!.until((all) => all.some((i) => i.status === "resolved"), "the incident");
    await operator!.idle(); // the ladder counts the outcome just after writing it
    const text = await (await fetch(`http://127.0.0.1:${operator!.metricsPort}/metrics`)).text();
    const source = `file:${log}`;
    expect(text).toContain(`reclaim_operator_lines_read_total{source="${source}"} 3`);
    expect(text).toContain('reclaim_operator_rule_matches_total{rule="lockout"} 2');
    expect(text).toContain('reclaim_operator_triggers_total{rule="lockout",outcome="acted",reason="none"} 1');
    expect(text).toContain('reclaim_operator_triggers_total{rule="lockout",outcome="suppressed",reason="in_flight"} 1');
    expect(text).toContain('reclaim_operator_rungs_total{rung="probe",result="ok"} 1');
    expect(text).toContain('reclaim_operator_incidents_total{status="resolved"} 1');
    expect(text).toContain("reclaim_operator_detect_to_resolved_seconds_count 1");
    expect(text).not.toContain("metric-user");
    expect((await fetch(`http://127.0.0.1:${operator!.metricsPort}/healthz`)).status).toBe(200);
  });
});

describe("idle()", () => {
  /** A memory store whose first save waits until `release()`; `saving` resolves when that save has begun. */
  class GatedStore extends MemoryIncidentStore {
    private began = false;
    private gate: () => void = () => undefined;
    private markSaving: () => void = () => undefined;
    readonly saving = new Promise<void>((resolve) => (this.markSaving = resolve));
    release(): void {
      this.gate();
    }
    override async save(incident: Incident): Promise<void> {
      if (!this.began) {
        this.began = true;
        const open = new Promise<void>((resolve) => (this.gate = resolve));
        this.markSaving();
        await open;
      }
      return super.save(incident);
    }
  }

  it("waits for an incident still being recorded (its ladder not yet started), then for its ladder", async () => {
    factory = await startTestFactory();
    const dir = await tempDir();
    const log = await emptyLog(dir);
    const store = new GatedStore();
    operator = await startTestOperator({ dir, source: `file:${log}`, control: factory.controlUrl }, { store });
    await appendFile(log, hardLimitLine("u-idle"));
    await store.saving; // the line is being handled: its incident is being written, no ladder runs yet
    const idle = operator.idle();
    store.release();
    await idle;
    const [incident] = await operator.incidents();
    expect(incident?.target.userId).toBe("u-idle");
    expect(incident?.closedAt).not.toBeNull(); // idle came back only after the ladder had ended
  });
});

describe("a degrade for a user who holds no connection", () => {
  it("is not a failure: the factory answers 409 no_connections, and verification finds the user admitted", async () => {
    const rule = LOCKOUT_RULE.replace(
      "    - { rung: probe, timeout: 5s }\n    - { rung: force, timeout: 5s, params: { max: 1 } }",
      "    - { rung: degrade, timeout: 5s }",
    );
    expect(rule).toContain("rung: degrade");
    const { log } = await factoryAndOperator({ rule });
    await appendFile(log, hardLimitLine("u-gone")); // every tab of u-gone closed since it logged
    const incident = await operator!.ended("u-gone");
    expect(incident.rungs[0]).toMatchObject({ rung: "degrade", outcome: "ok", response: { status: 409 } });
    expect(incident.status).toBe("resolved");
    expect(factory!.registry.raiseOf("u-gone")).toBeNull();
  });
});
