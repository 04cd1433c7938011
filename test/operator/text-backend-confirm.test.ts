/**
 * The check before the first rung of a rule that takes its key from text
 * (ADR 9): the ladder asks the real factory whether the user is refused, and
 * does nothing disruptive unless it says so — an admitted user, a factory
 * that does not answer in time, and a term that ends mid-question included.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/contract/clock.js";
import type { ChatClient } from "../../src/demo/clients.js";
import { ControlClient } from "../../src/operator/act/control-client.js";
import { LadderRunner, type LadderOptions } from "../../src/operator/act/ladder.js";
import { GuardState } from "../../src/operator/decide/guards.js";
import { createOperatorLog } from "../../src/operator/log.js";
import { OperatorMetrics } from "../../src/operator/metrics.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";
import { RecordingStore, buildIncident } from "../support/incidents.js";
import { rule } from "../support/rules.js";

let factory: TestFactory | undefined;
let hanging: Server | undefined;
const tabs: ChatClient[] = [];
afterEach(async () => {
  for (const tab of tabs.splice(0)) tab.destroy();
  await factory?.close();
  factory = undefined;
  hanging?.closeAllConnections();
  await new Promise((r) => (hanging === undefined ? r(undefined) : hanging.close(r)));
  hanging = undefined;
});

/** Records the control API calls in the order they are made. */
class WatchedClient extends ControlClient {
  readonly calls: string[] = [];
  override admission(...args: Parameters<ControlClient["admission"]>): ReturnType<ControlClient["admission"]> {
    this.calls.push("admission");
    return super.admission(...args);
  }
  override runRung(...args: Parameters<ControlClient["runRung"]>): ReturnType<ControlClient["runRung"]> {
    this.calls.push(`rung:${args[1]}`);
    return super.runRung(...args);
  }
}

/** A rule that takes the user from text, with a short verification. */
const TEXT_RULE = rule("text-lockout", {
  trigger: { log: { text: { pattern: "^HARD LIMIT: User (?P<userId>[a-z0-9]{1,64}) still over limit after cleanup.*$", trust: { "resource.container_name": "chat-backend" } } } },
  ladder: [{ rung: "probe", params: { timeoutMs: 100 } }, { rung: "force", params: { max: 1 } }],
  verify: { settle: "1ms", timeout: "2s" },
}).rule;

function runner(store: RecordingStore, metrics: OperatorMetrics, options: LadderOptions = {}): LadderRunner {
  const sink = new Writable({ write: (_c, _e, done) => done() });
  return new LadderRunner({ store, guards: new GuardState(), clock: systemClock, metrics, log: createOperatorLog({ streams: [sink] }) }, { backoffMs: [1], ...options });
}

/** A server that takes requests and never answers them; `requests` counts them. */
async function hangingServer(): Promise<{ url: string; requests: IncomingMessage[] }> {
  const requests: IncomingMessage[] = [];
  hanging = createServer((req) => requests.push(req));
  await new Promise<void>((r) => hanging!.listen(0, "127.0.0.1", r));
  const address = hanging.address() as { port: number };
  return { url: `http://127.0.0.1:${address.port}`, requests };
}

async function suppressedCount(metrics: OperatorMetrics): Promise<number> {
  const values = (await metrics.incidents.get()).values;
  return values.find((v) => v.labels.status === "suppressed")?.value ?? 0;
}

describe("a rule that takes the user from text: the factory is asked before the first rung", () => {
  it("a user the factory refuses (zombie tabs at the limit): confirmed, then the ladder runs as usual and resolves", async () => {
    factory = await startTestFactory({ limit: 3, probeTimeoutMs: 200 });
    for (let i = 0; i < 3; i++) tabs.push(await factory.open("carol", "no-pong"));
    const store = new RecordingStore();
    const control = new WatchedClient(factory.controlUrl, TEST_CONTROL_TOKEN);
    const incident = buildIncident({ status: "open", userId: "carol", pod: null, rule: "text-lockout" });

    const done = await runner(store, new OperatorMetrics({ defaultMetrics: false })).run(incident, TEXT_RULE, { control, pod: null, namespace: null });

    expect(done.status).toBe("resolved");
    // One question first; the answer is the "before" snapshot, so no second admission call before the rung.
    expect(control.calls.slice(0, 2)).toEqual(["admission", "rung:probe"]);
    expect(done.before).toMatchObject({ userId: "carol", admit: false, active: 3, effectiveLimit: 3 });
    expect(done.decisions.map((d) => d.detail)).toContainEqual(expect.stringContaining("the factory confirms user carol is refused now (3/3, admit=false)"));
    // The first record written already carries the confirmation, before the rung is called.
    expect(store.saved[0]).toMatchObject({ status: "remediating", before: { admit: false }, rungs: [{ rung: "probe", outcome: "pending" }] });
    expect(done.suppressed).toEqual({});
  }, 20_000);

  it("a user the factory admits: closed suppressed (not_confirmed), nothing but the one read sent", async () => {
    factory = await startTestFactory({ limit: 3 });
    tabs.push(await factory.open("dave")); // 1 of 3: dave can connect
    const store = new RecordingStore();
    const metrics = new OperatorMetrics({ defaultMetrics: false });
    const control = new WatchedClient(factory.controlUrl, TEST_CONTROL_TOKEN);
    const incident = buildIncident({ status: "open", userId: "dave", pod: null, rule: "text-lockout" });

    const done = await runner(store, metrics).run(incident, TEXT_RULE, { control, pod: null, namespace: null });

    expect(control.calls).toEqual(["admission"]);
    expect(done).toMatchObject({ status: "suppressed", rungs: [], suppressed: { not_confirmed: { count: 1 } } });
    expect(done.closedAt).not.toBeNull();
    expect(done.decisions.at(-2)!).toMatchObject({ kind: "suppressed", detail: "not acted on (not_confirmed): the factory admits user dave now (1/3, admit=true)" });
    expect(done.decisions.at(-1)!.detail).toContain("takes the user from log text");
    expect(store.saved).toHaveLength(1); // one write: the closed record
    expect(store.saved[0]!.status).toBe("suppressed");
    expect(await suppressedCount(metrics)).toBe(1);
    // The factory saw no rung: dave's tab is still there.
    expect((await factory.control("GET", "/v1/users/dave")).body).toMatchObject({ managers: [expect.anything()] });
  }, 20_000);

  it("a factory that cannot be reached: not confirmed, nothing done, and the record says it could not ask", async () => {
    const store = new RecordingStore();
    const control = new WatchedClient("http://127.0.0.1:1", TEST_CONTROL_TOKEN);
    const incident = buildIncident({ status: "open", userId: "erin", pod: null, rule: "text-lockout" });
    const done = await runner(store, new OperatorMetrics({ defaultMetrics: false })).run(incident, TEXT_RULE, { control, pod: null, namespace: null });
    expect(control.calls.filter((c) => c.startsWith("rung:"))).toEqual([]);
    expect(done).toMatchObject({ status: "suppressed", rungs: [], suppressed: { not_confirmed: { count: 1 } } });
    expect(done.decisions.at(-2)!.detail).toMatch(/^not acted on \(not_confirmed\): the factory did not say whether user erin is refused \(/);
  }, 20_000);

  it("a factory that does not answer within confirmTimeoutMs: not confirmed, nothing done", async () => {
    const { url, requests } = await hangingServer();
    const store = new RecordingStore();
    const control = new WatchedClient(url, TEST_CONTROL_TOKEN);
    const incident = buildIncident({ status: "open", userId: "frank", pod: null, rule: "text-lockout" });
    const done = await runner(store, new OperatorMetrics({ defaultMetrics: false }), { confirmTimeoutMs: 150 }).run(incident, TEXT_RULE, { control, pod: null, namespace: null });
    expect(requests.map((r) => r.url)).toEqual(["/v1/users/frank/admission"]);
    expect(control.calls).toEqual(["admission"]);
    expect(done).toMatchObject({ status: "suppressed", rungs: [] });
    expect(done.decisions.at(-2)!.detail).toMatch(/the factory did not say whether user frank is refused/);
  }, 20_000);

  it("the term ends while the factory is being asked: nothing written, the incident stays open for the next term to ask again", async () => {
    const { url, requests } = await hangingServer();
    const store = new RecordingStore();
    const control = new WatchedClient(url, TEST_CONTROL_TOKEN);
    const incident = buildIncident({ status: "open", userId: "gina", pod: null, rule: "text-lockout" });
    const term = new AbortController();
    const running = runner(store, new OperatorMetrics({ defaultMetrics: false }), { confirmTimeoutMs: 60_000 }).run(incident, TEXT_RULE, { control, pod: null, namespace: null }, term.signal);
    await eventually(() => requests.length === 1, 5000, "the admission request");
    term.abort();
    const done = await running;
    expect(done.status).toBe("open");
    expect(done.rungs).toEqual([]);
    expect(store.saved).toEqual([]);
    expect(control.calls).toEqual(["admission"]);
  }, 20_000);

  it("a rule that takes the user from the factory's structured fields is not asked first (unchanged)", async () => {
    factory = await startTestFactory({ limit: 2 });
    tabs.push(await factory.open("hank", "no-pong"), await factory.open("hank", "no-pong"));
    const control = new WatchedClient(factory.controlUrl, TEST_CONTROL_TOKEN);
    const incident = buildIncident({ status: "open", userId: "hank", pod: null, rule: "lockout" });
    const structured = rule("lockout", { ladder: [{ rung: "probe", params: { timeoutMs: 100 } }], verify: { settle: "1ms", timeout: "2s" } }).rule;
    const done = await runner(new RecordingStore(), new OperatorMetrics({ defaultMetrics: false })).run(incident, structured, { control, pod: null, namespace: null });
    expect(done.status).toBe("resolved");
    expect(done.decisions.map((d) => d.detail).join("\n")).not.toContain("confirms");
  }, 20_000);
});
