/**
 * The circuit breaker, as on-call sees it: opening and closing are log
 * events, a gauge per rule, and a notice naming the incidents that opened
 * it and when it closes; a user locked out while it is open gets a `held`
 * record. A real factory whose users keep 20 live tabs (nothing to evict: every
 * ladder escalates), the operator tailing its log, a local JSON webhook.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isRefusal } from "../../src/demo/clients.js";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";
import { startWebhookServer, type ReceivedRequest, type WebhookServer } from "../support/receivers.js";

const RULE = `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: lockout }
spec:
  description: A user is locked out of chat at the manager limit.
  trigger: { log: { event: [factory.hard_limit], minSeverity: ERROR } }
  key: [userId, pod]
  ladder:
    - { rung: probe, timeout: 5s }
  verify: { settle: 200ms, timeout: 1s }
  guards: { cooldown: 1m, circuitBreaker: { failures: 2, openFor: 4s } }
  incident: { severity: high, title: "Chat lockout: user {{userId}} on {{pod}}" }
`;

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let hook: WebhookServer | undefined;
afterEach(async () => {
  await operator?.close();
  await factory?.close();
  await hook?.close();
  operator = undefined;
  factory = undefined;
  hook = undefined;
});

interface CircuitNotice {
  subject: string;
  kind: string;
  status: string;
  needsHuman: boolean;
  firing: boolean;
  description: string;
}

const circuitNotices = (): CircuitNotice[] =>
  hook!.requests.map((r: ReceivedRequest) => (r.body as { notice: CircuitNotice }).notice).filter((n) => n.kind === "circuit");

/** 20 live tabs and a refused attempt: the factory logs HARD LIMIT, and the probe will find nothing to evict. */
async function lockOut(userId: string): Promise<void> {
  for (let i = 0; i < 20; i++) await factory!.open(userId);
  const refused = await factory!.attempt(userId);
  expect(isRefusal(refused) && refused.status).toBe(503);
}

describe("the circuit breaker", () => {
  it("opens after two escalations in a row (log, gauge, notice naming them), holds a third user back as held, and closes after openFor", async () => {
    const dir = await tempDir();
    const logFile = join(dir, "factory.log");
    hook = await startWebhookServer();
    const notifications = join(dir, "notifications.yaml");
    await writeFile(
      notifications,
      ["apiVersion: reclaim.dev/v1", "kind: Notifications", "receivers:", "  - name: hook", "    webhook: { urlFrom: HOOK_URL }", "routes:", "  - receivers: [hook]", ""].join("\n"),
    );
    factory = await startTestFactory({ logFile, probeTimeoutMs: 300, cleanup: "legacy" });
    operator = await startTestOperator(
      { dir, source: `file:${logFile}`, control: factory.controlUrl, rule: RULE, notifications: { alertmanagers: [], file: notifications, externalUrl: null } },
      { env: { HOOK_URL: hook.url } },
    );
    const gauge = async (): Promise<number | undefined> => (await operator!.metrics.circuitOpen.get()).values.find((v) => v.labels.rule === "lockout")?.value;

    await lockOut("user-a");
    await operator.until((all) => all.some((i) => i.target.userId === "user-a" && i.status === "escalated"), "user-a's incident to escalate");
    expect(circuitNotices()).toEqual([]);
    await lockOut("user-b");
    const all = await operator.until((list) => list.filter((i) => i.status === "escalated").length === 2, "user-b's incident to escalate");
    const ids = all.filter((i) => i.status === "escalated").map((i) => i.id);

    await eventually(() => circuitNotices().length === 1, 5000, "the circuit notice");
    const [opened] = circuitNotices();
    expect(opened).toMatchObject({ subject: "circuit:lockout", status: "open", needsHuman: true, firing: true });
    for (const id of ids) expect(opened!.description).toContain(id);
    expect(opened!.description).toMatch(/resumes at \d{4}-\d\d-\d\dT/);
    expect(await gauge()).toBe(1);
    const openedLine = operator.lines.find((l) => l.event === "operator.circuit_opened");
    expect(openedLine).toMatchObject({ rule: "lockout", severity: "ERROR" });
    expect(String(openedLine!.incidents).split(",").sort()).toEqual([...ids].sort());

    // A third user locked out while it is open: not acted on, and not hidden either.
    await lockOut("user-c");
    const withHeld = await operator.until((list) => list.some((i) => i.target.userId === "user-c" && i.status === "held"), "user-c's held record");
    const held = withHeld.find((i) => i.target.userId === "user-c" && i.status === "held")!;
    expect(held.rungs).toEqual([]);
    expect(held.decisions.at(-1)!.detail).toContain("circuit breaker is open after 2 failed or escalated incidents in a row");

    // openFor (4 s) after the second escalation it closes by itself, and on-call is told.
    await eventually(() => circuitNotices().length === 2, 15_000, "the circuit to close");
    expect(circuitNotices()[1]).toMatchObject({ subject: "circuit:lockout", status: "closed", needsHuman: false, firing: false });
    expect(await gauge()).toBe(0);
    expect(operator.lines.some((l) => l.event === "operator.circuit_closed" && l.rule === "lockout")).toBe(true);
    expect((await operator.metrics.circuitTransitions.get()).values.map((v) => [v.labels.to, v.value]).sort()).toEqual([
      ["closed", 1],
      ["open", 1],
    ]);
  });
});
