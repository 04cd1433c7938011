/**
 * `reclaim incidents list` finds the users nobody acted on (ADR 12): a
 * rollup record shows how many it lists, `--user` finds it by any user it
 * lists, and `--json` gives its user ids.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Detector } from "../../src/operator/detect/detector.js";
import { Engine } from "../../src/operator/decide/engine.js";
import { GuardState } from "../../src/operator/decide/guards.js";
import { FileIncidentStore } from "../../src/operator/incidents/file-store.js";
import type { Incident } from "../../src/operator/incidents/model.js";
import { close } from "../../src/operator/incidents/record.js";
import type { OperatorLog } from "../../src/operator/log.js";
import { OperatorMetrics } from "../../src/operator/metrics.js";
import { runCli } from "../support/cli.js";
import { hardLimit, rule, T0 } from "../support/rules.js";

const silent: OperatorLog = { debug() {}, info() {}, warn() {}, error() {}, close: () => Promise.resolve() };
let dir: string;
let records: Incident[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-cli-rollup-"));
  const store = new FileIncidentStore({ dir });
  const guards = new GuardState();
  let now = T0;
  const r = rule("lockout", { guards: { maxPerHour: 1 } });
  const engine = new Engine({
    detector: new Detector({ now: () => now }),
    guards,
    store,
    targets: null,
    actor: {
      act(incident) {
        close(incident, "resolved", now, "test");
        guards.closed(incident);
        engine.release(incident);
      },
    },
    clock: { now: () => now },
    metrics: new OperatorMetrics({ defaultMetrics: false }),
    log: silent,
    dryRun: false,
  });
  engine.setRules([r]);
  for (const [n, u] of ["acted", "waiting-1", "waiting-2", "waiting-3"].entries()) {
    now = T0 + n * 1000;
    await engine.handle(hardLimit(u, now));
  }
  await engine.flush({ all: true });
  records = await store.list();
}, 30_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("incidents list and rollup records", () => {
  it("shows a rollup record with how many users it lists and why", async () => {
    const { code, stdout } = await runCli(["incidents", "list", "--dir", dir]);
    expect(code).toBe(0);
    const rollup = records.find((i) => i.rollup !== undefined)!;
    expect(stdout).toMatch(new RegExp(`${rollup.id}\\s+suppressed\\s+high\\s+lockout\\s+\\(3 listed: rate_limit\\)`));
  });

  it("--user finds a user nobody acted on through the rollup record that lists them, and a user's own incident", async () => {
    const rollup = records.find((i) => i.rollup !== undefined)!;
    const own = records.find((i) => i.rollup === undefined)!;
    const waiting = await runCli(["incidents", "list", "--dir", dir, "--user", "waiting-2", "--json"]);
    expect(waiting.code).toBe(0);
    expect(JSON.parse(waiting.stdout)).toEqual([
      expect.objectContaining({ id: rollup.id, rollup: expect.objectContaining({ reason: "rate_limit", keys: 3, userIds: ["waiting-1", "waiting-2", "waiting-3"] }) }),
    ]);
    const acted = await runCli(["incidents", "list", "--dir", dir, "--user", "acted", "--json"]);
    expect((JSON.parse(acted.stdout) as { id: string }[]).map((i) => i.id)).toEqual([own.id]);
    const nobody = await runCli(["incidents", "list", "--dir", dir, "--user", "someone-else"]);
    expect(nobody.stdout).toContain("matching the filter");
  });
});
