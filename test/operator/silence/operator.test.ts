/**
 * Silences and the pause against a running operator (ADR 22): a real
 * factory behind a pass-through control proxy (which counts every rung
 * call), a real operator tailing a log file, and the real `reclaim silence`,
 * `reclaim pause` and `reclaim resume` writing to its state folder. Nothing
 * is restarted: the operator honours each change within a poll (1 s by
 * default), and these tests wait for its log line saying so.
 */
import { appendFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Incident } from "../../../src/operator/incidents/model.js";
import { FileSilenceStore, silenceDir } from "../../../src/operator/silence/file-store.js";
import { runCli } from "../../support/cli.js";
import { eventually, startTestFactory, type TestFactory } from "../../support/factory.js";
import { startFaultyControl, type FaultyControl } from "../../support/faulty-control.js";
import { emptyLog, startTestOperator, tempDir, type TestOperator } from "../../support/operator.js";

let factory: TestFactory | undefined;
let proxy: FaultyControl | undefined;
let operator: TestOperator | undefined;
afterEach(async () => {
  await operator?.close();
  await proxy?.close();
  await factory?.close();
  operator = undefined;
  proxy = undefined;
  factory = undefined;
});

const hardLimitLine = (userId: string, pod = "p0"): string =>
  `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod, event: "factory.hard_limit", userId, managers: 20, limit: 20, message: `HARD LIMIT: User ${userId} still over limit after cleanup (20/20)` })}\n`;

/** Probe, then force, then degrade: a ladder with rungs left to send after the second. */
const THREE_RUNGS = `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: lockout }
spec:
  trigger: { log: { event: [factory.hard_limit], minSeverity: ERROR } }
  threshold: { count: 1, window: 1m }
  key: [userId, pod]
  ladder:
    - { rung: probe, timeout: 5s }
    - { rung: force, timeout: 20s, params: { max: 1 } }
    - { rung: degrade, timeout: 5s, params: { limit: 25, ttlMs: 60000 } }
  verify: { settle: 200ms, timeout: 3s }
  guards: { cooldown: 10m }
  incident: { severity: high, title: "Chat lockout: user {{userId}} on {{pod}}" }
`;

async function setUp(rule?: string): Promise<{ log: string; state: string }> {
  factory = await startTestFactory({ cleanup: "legacy", probeTimeoutMs: 200 });
  proxy = await startFaultyControl(factory.controlUrl);
  const dir = await tempDir("reclaim-op-silence-");
  const log = await emptyLog(dir);
  operator = await startTestOperator({ dir, source: `file:${log}`, control: proxy.url, ...(rule === undefined ? {} : { rule }) });
  return { log, state: join(dir, "state") };
}

/** Fills `userId`'s 20 slots with zombies (tabs that never answer a ping). */
async function lockOut(userId: string, kind: "no-pong" | "live" = "no-pong"): Promise<void> {
  for (let i = 0; i < 20; i++) await factory!.open(userId, kind);
}

const rungCallsFor = (userId: string): string[] => proxy!.rungCalls().filter((r) => r.path.includes(`/users/${userId}/`)).map((r) => r.path.split("/").pop()!);

/** Waits for an operator log line with this event (and fields). */
function logged(event: string, fields: Record<string, unknown> = {}, timeoutMs = 5000): Promise<void> {
  const match = (l: Record<string, unknown>): boolean => l.event === event && Object.entries(fields).every(([k, v]) => l[k] === v);
  return eventually(() => operator!.lines.some(match), timeoutMs, `the operator to log ${event} ${JSON.stringify(fields)}`);
}

/** The record that lists `userId` as not acted on for `reason` (a rollup record: ADR 12). */
async function heldRecord(userId: string, reason: "silenced" | "paused"): Promise<Incident> {
  const all = await operator!.until(
    (list) => list.some((i) => i.rollup?.reason === reason && i.rollup.keys.some((k) => k.userId === userId)),
    `a record saying ${userId} was not acted on (${reason})`,
  );
  return all.find((i) => i.rollup?.reason === reason && i.rollup.keys.some((k) => k.userId === userId))!;
}

async function readyz(): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${operator!.metricsPort}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${operator!.metricsPort}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1]);
}

describe("a silence, on a running operator", () => {
  it("stops it acting on the user within a poll of `silence add`, records why, and lets it act again after `silence expire`", async () => {
    const { log, state } = await setUp();
    await lockOut("victim");
    await lockOut("bystander");

    const added = await runCli(["silence", "add", "--user", "victim", "--for", "1h", "--by", "alice", "--comment", "support is on the phone with them", "--state", state]);
    expect(added.code).toBe(0);
    const id = added.stdout.trim();
    await logged("operator.silence_started", { silence: id, by: "alice", userId: "victim" });
    expect(await metric("reclaim_operator_silences_active")).toBe(1);

    await appendFile(log, hardLimitLine("victim") + hardLimitLine("bystander"));
    const record = await heldRecord("victim", "silenced");
    await operator!.until((list) => list.some((i) => i.target.userId === "bystander" && i.status === "resolved"), "the bystander to be helped");
    await operator!.idle();
    expect(rungCallsFor("victim")).toEqual([]); // no rung was sent for the silenced user
    expect(factory!.registry.active("victim")).toBe(20);
    expect(record).toMatchObject({ status: "suppressed", suppressed: { silenced: { count: 1 } } });
    const silence = await new FileSilenceStore({ dir: silenceDir(state) }).get(id);
    expect(record.decisions.map((d) => d.detail)).toContain(
      `not acted on (silenced): silenced by ${id} (user=victim) of alice until ${silence!.endsAt}: "support is on the phone with them"`,
    );
    expect(operator!.lines.some((l) => l.event === "operator.suppressed" && l.userId === "victim" && l.reason === "silenced")).toBe(true);

    const expired = await runCli(["silence", "expire", id, "--by", "alice", "--state", state]);
    expect(expired.code).toBe(0);
    await logged("operator.silence_ended", { silence: id });
    await appendFile(log, hardLimitLine("victim"));
    await operator!.until((list) => list.some((i) => i.target.userId === "victim" && i.rollup === undefined && i.status === "resolved"), "the victim to be helped once the silence ended");
    expect(rungCallsFor("victim")).toEqual(["probe"]);
  });
});

describe("a pause, on a running operator", () => {
  it("holds back every trigger (recorded as paused, saying by whom and why), shows in /readyz and the metrics, and ends with `resume`", async () => {
    const { log, state } = await setUp();
    await lockOut("u1");
    expect(await readyz()).toEqual({ status: 200, body: { status: "ok", leader: true, paused: null } });

    const paused = await runCli(["pause", "--for", "30m", "--by", "bob", "--comment", "deploying the factory", "--state", state]);
    expect(paused.code).toBe(0);
    await logged("operator.pause_started", { by: "bob" });
    const ready = await readyz();
    expect(ready.status).toBe(200); // a paused operator is healthy: nothing for Kubernetes to restart
    expect(ready.body).toMatchObject({ status: "ok", paused: { by: "bob", comment: "deploying the factory", until: expect.stringMatching(/Z$/) } });
    const until = (ready.body.paused as { until: string }).until;
    expect(Date.parse(until) - Date.now()).toBeGreaterThan(25 * 60_000);
    expect(await metric("reclaim_operator_paused")).toBe(1);

    await appendFile(log, hardLimitLine("u1"));
    const record = await heldRecord("u1", "paused");
    expect(record.decisions.map((d) => d.detail)).toContain(`not acted on (paused): automation paused by bob until ${until}: "deploying the factory"`);
    await operator!.idle();
    expect(rungCallsFor("u1")).toEqual([]);

    const resumed = await runCli(["resume", "--by", "bob", "--state", state]);
    expect(resumed.code).toBe(0);
    await logged("operator.pause_ended");
    expect((await readyz()).body.paused).toBeNull();
    expect(await metric("reclaim_operator_paused")).toBe(0);
    await appendFile(log, hardLimitLine("u1"));
    await operator!.until((list) => list.some((i) => i.target.userId === "u1" && i.rollup === undefined && i.status === "resolved"), "u1 to be helped after resume");
  });
});

/**
 * A control API in front of the factory that holds each `probe` rung call
 * until the test opens the gate, then passes it on: the ladder is then
 * between its first and its second rung exactly when the test says.
 */
async function startGate(upstream: string): Promise<{ url: string; calls: string[]; waiting: () => boolean; open: () => void; close: () => Promise<void> }> {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const calls: string[] = [];
  let held = 0;
  const server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const path = req.url ?? "/";
      if (req.method === "POST" && path.includes("/rungs/")) calls.push(path.split("/").pop()!);
      if (req.method === "POST" && path.endsWith("/rungs/probe")) {
        held++;
        await opened;
      }
      const headers: Record<string, string> = {};
      for (const name of ["authorization", "content-type", "idempotency-key"]) if (typeof req.headers[name] === "string") headers[name] = req.headers[name];
      const body = Buffer.concat(chunks);
      const answer = await fetch(`${upstream}${path}`, { method: req.method ?? "GET", headers, ...(body.length === 0 ? {} : { body }) });
      const text = await answer.text();
      res.writeHead(answer.status, { "Content-Type": answer.headers.get("content-type") ?? "application/json" });
      res.end(text);
    })().catch(() => req.socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    waiting: () => held > 0,
    open,
    close: () =>
      new Promise<void>((resolve) => {
        open();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe("a hold that starts while a ladder runs", () => {
  let gate: Awaited<ReturnType<typeof startGate>> | undefined;
  afterEach(async () => {
    await operator?.close();
    await gate?.close();
    gate = undefined;
  });

  it.each([
    ["a pause", ["pause", "--by", "bob", "--comment", "stop everything"], "operator.pause_started", "automation paused by bob until"],
    ["a silence of the user", ["silence", "add", "--user", "busy", "--by", "bob", "--comment", "stop everything"], "operator.silence_started", "silenced by sil-"],
  ])("%s stops it before its next rung: the rung in flight finishes, the next is not sent, the incident closes as interrupted saying by whom", async (_name, command, seen, says) => {
    factory = await startTestFactory({ cleanup: "legacy", probeTimeoutMs: 200 });
    gate = await startGate(factory.controlUrl);
    const dir = await tempDir("reclaim-op-silence-");
    const log = await emptyLog(dir);
    operator = await startTestOperator({ dir, source: `file:${log}`, control: gate.url, rule: THREE_RUNGS });
    await lockOut("busy", "live"); // live tabs: probe frees nothing, so the ladder goes on to force
    await appendFile(log, hardLimitLine("busy"));
    await eventually(() => gate!.waiting(), 10_000, "the probe to be in flight");

    const held = await runCli([...command, "--state", join(dir, "state")]);
    expect(held.code).toBe(0);
    await logged(seen);
    gate.open(); // the probe reaches the factory and its answer comes back: the ladder's next step would be force
    const [incident] = await operator.until((list) => list.some((i) => i.status === "interrupted"), "the ladder to be stopped");
    await operator.idle();
    const stop = incident!.decisions.find((d) => d.kind === "interrupted")!;
    expect(stop.detail).toContain(says);
    expect(stop.detail).toContain('"stop everything"');
    expect(stop.detail).toMatch(/stopped before its next rung \(force was not sent\)$/);
    expect(incident!.rungs.map((r) => [r.rung, r.outcome, r.attempts])).toEqual([
      ["probe", "ok", 1],
      ["force", "skipped", 0],
    ]);
    expect(incident!.rungs[1]!.error).toMatch(/^not sent: /);
    expect(gate.calls).toEqual(["probe"]); // force and degrade never left the operator
    expect(factory.registry.active("busy")).toBe(20);
    expect(operator.lines.some((l) => l.event === "operator.incident_interrupted" && l.incident === incident!.id)).toBe(true);
  });
});
