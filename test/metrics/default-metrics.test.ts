/**
 * The default Node metrics both halves serve: no gauge named `…_total`, and
 * the totals prom-client served under those names still there as `…_all`,
 * equal to the sum of their per-type gauge, and present at 0.
 */
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { RENAMED_DEFAULT_METRICS, registerDefaultMetrics } from "../../src/contract/default-metrics.js";
import { FactoryMetrics } from "../../src/factory/metrics.js";
import { OperatorMetrics } from "../../src/operator/metrics.js";

const sources = { managers: () => 0, connections: () => 0, usersAtLimit: () => 0, queueLength: () => 0 };

describe("registerDefaultMetrics", () => {
  it("serves no gauge whose name ends in _total", async () => {
    const registry = new Registry();
    registerDefaultMetrics(registry, { prefix: "t_" });
    const metrics = await registry.getMetricsAsJSON();
    // prom-client's types declare `type` a numeric enum; at run time it is the exposition's word ("gauge").
    expect(metrics.filter((m) => String(m.type) === "gauge" && m.name.endsWith("_total")).map((m) => m.name)).toEqual([]);
    expect(metrics.map((m) => m.name)).toContain("t_process_cpu_seconds_total"); // a counter keeps its suffix
  });

  it.each(Object.entries(RENAMED_DEFAULT_METRICS))("%s is served as its _all gauge: the sum over type, present at 0", async (from, to) => {
    const registry = new Registry();
    registerDefaultMetrics(registry, { prefix: "t_" });
    const metrics = await registry.getMetricsAsJSON();
    const byName = new Map(metrics.map((m) => [m.name, m]));
    expect(byName.has(`t_${from}`)).toBe(false);
    const all = byName.get(`t_${to.name}`);
    expect(all).toMatchObject({ help: to.help });
    expect(String(all!.type)).toBe("gauge");
    expect(all!.values).toHaveLength(1);
    expect(all!.values[0]!.labels).toEqual({});
    const perType = byName.get(`t_${from.replace(/_total$/, "")}`)!;
    expect(all!.values[0]!.value).toBe(perType.values.reduce((sum, v) => sum + v.value, 0));
  });

  it("is what the factory and the operator serve", async () => {
    const factory = (await new FactoryMetrics(sources).registry.getMetricsAsJSON()).map((m) => m.name);
    const operator = (await new OperatorMetrics().registry.getMetricsAsJSON()).map((m) => m.name);
    for (const to of Object.values(RENAMED_DEFAULT_METRICS)) {
      expect(factory).toContain(`reclaim_factory_${to.name}`);
      expect(operator).toContain(`reclaim_operator_${to.name}`);
    }
    for (const from of Object.keys(RENAMED_DEFAULT_METRICS)) {
      expect(factory).not.toContain(`reclaim_factory_${from}`);
      expect(operator).not.toContain(`reclaim_operator_${from}`);
    }
  });
});
