/**
 * The demo (`npm start` runs `reclaim demo`): every scenario recovers and is
 * verified, with the rungs expected, and the incident records it points to
 * are on disk and valid.
 */
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Incident } from "../../src/operator/incidents/model.js";
import { SCENARIOS, type ScenarioResult } from "../../src/demo/demo.js";
import { connect, isRefusal } from "../../src/demo/clients.js";
import { BIN, cleanEnv, runCli } from "../support/cli.js";
import { eventually } from "../support/factory.js";

describe("reclaim demo --json", () => {
  it("runs every scenario: each recovered and verified, with the expected rungs and valid incident records", async () => {
    const { code, stdout } = await runCli(["demo", "--json"], {}, 120_000);
    const result = JSON.parse(stdout) as { passed: boolean; dir: string; scenarios: ScenarioResult[] };
    expect(result.scenarios.map((s) => s.name)).toEqual([...SCENARIOS]);
    for (const s of result.scenarios) {
      expect({ name: s.name, recovered: s.recovered, verified: s.verified, failed: s.checks.filter((c) => !c.ok) }).toEqual({
        name: s.name,
        recovered: true,
        verified: true,
        failed: [],
      });
    }
    expect(result.passed).toBe(true);
    expect(code).toBe(0);

    const rungs = Object.fromEntries(result.scenarios.map((s) => [s.name, s.incident?.rungs.map((r) => `${r.rung}:${r.removed}:${r.verified}`) ?? null]));
    expect(rungs).toEqual({
      outage: ["probe:20:true"],
      live: ["probe:0:false", "force:2:true"],
      ghosts: ["probe:20:true"],
      "self-heal": null,
    });
    for (const s of result.scenarios.filter((x) => x.incident !== null)) {
      const record = Incident.parse(JSON.parse(await readFile(s.incident!.files.json, "utf8")));
      expect(record).toMatchObject({ status: "resolved", rule: "factory-lockout", target: { userId: "105945141827451681156" } });
      expect(existsSync(s.incident!.files.md)).toBe(true);
      expect(await readFile(s.incident!.files.md, "utf8")).toContain(record.id);
    }
  });

  it("--scenario runs one; an unknown one is a usage error", async () => {
    const one = await runCli(["demo", "--scenario", "ghosts", "--json"]);
    expect(one.code).toBe(0);
    expect((JSON.parse(one.stdout) as { scenarios: { name: string }[] }).scenarios.map((s) => s.name)).toEqual(["ghosts"]);
    const bad = await runCli(["demo", "--scenario", "nope"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--scenario/);
  });

  it("prints a readable timeline and a summary with the incident files", async () => {
    const { code, stdout } = await runCli(["demo", "--scenario", "outage"]);
    expect(code).toBe(0);
    expect(stdout).toContain("HARD LIMIT: User 105945141827451681156 still over limit after cleanup (20/20)");
    expect(stdout).toMatch(/\+\s+\d+ ms {2}operator WARNING Incident \S+ opened: Chat lockout: user 105945141827451681156 at 20\/20/);
    expect(stdout).toMatch(/PASS {2}outage/);
    expect(stdout).toMatch(/outage {5}\/\S+\/incidents\/\S+\.md/);
    expect(stdout).toContain("Every scenario recovered and was verified.");
  });
});

describe("reclaim demo --keep", () => {
  it("leaves the last scenario's factory and operator running, prints how to reach them, and stops on Ctrl-C", async () => {
    const child = spawn(process.execPath, [BIN, "demo", "--scenario", "self-heal", "--keep"], { env: cleanEnv() });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    try {
      await eventually(() => err.includes("incidents"), 30_000, "the demo to print what it kept running");
      const url = /WebSocket\s+(\S+)/.exec(err)![1]!;
      const client = await connect(url.split("?")[0]!, new URL(url).searchParams.get("token")!);
      if (isRefusal(client)) throw new Error(`refused: ${client.status}`);
      expect(await client.chat("still here?")).toBe("echo: still here?");
      client.destroy();
      const metrics = /operator\s+(http\S+)/.exec(err)![1]!;
      expect((await fetch(metrics)).status).toBe(200);
    } finally {
      child.kill("SIGINT");
    }
    expect(await closed).toBe(0);
  });
});
