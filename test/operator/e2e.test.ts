/**
 * The operator against the real factory on 127.0.0.1 with real zombie clients:
 * the outage is detected from the factory's own log file, remediated through
 * the control API one rung at a time, verified, and recorded.
 */
import { existsSync } from "node:fs";
import { appendFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RECLAIM_VERSION } from "../../src/contract/version.js";
import { isRefusal, type ChatClient } from "../../src/demo/clients.js";
import { startTestFactory, type TestFactory } from "../support/factory.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

const USER = "105945141827451681156";

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
afterEach(async () => {
  await operator?.close();
  await factory?.close();
  operator = undefined;
  factory = undefined;
});

async function setUp(config: Parameters<typeof startTestFactory>[0] = {}): Promise<{ dir: string; logFile: string }> {
  const dir = await tempDir();
  const logFile = join(dir, "factory.log");
  factory = await startTestFactory({ logFile, probeTimeoutMs: 300, ...config });
  operator = await startTestOperator({ dir, source: `file:${logFile}`, control: factory.controlUrl });
  return { dir, logFile };
}

describe("the operator remediates the original outage", () => {
  it("legacy factory, 20 zombie tabs: one incident, probe, verified, resolved; the user chats again", async () => {
    const { dir } = await setUp({ cleanup: "legacy" });
    for (let i = 0; i < 10; i++) await factory!.open(USER, "no-pong");
    for (let i = 0; i < 10; i++) await factory!.open(USER, "paused");
    const refused = await factory!.attempt(USER);
    expect(isRefusal(refused) && refused.status).toBe(503);

    const [incident] = await operator!.until((all) => all.some((i) => i.status === "resolved"), "the incident to resolve");
    expect(await operator!.incidents()).toHaveLength(1); // HARD LIMIT and UNEXPECTED FACTORY ERROR: one incident
    expect(incident).toMatchObject({
      rule: "lockout",
      status: "resolved",
      key: { userId: USER, pod: "test-factory-0" },
      target: { userId: USER, pod: "test-factory-0" },
      title: `Chat lockout: user ${USER} at 20/20 on test-factory-0`,
      before: { admit: false, active: 20 },
      after: { admit: true },
    });
    expect(incident!.rungs.map((r) => [r.rung, r.outcome, r.result?.removed.length, r.verification?.verified])).toEqual([["probe", "ok", 20, true]]);
    expect(incident!.evidence.entries.map((e) => e.event)).toContain("factory.hard_limit");
    expect(incident!.durations.mitigateMs).not.toBeNull();
    expect(existsSync(join(dir, "incidents", `${incident!.id}.md`))).toBe(true);
    // A way back to the log: each evidence entry's path and byte offset is where its line starts in the file.
    const log = await readFile(join(dir, "factory.log"));
    for (const entry of incident!.evidence.entries) {
      expect(entry.file?.path).toBe(join(dir, "factory.log"));
      const line = log.subarray(entry.file!.offset, log.indexOf(0x0a, entry.file!.offset)).toString();
      expect(JSON.parse(line)).toMatchObject({ event: entry.event, message: entry.message });
    }
    // The record names the operator release and the exact rule (description, runbook, revision) that acted.
    expect(incident!.operatorVersion).toBe(RECLAIM_VERSION);
    expect(incident!.ruleInfo).toEqual({ revision: expect.stringMatching(/^[0-9a-f]{12}$/) });

    const client = await factory!.open(USER);
    expect(await client.chat("back in")).toBe("echo: back in");
  });

  it("20 live idle tabs: probe frees nothing, force does, verified", async () => {
    await setUp();
    const tabs: ChatClient[] = [];
    for (let i = 0; i < 20; i++) tabs.push(await factory!.open(USER));
    for (const [i, t] of tabs.entries()) if (i !== 4) await t.chat(`tab ${i}`);
    await factory!.attempt(USER);

    const [incident] = await operator!.until((all) => all.some((i) => i.status === "resolved"), "the incident to resolve");
    expect(incident!.rungs.map((r) => [r.rung, r.result?.removed.length, r.verification?.verified])).toEqual([
      ["probe", 0, false],
      ["force", 1, true],
    ]);
    // A rung that freed nothing is not waited on for the whole verify timeout.
    expect(incident!.rungs[0]!.verification).toMatchObject({ durationMs: 0 });
    expect(incident!.rungs[0]!.verification!.detail).toContain("freed nothing");
    expect((await tabs[4]!.closed).code).toBe(1013);
    expect(isRefusal(await factory!.attempt(USER))).toBe(false);
  });
});

describe("what must not make an incident", () => {
  it("the same log line delivered twice makes one incident", async () => {
    const { logFile } = await setUp();
    const line = JSON.stringify({
      severity: "ERROR",
      time: new Date().toISOString(),
      pod: "test-factory-0",
      event: "factory.hard_limit",
      userId: "dup-user",
      managers: 20,
      limit: 20,
      message: "HARD LIMIT: User dup-user still over limit after cleanup (20/20)",
    });
    await appendFile(logFile, `${line}\n${line}\n`);
    await operator!.until((all) => all.length === 1 && all[0]!.status !== "open", "the incident");
    await operator!.idle();
    const all = await operator!.incidents();
    expect(all).toHaveLength(1);
    expect(all[0]!.evidence.total).toBe(1);
  });

  it("chat text that imitates the HARD LIMIT line, and such text in a non-factory line, make no incident", async () => {
    const { logFile } = await setUp();
    const client = await factory!.open("mallory");
    const forged = `HARD LIMIT: User ${USER} still over limit after cleanup (20/20)`;
    await client.chat(forged);
    // A line written by something else that carries user text in its message: rules match the factory's structured event.
    await appendFile(logFile, `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), message: forged, userId: USER })}\n`);
    // Then a real trigger for another user, so we know the operator read past those lines.
    await appendFile(
      logFile,
      `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod: "p", event: "factory.hard_limit", userId: "real-user", message: "x" })}\n`,
    );
    const all = await operator!.until((incidents) => incidents.length > 0, "the real trigger");
    expect(all.map((i) => i.target.userId)).toEqual(["real-user"]);
    expect((await readFile(logFile, "utf8")).includes("mallory")).toBe(true); // the chat user did connect and log
  });
});

describe("a control API that fails", () => {
  it("unreachable: bounded retries, then failed with the cause; the operator keeps running", async () => {
    const dir = await tempDir();
    const logFile = join(dir, "factory.log");
    await appendFile(logFile, "");
    operator = await startTestOperator({ dir, source: `file:${logFile}`, control: "http://127.0.0.1:9", ladder: { attempts: 3, backoffMs: [10, 20] } });
    await appendFile(
      logFile,
      `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod: "p", event: "factory.hard_limit", userId: "u1", message: "x" })}\n`,
    );
    const [incident] = await operator.until((all) => all.some((i) => i.status === "failed"), "the incident to fail");
    expect(incident!.rungs).toHaveLength(1);
    expect(incident!.rungs[0]).toMatchObject({ rung: "probe", outcome: "error", attempts: 3 });
    expect(incident!.rungs[0]!.error).toMatch(/failed/);
    expect(incident!.decisions.filter((d) => d.kind === "retry")).toHaveLength(2);
    // Still serving: another user's trigger is picked up.
    await appendFile(
      logFile,
      `${JSON.stringify({ severity: "ERROR", time: new Date().toISOString(), pod: "p", event: "factory.hard_limit", userId: "u2", message: "x" })}\n`,
    );
    await operator.until((all) => all.some((i) => i.target.userId === "u2" && i.status === "failed"), "the second incident");
    const res = await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`);
    expect(await res.text()).toContain('reclaim_operator_rungs_total{rung="probe",result="error"} 2');
  });
});
