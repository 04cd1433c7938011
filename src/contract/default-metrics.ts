/**
 * Node's default process metrics (prom-client's `collectDefaultMetrics`), as
 * both the factory and the operator serve them: on the component's own
 * Registry, under its prefix, and clean for `promtool check metrics`.
 *
 * prom-client 15 serves three gauges whose names end in `_total`
 * (`nodejs_active_handles_total`, `nodejs_active_requests_total`,
 * `nodejs_active_resources_total`); Prometheus keeps that suffix for counters
 * and promtool warns on each (prometheus/client_js#283). Their plain names are
 * already taken by prom-client's per-`type` gauges, so the unlabelled totals
 * are served as `…_all` instead, read from prom-client's own gauges (no copy of
 * its collection code). `sum without (type) (nodejs_active_handles)` gives the
 * same number while there is at least one handle, but no series at all at 0:
 * the `…_all` gauges keep the 0.
 */
import { Gauge, collectDefaultMetrics, type Registry } from "prom-client";

/** prom-client's `_total` gauges (without prefix) → the name each is served under instead, and its help. */
export const RENAMED_DEFAULT_METRICS: Readonly<Record<string, { name: string; help: string }>> = {
  nodejs_active_handles_total: {
    name: "nodejs_active_handles_all",
    help: "Active libuv handles of every type: sum without (type) of nodejs_active_handles, also present at 0 (prom-client's nodejs_active_handles_total).",
  },
  nodejs_active_requests_total: {
    name: "nodejs_active_requests_all",
    help: "Active libuv requests of every type: sum without (type) of nodejs_active_requests, also present at 0 (prom-client's nodejs_active_requests_total).",
  },
  nodejs_active_resources_total: {
    name: "nodejs_active_resources_all",
    help: "Resources keeping the event loop alive, of every type: sum without (type) of nodejs_active_resources, also present at 0 (prom-client's nodejs_active_resources_total).",
  },
};

/**
 * Registers prom-client's default metrics on `registry`, every name prefixed
 * with `prefix` (e.g. `reclaim_factory_`), with the gauges of
 * `RENAMED_DEFAULT_METRICS` served under their new names. A renamed gauge this
 * Node or prom-client does not have is skipped, as prom-client itself does.
 */
export function registerDefaultMetrics(registry: Registry, options: { prefix: string }): void {
  const { prefix } = options;
  collectDefaultMetrics({ register: registry, prefix });
  for (const [from, to] of Object.entries(RENAMED_DEFAULT_METRICS)) {
    const original = registry.getSingleMetric(prefix + from);
    // A counter by that name would be correct as it is: only a gauge is renamed.
    if (!(original instanceof Gauge)) continue;
    registry.removeSingleMetric(prefix + from);
    new Gauge({
      name: prefix + to.name,
      help: to.help,
      registers: [registry],
      async collect() {
        // prom-client's gauge, no longer on any registry, still reads the live value when asked.
        const { values } = await original.get();
        const value = values[0]?.value;
        if (value !== undefined) this.set(value);
      },
    });
  }
}
