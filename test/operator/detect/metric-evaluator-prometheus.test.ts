/**
 * End to end, with nothing faked: the real Prometheus scrapes a real factory
 * (legacy cleanup, as in the outage) where one user holds their limit in
 * zombie connections (`no-pong` clients) and another does not. The evaluator,
 * on its own timers, sees `reclaim_factory_users_at_limit` hold for `for`,
 * asks the factory's control API who is at the limit, and triggers for
 * exactly that user; once the zombies are gone it stops.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { systemClock } from "../../../src/contract/clock.js";
import { ControlClient } from "../../../src/operator/act/control-client.js";
import type { Trigger } from "../../../src/operator/detect/detector.js";
import { MetricEvaluator, type MetricEvaluationError } from "../../../src/operator/detect/metric-evaluator.js";
import { PrometheusClient } from "../../../src/operator/sources/prometheus.js";
import { StaticTarget } from "../../../src/operator/act/target.js";
import type { ChatClient } from "../../../src/demo/clients.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../../support/factory.js";
import { describeWithPrometheus, startTestPrometheus, type TestPrometheus } from "../../support/prometheus.js";
import { rule } from "../../support/rules.js";

const STUCK = "105945141827451681156";
const FINE = "bob";
const LIMIT = 3;

describeWithPrometheus("metric rule end to end: real Prometheus, real factory", () => {
  let factory: TestFactory;
  let prometheus: TestPrometheus;
  const zombies: ChatClient[] = [];

  beforeAll(async () => {
    factory = await startTestFactory({ limit: LIMIT, cleanup: "legacy" }, { pod: "factory-a" });
    for (let i = 0; i < LIMIT; i++) zombies.push(await factory.open(STUCK, "no-pong"));
    await factory.attempt(STUCK); // refused: locked out
    await factory.open(FINE);
    prometheus = await startTestPrometheus([{ address: new URL(factory.controlUrl).host, labels: { pod: "factory-a" } }]);
  });

  afterAll(async () => {
    await prometheus?.close();
    await factory?.close();
  });

  it("fires after `for` for exactly the user at the limit, through the factory's control API, and stops when it is over", async () => {
    const triggers: Trigger[] = [];
    const errors: MetricEvaluationError[] = [];
    const usersAtLimit = rule("factory-users-at-limit", {
      key: ["userId", "pod"],
      trigger: {
        metric: { query: "max by (pod) (reclaim_factory_users_at_limit)", op: ">", threshold: 0, for: "1s", interval: "250ms" },
      },
    });
    const evaluator = new MetricEvaluator({
      rules: [usersAtLimit],
      prometheus: new PrometheusClient(prometheus.url, { timeoutMs: 2000 }),
      targets: new StaticTarget(new ControlClient(factory.controlUrl, TEST_CONTROL_TOKEN)),
      clock: systemClock,
      onTrigger: (t) => triggers.push(t),
      onError: (e) => errors.push(e),
    });
    const gauge = async (state: "pending" | "firing"): Promise<number> =>
      (await evaluator.metrics.series.get()).values.find((v) => v.labels.rule === "factory-users-at-limit" && v.labels.state === state)?.value ?? 0;

    evaluator.start();
    try {
      // Prometheus's first sample lands a few seconds after it starts; then the series is pending for `for`.
      await eventually(() => triggers.length > 0, 25_000, "a trigger from the metric rule");
      expect(await gauge("firing")).toBe(1);
      for (const trigger of triggers) {
        expect(trigger).toMatchObject({ userId: STUCK, pod: "factory-a", key: { userId: STUCK, pod: "factory-a" } });
        expect(trigger.entries[0]).toMatchObject({
          event: "reclaim.metric",
          message: "max by (pod) (reclaim_factory_users_at_limit) = 1 > 0 for 1s",
          // managers and limit come from the factory's control API (GET /v1/users?atLimit=true).
          fields: { pod: "factory-a", value: 1, managers: LIMIT, limit: LIMIT },
        });
      }

      // The zombies go away: the gauge drops, Prometheus scrapes it, the series stops holding.
      for (const z of zombies) z.destroy();
      await eventually(async () => (await new ControlClient(factory.controlUrl, TEST_CONTROL_TOKEN).usersAtLimit(2000)).value.users.length === 0, 5000, "no user at the limit");
      await eventually(async () => (await gauge("firing")) === 0 && (await gauge("pending")) === 0, 10_000, "the series to stop holding");
      const settled = triggers.length;
      // A few more evaluations: no more triggers.
      const queries = async (): Promise<number> =>
        (await evaluator.metrics.queries.get()).values.find((v) => v.labels.result === "ok")?.value ?? 0;
      const seen = await queries();
      await eventually(async () => (await queries()) >= seen + 3, 5000, "three more evaluations");
      expect(triggers.length).toBe(settled);
      expect(errors).toEqual([]);
    } finally {
      await evaluator.stop();
    }
  });
});
