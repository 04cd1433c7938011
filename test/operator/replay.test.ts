import { describe, expect, it } from "vitest";
import { replay } from "../../src/operator/replay.js";
import { hardLimit, rule, T0 } from "../support/rules.js";

describe("replay", () => {
  const log = [
    hardLimit("u1", T0),
    { ...hardLimit("u1", T0 + 1000), event: "factory.error", fields: { event: "factory.error", userId: "u1", pod: "factory-0", limit: 20 } },
    hardLimit("u2", T0 + 2000),
    hardLimit("u1", T0 + 3 * 60_000),
    hardLimit("u2", T0 + 2000), // the same entry again
    hardLimit("u1", T0 + 20 * 60_000),
    hardLimit("u2", T0 + 2000), // and again, beyond maxAge (15 min) of the newest: stale, whatever it repeats
  ];

  it("reports which incidents would open, when, for which key, which rungs, and what guards suppressed", async () => {
    const report = await replay([rule("lockout", { guards: { cooldown: "10m" } })], log);
    expect(report.incidents.map((i) => [i.at, i.key.userId, i.action, i.rungs.join(">"), i.suppressed])).toEqual([
      ["2026-11-26T12:00:00.000Z", "u1", "act", "probe>force", { cooldown: 2 }],
      ["2026-11-26T12:00:02.000Z", "u2", "act", "probe>force", {}],
      ["2026-11-26T12:20:00.000Z", "u1", "act", "probe>force", {}],
    ]);
    expect(report.dropped.duplicate).toBe(1);
    expect(report.dropped.stale).toBe(1);
  });

  it("gives the same answer every run", async () => {
    const a = await replay([rule("lockout")], log);
    const b = await replay([rule("lockout")], log);
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
  });
});
