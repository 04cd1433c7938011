/**
 * The model factory (model-factory.mjs) speaks the factory's control API as
 * the contract defines it: every answer parses with the contract's schemas
 * through the operator's own ControlClient, rungs do what the factory's rungs
 * do to counted managers, and idempotency keys answer the first run.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "./clock.js";
import { ControlClient } from "../../src/operator/act/control-client.js";
import { startModelFactory, type ModelFactory } from "./model-factory.mjs";

const TOKEN = "model-token-0123456789";
let model: ModelFactory | undefined;
afterEach(async () => {
  await model?.close();
  model = undefined;
});

describe("the model factory", () => {
  it("answers the control API as the contract says, through the real client", async () => {
    const clock = new ManualClock();
    model = await startModelFactory({ tokens: { [TOKEN]: "op-a" }, now: () => clock.now(), limit: 3 });
    const client = new ControlClient(model.url, TOKEN);
    model.connect("u", 1, 2);
    expect(model.attempt("u")).toBe(false);
    expect((await client.admission("u", 1000)).value).toMatchObject({ admit: false, active: 3, effectiveLimit: 3, lastRefusedAt: new Date(clock.now()).toISOString(), refusals: 1 });
    expect((await client.usersAtLimit(1000)).value.users).toMatchObject([{ userId: "u", active: 3, atLimitSince: new Date(clock.now()).toISOString() }]);
    expect((await client.user("u", 1000)).value.managers).toHaveLength(3);
    const probe = await client.runRung("u", "probe", {}, 1000, "inc/0");
    expect(probe.value).toMatchObject({ rung: "probe", removed: [{ reason: "no_pong" }, { reason: "no_pong" }], remaining: 1, admit: true });
    expect((await client.runRung("u", "probe", {}, 1000, "inc/0")).replayed).toBe(true);
    model.connect("u", 2);
    expect((await client.runRung("u", "force", { max: 2, freeSlots: 1 }, 1000, "inc/1")).value).toMatchObject({ removed: [{ reason: "evicted" }], remaining: 2 });
    expect(model.calls.map((c) => [c.caller, c.rung, c.replayed])).toEqual([
      ["op-a", "probe", false],
      ["op-a", "probe", true],
      ["op-a", "force", false],
    ]);
    await expect(new ControlClient(model.url, "wrong-token-0123456789").admission("u", 1000)).rejects.toMatchObject({ status: 401 });
  });

  it("misbehaves on request: 500, a hang cut by the caller's deadline, then answers again once healed", async () => {
    const clock = new ManualClock();
    model = await startModelFactory({ tokens: { [TOKEN]: "op-a" }, now: () => clock.now() });
    const client = new ControlClient(model.url, TOKEN);
    model.fault("500", (_m, path) => path.endsWith("/admission"), 1);
    await expect(client.admission("u", 1000)).rejects.toMatchObject({ status: 500 });
    expect((await client.admission("u", 1000)).value.admit).toBe(true);
    model.fault("hang");
    await expect(client.admission("u", 50)).rejects.toMatchObject({ kind: "timeout" });
    model.heal();
    expect((await client.admission("u", 1000)).value.admit).toBe(true);
  });
});
