/**
 * `metricsPort`: /metrics, /healthz and /readyz on a port of their own, so
 * Prometheus and probes need no access to the control port (issue 17's
 * NetworkPolicy admits only the operator there).
 */
import { afterEach, expect, it } from "vitest";
import { startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";

let factory: TestFactory | undefined;
afterEach(async () => {
  await factory?.close();
  factory = undefined;
});

it("serves metrics and health on the metrics port, and nothing of the control API there", async () => {
  factory = await startTestFactory({ metricsPort: 0 });
  expect(factory.metricsPort).not.toBeNull();
  const base = `http://127.0.0.1:${factory.metricsPort}`;
  const metrics = await fetch(`${base}/metrics`);
  expect(metrics.status).toBe(200);
  expect(await metrics.text()).toContain("reclaim_factory_admissions_total");
  expect((await fetch(`${base}/healthz`)).status).toBe(200);
  expect(await (await fetch(`${base}/readyz`)).json()).toEqual({ status: "ready" });
  // No rung, no user, even with the token.
  const rung = await fetch(`${base}/v1/users/alice/rungs/force`, { method: "POST", headers: { Authorization: `Bearer ${TEST_CONTROL_TOKEN}` } });
  expect(rung.status).toBe(405);
  const user = await fetch(`${base}/v1/users/alice`, { headers: { Authorization: `Bearer ${TEST_CONTROL_TOKEN}` } });
  expect(user.status).toBe(404);
  expect(await user.json()).toMatchObject({ error: { code: "not_found" } });
  // The started line names the port.
  expect(factory.events("factory.started")[0]).toMatchObject({ metricsPort: factory.metricsPort });
});

it("says not ready while the factory stops", async () => {
  factory = await startTestFactory({ metricsPort: 0, drainMs: 0 });
  const base = `http://127.0.0.1:${factory.metricsPort}`;
  const client = await factory.open("alice");
  // Hold the close open: the client does not answer the close frame until the grace ends.
  client.ws.pause();
  const stopping = factory.shutdown();
  // The client holds the drain open for the shutdown grace (5 s): the port is still up, and says not ready.
  const ready = await fetch(`${base}/readyz`);
  expect(ready.status).toBe(503);
  expect(await ready.json()).toEqual({ status: "not_ready" });
  await stopping;
});

it("is off by default: metrics stay on the control port only", async () => {
  factory = await startTestFactory({});
  expect(factory.metricsPort).toBeNull();
  expect((await fetch(`${factory.controlUrl}/metrics`)).status).toBe(200);
});

it("a metrics port that is taken fails the start, naming it", async () => {
  const first = await startTestFactory({ metricsPort: 0 });
  try {
    await expect(startTestFactory({ metricsPort: first.metricsPort! })).rejects.toMatchObject({ code: "ERR_RECLAIM_LISTEN", listener: "metrics" });
  } finally {
    await first.close();
  }
});
