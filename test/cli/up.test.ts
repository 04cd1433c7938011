/**
 * `reclaim up`: a factory and an operator for manual use, printing what a
 * person needs, and stopping both cleanly on Ctrl-C.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { connect, isRefusal } from "../../src/demo/clients.js";
import { BIN, cleanEnv, runCli } from "../support/cli.js";
import { eventually } from "../support/factory.js";
import { tempDir } from "../support/operator.js";

describe("reclaim up", () => {
  it("prints the WebSocket URL, a user token, the control and metrics URLs and the incident folder; they all work; Ctrl-C stops both", async () => {
    const dir = await tempDir("reclaim-up-");
    const child = spawn(process.execPath, [BIN, "up", "--dir", dir, "--port", "0", "--control-port", "0", "--metrics-port", "0", "--user", "alice"], {
      env: cleanEnv(),
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    try {
      await eventually(() => out.includes("incidents"), 15_000, "reclaim up to print its URLs");
      const field = (name: string): string => new RegExp(`^  ${name}\\s+(\\S+)`, "m").exec(out)?.[1] ?? "";
      const client = await connect(field("WebSocket"), field("user token"));
      if (isRefusal(client)) throw new Error(`refused: ${client.status}`);
      expect(await client.chat("up?")).toBe("echo: up?");
      const user = await fetch(field("control API"), { headers: { Authorization: `Bearer ${field("control token")}` } });
      expect(await user.json()).toMatchObject({ userId: "alice", active: 1 });
      expect((await fetch(field("factory metrics"))).status).toBe(200);
      expect(await (await fetch(field("operator metrics"))).text()).toContain("reclaim_operator_rules_loaded 2");
      expect(field("incidents")).toBe(join(dir, "incidents"));
      expect(existsSync(field("factory log"))).toBe(true);
      client.destroy();
    } finally {
      child.kill("SIGINT");
    }
    expect(await closed).toBe(0);
    expect(out).toContain("Stopped.");
  });

  it("prints incidents as they open and close (legacy cleanup: the operator resolves a lockout of zombie tabs)", async () => {
    const dir = await tempDir("reclaim-up-");
    const child = spawn(
      process.execPath,
      [BIN, "up", "--dir", dir, "--port", "0", "--control-port", "0", "--metrics-port", "0", "--user", "alice", "--cleanup", "legacy"],
      { env: cleanEnv() },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    const tabs: { destroy(): void }[] = [];
    try {
      await eventually(() => out.includes("Incidents are printed below"), 15_000, "reclaim up to print its URLs");
      const field = (name: string): string => new RegExp(`^  ${name}\\s+(\\S+)`, "m").exec(out)?.[1] ?? "";
      for (let i = 0; i < 20; i++) {
        const tab = await connect(field("WebSocket"), field("user token"), "no-pong");
        if (isRefusal(tab)) throw new Error(`tab ${i} refused: ${tab.status}`);
        tabs.push(tab);
      }
      expect(isRefusal(await connect(field("WebSocket"), field("user token")))).toBe(true);
      await eventually(() => / incident \S+-factory-lockout-\S+ opened: /.test(out), 15_000, "the incident to be printed as opened");
      await eventually(() => / incident \S+-factory-lockout-\S+ resolved: .*\[probe:ok\]/.test(out), 30_000, "the incident to be printed as resolved");
    } finally {
      for (const tab of tabs) tab.destroy();
      child.kill("SIGINT");
    }
    expect(await closed).toBe(0);
  });

  it("refuses a bad user id and bad flags with exit 2", async () => {
    expect((await runCli(["up", "--user", "a b"])).code).toBe(2);
    expect((await runCli(["up", "--cleanup", "nope"])).code).toBe(2);
  });
});
