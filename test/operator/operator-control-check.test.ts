/**
 * The operator checks the control API and its token at start (and every
 * minute): a wrong token is an ERROR at start and in /readyz, not a surprise
 * at the first lockout (issue 13).
 */
import { afterEach, describe, expect, it } from "vitest";
import { startTestFactory, type TestFactory } from "../support/factory.js";
import { emptyLog, startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
afterEach(async () => {
  await operator?.close();
  await factory?.close();
  operator = factory = undefined;
});

async function readyz(port: number): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

describe("the operator's control API check", () => {
  it("the right token: /readyz says the control API is ok", async () => {
    factory = await startTestFactory();
    const dir = await tempDir();
    operator = await startTestOperator({ dir, source: `file:${await emptyLog(dir)}`, control: factory.controlUrl, controlCheck: {} });
    expect(await readyz(operator.metricsPort)).toMatchObject({ status: "ok", control: { ok: true, kind: "ok" } });
  });

  it("a wrong token: an ERROR at start naming RECLAIM_CONTROL_TOKEN, and /readyz says unauthorized", async () => {
    factory = await startTestFactory();
    const dir = await tempDir();
    operator = await startTestOperator({
      dir,
      source: `file:${await emptyLog(dir)}`,
      control: factory.controlUrl,
      controlToken: "not-the-token",
      controlCheck: {},
    });
    // Said by the time the operator has started, not later.
    const error = operator.lines.find((l) => l.event === "operator.control_check" && l.severity === "ERROR");
    expect(error?.message).toContain("RECLAIM_CONTROL_TOKEN");
    expect(await readyz(operator.metricsPort)).toMatchObject({ control: { ok: false, kind: "unauthorized" } });
    const metrics = await (await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^reclaim_operator_control_api_ok 0$/m);
  });

  it("without the check (the library default), /readyz has no control entry", async () => {
    const dir = await tempDir();
    operator = await startTestOperator({ dir, source: `file:${await emptyLog(dir)}`, control: "http://127.0.0.1:9" });
    expect(await readyz(operator.metricsPort)).not.toHaveProperty("control");
  });
});
