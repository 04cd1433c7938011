/**
 * Nothing hidden (ADR 25): a user the factory still refuses while one of the
 * rule's guards holds automation back gets a record of its own, status
 * `held`, that needs a person; a user who can connect again does not. Real
 * factory, real zombie clients, the factory's own log as the source.
 */
import { appendFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isRefusal } from "../../../src/demo/clients.js";
import { noticeOf } from "../../../src/operator/notify/notice.js";
import type { Incident } from "../../../src/operator/incidents/model.js";
import { eventually, startTestFactory, type TestFactory } from "../../support/factory.js";
import { startFaultyControl, type FaultyControl } from "../../support/faulty-control.js";
import { startTestOperator, tempDir, type TestOperator } from "../../support/operator.js";

const USER = "105945141827451681156";

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let control: FaultyControl | undefined;
afterEach(async () => {
  await operator?.close();
  await control?.close();
  await factory?.close();
  operator = undefined;
  control = undefined;
  factory = undefined;
});

async function setUp(options: { faulty?: boolean } = {}): Promise<string> {
  const dir = await tempDir();
  const logFile = join(dir, "factory.log");
  factory = await startTestFactory({ logFile, probeTimeoutMs: 300, cleanup: "legacy" });
  if (options.faulty === true) control = await startFaultyControl(factory.controlUrl);
  operator = await startTestOperator({ dir, source: `file:${logFile}`, control: control?.url ?? factory.controlUrl });
  return logFile;
}

/** 20 zombie tabs and one refused attempt: the factory logs HARD LIMIT for the user. */
async function lockOut(): Promise<void> {
  for (let i = 0; i < 10; i++) await factory!.open(USER, "no-pong");
  for (let i = 0; i < 10; i++) await factory!.open(USER, "paused");
  const refused = await factory!.attempt(USER);
  expect(isRefusal(refused) && refused.status).toBe(503);
}

/**
 * The factory's HARD LIMIT line for the user, as it writes it: it writes one
 * per user per minute (refusal-log.ts), so the line of a lockout that comes
 * back within the minute is the one it writes when its window ends.
 */
async function hardLimitLine(logFile: string): Promise<void> {
  const line = { severity: "ERROR", time: new Date().toISOString(), pod: "test-factory-0", event: "factory.hard_limit", userId: USER, managers: 20, limit: 20 };
  await appendFile(logFile, `${JSON.stringify({ ...line, message: `HARD LIMIT: User ${USER} still over limit after cleanup (20/20)` })}\n`);
}

const refusalChecks = async (result: string): Promise<number> => {
  const metric = await operator!.metrics.refusalChecks.get();
  return metric.values.find((v) => v.labels.result === result)?.value ?? 0;
};

async function firstIncidentResolved(): Promise<Incident> {
  await lockOut();
  const [resolved] = await operator!.until((all) => all.some((i) => i.status === "resolved"), "the first incident to resolve");
  await operator!.idle();
  return resolved!;
}

describe("a user locked out again while the cooldown holds automation back", () => {
  it("gets a held record that needs a person; later triggers are counted on it, not hidden behind the resolved one", async () => {
    const logFile = await setUp();
    const first = await firstIncidentResolved();

    await lockOut(); // the same user, 20 zombies again, within the rule's 10 min cooldown
    await hardLimitLine(logFile);
    const all = await operator!.until((list) => list.some((i) => i.status === "held"), "a held record");
    const held = all.find((i) => i.status === "held")!;
    expect(all).toHaveLength(2);
    expect(held).toMatchObject({
      rule: "lockout",
      key: { userId: USER, pod: "test-factory-0" },
      rungs: [],
      before: { admit: false, active: 20 },
      suppressed: { cooldown: { count: 1 } },
    });
    const last = held.decisions.at(-1)!;
    expect(last.kind).toBe("held");
    expect(last.detail).toContain("cooldown");
    expect(last.detail).toContain(`still refuses ${USER} (20/20 managers`);
    expect(last.detail).toContain(first.id);
    // Nothing was acted on: the zombies are all still there.
    expect((await factory!.control("GET", `/v1/users/${USER}/admission`)).body).toMatchObject({ admit: false, active: 20 });
    expect(await factory!.attempt(USER)).toMatchObject({ status: 503 });
    // What on-call is told: firing and needing a human until someone acknowledges it.
    const notice = noticeOf(held, { externalUrl: null, now: Date.now(), acknowledged: null });
    expect(notice).toMatchObject({ status: "held", needsHuman: true, firing: true });
    expect(operator!.lines.some((l) => l.event === "operator.incident_held" && l.incident === held.id)).toBe(true);

    // Refused again: its trigger is counted on the held record, no third record.
    await hardLimitLine(logFile);
    const counted = await operator!.until((list) => (list.find((i) => i.id === held.id)?.suppressed.cooldown?.count ?? 0) >= 2, "the repeat counted on the held record");
    expect(counted).toHaveLength(2);
    expect(await refusalChecks("refused")).toBe(1);
  });

  it("a user who can connect again is not held: the trigger is counted on the resolved record", async () => {
    const logFile = await setUp();
    const first = await firstIncidentResolved();
    // A late HARD LIMIT line for the user, who has no tab left: the factory admits them now.
    await hardLimitLine(logFile);
    await operator!.until((list) => (list.find((i) => i.id === first.id)?.suppressed.cooldown?.count ?? 0) === 1, "the trigger counted on the resolved record");
    await eventually(async () => (await refusalChecks("admitted")) === 1, 5000, "the admission check to answer");
    const all = await operator!.incidents();
    expect(all.map((i) => i.status)).toEqual(["resolved"]);
  });

  it("a factory that does not answer the check: held, saying that nobody knows, never acted on", async () => {
    const logFile = await setUp({ faulty: true });
    await firstIncidentResolved();
    control!.fault("hang", { match: (method, path) => method === "GET" && path.endsWith("/admission") });
    await lockOut();
    await hardLimitLine(logFile);
    const all = await operator!.until((list) => list.some((i) => i.status === "held"), "a held record", 20_000);
    const held = all.find((i) => i.status === "held")!;
    expect(held.before).toBeNull();
    expect(held.decisions.at(-1)!.detail).toMatch(/whether the factory still refuses .* is not known \(the control API did not answer/);
    expect(control!.rungCalls()).toHaveLength(1); // the first incident's probe; nothing since
    expect(await refusalChecks("unknown")).toBe(1);
  });
});
