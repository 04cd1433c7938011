/**
 * The ladder runner against a real factory: what is on record before the
 * first rung is called, and the "before" snapshot.
 */
import { afterEach, describe, expect, it } from "vitest";
import { Writable } from "node:stream";
import { systemClock } from "../../../src/contract/clock.js";
import type { ChatClient } from "../../../src/demo/clients.js";
import { ControlClient } from "../../../src/operator/act/control-client.js";
import { GuardState } from "../../../src/operator/decide/guards.js";
import type { Incident } from "../../../src/operator/incidents/model.js";
import { LadderRunner } from "../../../src/operator/act/ladder.js";
import { createOperatorLog } from "../../../src/operator/log.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import { startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../../support/factory.js";
import { RecordingStore, buildIncident } from "../../support/incidents.js";
import { rule } from "../../support/rules.js";

let factory: TestFactory | undefined;
const tabs: ChatClient[] = [];
afterEach(async () => {
  for (const tab of tabs.splice(0)) tab.destroy();
  await factory?.close();
  factory = undefined;
});

/** Calls `onRung` as each rung call is sent. */
class WatchedClient extends ControlClient {
  onRung: () => void = () => undefined;
  override runRung(...args: Parameters<ControlClient["runRung"]>): ReturnType<ControlClient["runRung"]> {
    this.onRung();
    return super.runRung(...args);
  }
}

function runner(store: RecordingStore): LadderRunner {
  const sink = new Writable({ write: (_c, _e, done) => done() });
  return new LadderRunner({ store, guards: new GuardState(), clock: systemClock, metrics: new OperatorMetrics({ defaultMetrics: false }), log: createOperatorLog({ streams: [sink] }) });
}

describe("LadderRunner", () => {
  it("writes an opened incident once before its first rung: acting, the rung pending, and the admission taken before the rung acts", async () => {
    factory = await startTestFactory({ limit: 2 });
    tabs.push(await factory.open("carol", "no-pong"), await factory.open("carol", "no-pong"));
    const store = new RecordingStore();
    const control = new WatchedClient(factory.controlUrl, TEST_CONTROL_TOKEN);
    const incident = buildIncident({ status: "open", userId: "carol", pod: null, rule: "lockout" });
    let atCall: { saved: Incident[]; before: Incident["before"] } | null = null;
    control.onRung = () => (atCall ??= { saved: structuredClone(store.saved), before: structuredClone(incident.before) });
    const lockout = rule("lockout", { ladder: [{ rung: "probe", params: { timeoutMs: 100 } }], verify: { settle: "1ms", timeout: "2s" } });

    const done = await runner(store).run(incident, lockout.rule, { control, pod: null, namespace: null });

    expect(done.status).toBe("resolved");
    expect(atCall).not.toBeNull();
    const { saved, before } = atCall!;
    // One write before the call, and it already says everything the call depends on.
    expect(saved).toHaveLength(1);
    expect(saved[0]).toMatchObject({ status: "remediating", rungs: [{ rung: "probe", outcome: "pending" }] });
    expect(saved[0]!.decisions.map((d) => d.kind)).toEqual(expect.arrayContaining(["acting", "rung_started"]));
    // The snapshot was taken before the probe evicted the two zombies, and is on the final record.
    expect(before).toMatchObject({ userId: "carol", admit: false, active: 2, effectiveLimit: 2 });
    expect(done.before).toMatchObject({ admit: false, active: 2 });
    expect(store.saved.at(-1)!.before).toMatchObject({ admit: false, active: 2 });
    expect(done.rungs[0]!.result!.removed).toHaveLength(2);
  }, 20_000);

  it("records no snapshot when the control API cannot answer, and the rung's failure says why", async () => {
    const store = new RecordingStore();
    // A port nothing listens on: the snapshot fails (recorded as null), then the rung fails after its attempts.
    const control = new WatchedClient("http://127.0.0.1:1", TEST_CONTROL_TOKEN);
    const incident = buildIncident({ status: "open", userId: "dave", pod: null, rule: "lockout" });
    const lockout = rule("lockout", { ladder: [{ rung: "probe", params: { timeoutMs: 100 } }] });
    const ladder = new LadderRunner(
      { store, guards: new GuardState(), clock: systemClock, metrics: new OperatorMetrics({ defaultMetrics: false }), log: createOperatorLog({ streams: [new Writable({ write: (_c, _e, d) => d() })] }) },
      { backoffMs: [1] },
    );
    const done = await ladder.run(incident, lockout.rule, { control, pod: null, namespace: null });
    expect(done.status).toBe("failed");
    expect(done.before).toBeNull();
    expect(done.rungs[0]).toMatchObject({ rung: "probe", outcome: "error" });
    expect(store.saved[0]).toMatchObject({ status: "remediating", rungs: [{ rung: "probe", outcome: "pending" }] });
  }, 20_000);
});
