/**
 * Property tests against the real control API: whatever the path or body, the
 * answer is a 2xx or a 4xx with a JSON error — never a 5xx, never a crash —
 * and a user id is accepted exactly when the contract's validator accepts it.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ControlError } from "../../src/contract/control.js";
import { isUserId } from "../../src/contract/ids.js";
import { startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";

let factory: TestFactory;
beforeAll(async () => {
  factory = await startTestFactory({ probeTimeoutMs: 50 });
  await factory.open("alice");
});
afterAll(async () => factory.close());

async function call(method: string, path: string, body?: string, type = "application/json"): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${factory.controlUrl}${path}`, {
    method,
    headers: { Authorization: `Bearer ${TEST_CONTROL_TOKEN}`, ...(body === undefined ? {} : { "Content-Type": type }) },
    ...(body === undefined ? {} : { body }),
  });
  return { status: res.status, json: await res.json() };
}

const userIds = fc.oneof(
  fc.string({ minLength: 1, maxLength: 140 }),
  fc.stringMatching(/^[A-Za-z0-9._:@-]{1,128}$/),
  fc.constantFrom(".", "..", "...", "a/b", "%2e%2e", "x".repeat(129), "é", "a b", "\u0000"),
);

describe("control API under arbitrary input", () => {
  it.each(["null", "[]", "3", '"probe"'])("a rung body that is not an object (%s) is invalid_params", async (body) => {
    const { status, json } = await call("POST", "/v1/users/bob/rungs/probe", body);
    expect(status).toBe(400);
    expect((json as ControlError).error.code).toBe("invalid_params");
  });

  it("GET /v1/users/{id}: 200 exactly for valid ids, else a 4xx JSON error", async () => {
    await fc.assert(
      fc.asyncProperty(userIds, async (id) => {
        const { status, json } = await call("GET", `/v1/users/${encodeURIComponent(id)}`);
        if (isUserId(id)) {
          expect(status).toBe(200);
        } else {
          expect(status).toBeGreaterThanOrEqual(400);
          expect(status).toBeLessThan(500);
          expect(ControlError.safeParse(json).success).toBe(true);
        }
      }),
      { numRuns: 300, seed: 20261126 },
    );
  });

  it("POST a rung with any JSON body: 200 or 400 invalid_params/invalid_json, never 5xx", async () => {
    const rung = fc.constantFrom("conservative", "probe", "force", "degrade");
    const body = fc.oneof(
      fc.json(),
      fc.record({ max: fc.anything(), freeSlots: fc.anything() }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
      fc.record({ limit: fc.integer(), ttlMs: fc.integer(), queueTimeoutMs: fc.integer() }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
      fc.record({ timeoutMs: fc.integer({ min: -5, max: 100 }) }, { requiredKeys: [] }).map((v) => JSON.stringify(v)),
      fc.string(),
    );
    await fc.assert(
      fc.asyncProperty(rung, body, async (r, b) => {
        const { status, json } = await call("POST", `/v1/users/bob/rungs/${r}`, b);
        expect([200, 400]).toContain(status);
        if (status === 400) expect((json as ControlError).error.code).toMatch(/^invalid_(params|json)$/);
      }),
      { numRuns: 300, seed: 20261126 },
    );
    // The one real client of the test is untouched: nothing above acted on alice.
    expect(factory.registry.active("alice")).toBe(1);
  });
});
