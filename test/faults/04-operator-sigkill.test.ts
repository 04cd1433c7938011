/**
 * Fault matrix, row 4: the operator (`bin/reclaim operator`, a real process)
 * is killed with SIGKILL between persisting an incident and running its rung,
 * and between the rung and persisting its result.
 *
 * The test-only failpoint `RECLAIM_FAILPOINT` (src/operator/failpoint.ts)
 * makes the operator SIGKILL itself at exactly that step. The restarted
 * operator (without the failpoint) must finish the same incident — not lose
 * it, not open a second one — and the factory must have run the rung exactly
 * once: the resumed rung carries the same idempotency key, so a factory that
 * already ran it answers that run's result (ADR 13).
 */
import { join } from "node:path";
import { writeFile, mkdir } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import { FileIncidentStore } from "../../src/operator/incidents/file-store.js";
import type { Incident } from "../../src/operator/incidents/model.js";
import { killAll, type RunningCli, startCli } from "../support/cli.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";
import { faultRule, lockOut, rungsRun } from "../support/fault-matrix.js";
import { tempDir } from "../support/operator.js";

const SLOTS = 3;

let factory: TestFactory | undefined;
const processes: RunningCli[] = [];
afterEach(async () => {
  await killAll(processes);
  await factory?.close();
  factory = undefined;
});

async function setUp(): Promise<{ f: TestFactory; start: (failpoint?: string) => Promise<RunningCli>; list: () => Promise<Incident[]> }> {
  const dir = await tempDir("reclaim-fault4-");
  const logFile = join(dir, "factory.log");
  const f = (factory = await startTestFactory({ cleanup: "legacy", limit: SLOTS, probeTimeoutMs: 200, logFile, logLevel: "info" }));
  await mkdir(join(dir, "rules"));
  await writeFile(join(dir, "rules", "rules.yaml"), faultRule());
  const args = ["operator", "--rules", join(dir, "rules"), "--source", `file:${logFile}`, "--incidents", join(dir, "incidents"), "--state", join(dir, "state"), "--control", f.controlUrl, "--metrics-port", "0"];
  const store = new FileIncidentStore({ dir: join(dir, "incidents") });
  return {
    f,
    start: async (failpoint?: string) => {
      const p = startCli(args, { RECLAIM_CONTROL_TOKEN: TEST_CONTROL_TOKEN, ...(failpoint === undefined ? {} : { RECLAIM_FAILPOINT: failpoint }) });
      processes.push(p);
      await p.waitFor((l) => l.event === "operator.started" && l.failpoint === undefined);
      if (failpoint !== undefined) await p.waitFor((l) => l.failpoint === failpoint && String(l.message).includes("ARMED"));
      return p;
    },
    list: () => store.list().catch(() => []),
  };
}

describe("fault matrix, row 4: the operator is SIGKILLed mid-incident", () => {
  it.each([
    ["after-persist", "the rung is recorded pending but was never sent", [] as string[]],
    ["after-rung", "the factory ran the rung; its result was not recorded", ["probe"]],
  ])("%s (%s): the restart finishes the same incident, one incident, the rung ran once", async (failpoint, _what, ranBeforeRestart) => {
    const { f, start, list } = await setUp();
    const first = await start(failpoint);
    await lockOut(f, "killed", SLOTS);
    await first.exited;
    expect(first.child.signalCode).toBe("SIGKILL");

    const atKill = await list();
    expect(atKill).toHaveLength(1);
    expect(atKill[0]).toMatchObject({ status: "remediating", rungs: [{ rung: "probe", outcome: "pending" }] });
    expect(rungsRun(f, "killed")).toEqual(ranBeforeRestart);

    const second = await start();
    await eventually(async () => (await list()).some((i) => i.closedAt !== null), 15_000, "the restarted operator to finish the incident");
    const [incident, ...others] = await list();
    expect(others).toHaveLength(0);
    expect(incident!.id).toBe(atKill[0]!.id);
    expect(incident!.status).toBe("resolved");
    expect(incident!.rungs.map((r) => [r.rung, r.outcome, r.result?.removed.length, r.verification?.verified])).toEqual([["probe", "ok", SLOTS, true]]);
    expect(incident!.decisions.map((d) => d.kind)).toContain("resumed");
    // The invariant: the factory ran the probe once in all.
    expect(rungsRun(f, "killed")).toEqual(["probe"]);
    if (failpoint === "after-rung") expect(incident!.decisions.find((d) => d.kind === "rung_finished")?.detail).toContain("not run again");
    expect(second.lines.filter((l) => l.event === "operator.incident_opened")).toHaveLength(0);

    // Still serving: the restarted operator remediates a new lockout, once.
    await lockOut(f, "next", SLOTS);
    await eventually(async () => (await list()).some((i) => i.target.userId === "next" && i.status === "resolved"), 15_000, "the next lockout to resolve");
    expect(rungsRun(f, "next")).toEqual(["probe"]);
    expect(await list()).toHaveLength(2);
  });
});
