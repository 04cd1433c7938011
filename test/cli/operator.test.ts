/**
 * `reclaim operator` as a process: bad usage, and being killed with SIGKILL
 * in the middle of a ladder — the restarted operator finishes the same
 * incident and never opens a second one.
 */
import { spawn } from "node:child_process";
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FileIncidentStore } from "../../src/operator/incidents/file-store.js";
import type { Incident } from "../../src/operator/incidents/model.js";
import { BIN, cleanEnv, killAll, runCli, type RunningCli, startCli } from "../support/cli.js";
import { eventually, startTestFactory, TEST_CONTROL_TOKEN, type TestFactory } from "../support/factory.js";
import { LOCKOUT_RULE, tempDir } from "../support/operator.js";

let factory: TestFactory | undefined;
const processes: RunningCli[] = [];
afterEach(async () => {
  await killAll(processes);
  await factory?.close();
  factory = undefined;
});

describe("reclaim operator: bad usage", () => {
  it.each([
    [[], {}, /RECLAIM_CONTROL_TOKEN is not set/],
    [["--source", "kafka:topic"], { RECLAIM_CONTROL_TOKEN: "t".repeat(20) }, /unknown source "kafka:topic": use file:PATH, stdin or k8s:NAMESPACE\/LABEL_SELECTOR/],
    [["--metrics-port", "99999"], { RECLAIM_CONTROL_TOKEN: "t".repeat(20) }, /--metrics-port/],
    [["--canary-url", "ws://127.0.0.1:1/ws"], { RECLAIM_CONTROL_TOKEN: "t".repeat(20) }, /--canary-url needs RECLAIM_CANARY_TOKEN/],
  ])("%j exits 2 and says why", async (args, env, message) => {
    const { code, stderr } = await runCli(["operator", ...args], env);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
  });

  it("refuses to start with invalid rules, printing file:line:col for each problem", async () => {
    const dir = await tempDir();
    await writeFile(
      join(dir, "bad.yaml"),
      "apiVersion: reclaim.dev/v1\nkind: RemediationRule\nmetadata: { name: Bad }\nspec: { ladder: [{ rung: probe }] }\n---\n" +
        "apiVersion: reclaim.dev/v1\nkind: RemediationRule\nmetadata: { name: restarts }\nspec: { trigger: { log: { event: factory.hard_limit } }, ladder: [{ rung: restartPod }] }\n",
    );
    const { code, stderr } = await runCli(["operator", "--rules", dir, "--source", "stdin", "--metrics-port", "0"], { RECLAIM_CONTROL_TOKEN: "t".repeat(20) });
    expect(code).toBe(2);
    expect(stderr).toMatch(/bad\.yaml:3:\d+: metadata\.name: /);
    expect(stderr).toMatch(/bad\.yaml:9:\d+: spec\.ladder\[0\]\.rung: restartPod needs Kubernetes mode \(--target pod\)/);
    expect(stderr).toContain("not starting");
  });
});

describe("reclaim operator: killed mid-ladder", () => {
  it("after SIGKILL during a rung, a restart continues the same incident to a verified end; no rung result is lost, no second incident", async () => {
    factory = await startTestFactory({ probeTimeoutMs: 300 });
    const dir = await tempDir();
    const log = join(dir, "factory.log");
    await writeFile(log, "");
    await mkdir(join(dir, "rules"));
    // A slow first rung (the probe waits 3 s for zombies' pongs), so there is time to kill the operator during it.
    await writeFile(join(dir, "rules", "rules.yaml"), LOCKOUT_RULE.replace("- { rung: probe, timeout: 5s }", "- { rung: probe, timeout: 10s, params: { timeoutMs: 3000 } }"));
    const args = ["operator", "--rules", join(dir, "rules"), "--source", `file:${log}`, "--incidents", join(dir, "incidents"), "--state", join(dir, "state"), "--control", factory.controlUrl, "--metrics-port", "0"];
    const env = { RECLAIM_CONTROL_TOKEN: TEST_CONTROL_TOKEN };
    const store = new FileIncidentStore({ dir: join(dir, "incidents") });
    const list = (): Promise<Incident[]> => store.list().catch(() => []);

    for (let i = 0; i < 20; i++) await factory.open("killed-mid-ladder", "no-pong");
    const first = startCli(args, env);
    processes.push(first);
    await first.waitFor((l) => l.event === "operator.started");
    await appendFile(
      log,
      `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod: "test-factory-0", event: "factory.hard_limit", userId: "killed-mid-ladder", managers: 20, limit: 20, message: "HARD LIMIT" })}\n`,
    );
    await eventually(async () => (await list()).some((i) => i.rungs[0]?.outcome === "pending"), 10_000, "the probe to be recorded as pending").catch((err: unknown) => {
      throw new Error(`${String(err)}; operator said: ${JSON.stringify(first.lines.slice(-5))} ${first.stderr()}`);
    });
    first.child.kill("SIGKILL");
    await first.exited;
    const atKill = await list();
    expect(atKill).toHaveLength(1);
    expect(atKill[0]).toMatchObject({ status: "remediating", rungs: [{ rung: "probe", outcome: "pending" }] });

    const second = startCli(args, env);
    processes.push(second);
    await eventually(async () => (await list()).some((i) => i.status === "resolved"), 20_000, "the restarted operator to resolve it");
    const [incident, ...others] = await list();
    expect(others).toHaveLength(0);
    expect(incident!.id).toBe(atKill[0]!.id);
    expect(incident!.rungs.map((r) => [r.rung, r.outcome, r.verification?.verified])).toEqual([["probe", "ok", true]]);
    expect(incident!.decisions.map((d) => d.kind)).toEqual(expect.arrayContaining(["resumed"]));
    expect(factory.registry.active("killed-mid-ladder")).toBe(0);
    // The log line was read once by each run; the source's saved position kept the second run from re-reading it as new.
    expect(second.lines.filter((l) => l.event === "operator.incident_opened")).toHaveLength(0);
  });
});

describe("reclaim operator --source stdin --dry-run", () => {
  it("reads piped lines, records what it would do without calling anything, and exits 0 when the input ends", async () => {
    const dir = await tempDir();
    const lines = [
      "garbage that is not json",
      JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod: "p", event: "factory.hard_limit", userId: "piped", message: "HARD LIMIT" }),
      '{"event":"factory.hard_limit", broken',
    ];
    const child = spawn(
      process.execPath,
      [BIN, "operator", "--rules", "rules", "--source", "stdin", "--dry-run", "--incidents", join(dir, "incidents"), "--control", "http://127.0.0.1:9", "--metrics-port", "0"],
      { env: cleanEnv({ RECLAIM_CONTROL_TOKEN: "t".repeat(20) }) },
    );
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stdin.end(`${lines.join("\n")}\n`);
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(code).toBe(0);
    const incidents = await new FileIncidentStore({ dir: join(dir, "incidents") }).list();
    expect(incidents.map((i) => [i.target.userId, i.status, i.dryRun, i.rungs.length])).toEqual([["piped", "suppressed", true, 0]]);
    expect(incidents[0]!.decisions.at(-1)!.detail).toBe("dry run: would run probe → force → degrade");
    expect(stdout).toContain("DRY RUN");
  });
});
