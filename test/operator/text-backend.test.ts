/**
 * A backend that logs plain text, end to end: lines written by real Python
 * `logging` (Debian's python3), turned into what GKE ingests (a `LogEntry`
 * with `textPayload`, severity from the stream, a `k8s_container` resource),
 * read by the real operator as NDJSON through its file source, and the
 * shipped example rule `rules/examples/text-backend-lockout.yaml` acting on a
 * real factory where the user is really locked out by zombie clients.
 */
import { appendFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { OutageMessage } from "../../src/contract/events.js";
import { isRefusal, type ChatClient } from "../../src/demo/clients.js";
import { startTestFactory, type TestFactory } from "../support/factory.js";
import { startTestOperator, tempDir, type TestOperator } from "../support/operator.js";
import { gkeTextEntry, pythonLogLines, type ContainerSource } from "../support/python-logging.js";

const EXAMPLE = new URL("../../rules/examples/text-backend-lockout.yaml", import.meta.url).pathname;
const USER = "105945141827451681156";
const OTHER = "204856252938562792267";
const BACKEND: ContainerSource = { container: "chat-backend", pod: "chat-backend-7d9f-abcde" };


let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
const tabs: ChatClient[] = [];
afterEach(async () => {
  await operator?.close();
  for (const tab of tabs.splice(0)) tab.destroy();
  await factory?.close();
  operator = undefined;
  factory = undefined;
});

/** A factory whose own cleanup is the old one (frees nothing that looks active), and an operator on an NDJSON file of GKE entries with the example rule. */
async function setUp(): Promise<{ entries: string }> {
  const dir = await tempDir("reclaim-text-");
  // The factory's own JSON lines go to a file the operator does not read: only the backend's text can trigger here.
  factory = await startTestFactory({ cleanup: "legacy", probeTimeoutMs: 300, logFile: join(dir, "factory-own.log") });
  const entries = join(dir, "gke-entries.ndjson"); // LogEntry objects, one a line, as a log sink writes them
  await writeFile(entries, "");
  operator = await startTestOperator({ dir, source: `file:${entries}`, control: factory.controlUrl, rule: await readFile(EXAMPLE, "utf8") });
  return { entries };
}

/** The backend's three lines for `userId` at 20/20, through Python's logging, appended as GKE entries from `source`. */
async function backendLogs(file: string, userId: string, source: ContainerSource): Promise<void> {
  const lines = await pythonLogLines([
    { level: "WARNING", message: OutageMessage.resourceLimit(userId, 20, 20) },
    { level: "ERROR", message: OutageMessage.hardLimit(userId, 20, 20) },
    { level: "ERROR", message: OutageMessage.factoryError(userId, 20) },
  ]);
  await appendFile(file, lines.map((l) => `${JSON.stringify(gkeTextEntry(l, source))}\n`).join(""));
}

/** Locks `userId` out of the factory for real: 20 tabs that never answer a ping. */
async function lockOut(userId: string): Promise<void> {
  for (let i = 0; i < 10; i++) tabs.push(await factory!.open(userId, "no-pong"));
  for (let i = 0; i < 10; i++) tabs.push(await factory!.open(userId, "paused"));
  const refused = await factory!.attempt(userId);
  expect(isRefusal(refused) && refused.status).toBe(503);
}

describe("a Python backend's text lines, as GKE ingests them, drive the ladder", () => {
  it("the three lines from chat-backend for a user the factory refuses: confirmed, probed, verified, resolved; the user chats again", async () => {
    const { entries } = await setUp();
    await lockOut(USER);
    await backendLogs(entries, USER, BACKEND);

    const [incident] = await operator!.until((all) => all.some((i) => i.closedAt !== null), "the incident to end", 20_000);
    expect(incident).toMatchObject({
      rule: "text-backend-lockout",
      status: "resolved",
      key: { userId: USER, pod: BACKEND.pod },
      target: { userId: USER },
      title: `Chat lockout (text backend): user ${USER} at the limit (20) on ${BACKEND.pod}`,
      before: { admit: false, active: 20 },
      after: { admit: true },
    });
    expect(incident!.rungs.map((r) => [r.rung, r.outcome, r.result?.removed.length, r.verification?.verified])).toEqual([["probe", "ok", 20, true]]);
    expect(incident!.decisions.map((d) => d.detail)).toContainEqual(expect.stringContaining(`the factory confirms user ${USER} is refused now (20/20, admit=false)`));
    expect(incident!.evidence.entries.map((e) => [e.severity, e.fields["resource.container_name"]])).toEqual([
      ["ERROR", "chat-backend"],
      ["ERROR", "chat-backend"],
    ]);
    const client = await factory!.open(USER);
    expect(await client.chat("back in")).toBe("echo: back in");
  }, 30_000);

  it("the same lines from the container `evil` do not act; only chat-backend's lines count toward the incident", async () => {
    const { entries } = await setUp();
    await lockOut(USER);
    await backendLogs(entries, USER, { container: "evil", pod: "evil-0" });
    await backendLogs(entries, OTHER, { container: "evil", pod: "evil-0" });
    // Then the real lines, so we know the operator read past the forged ones.
    await backendLogs(entries, USER, BACKEND);

    await operator!.until((all) => all.some((i) => i.closedAt !== null), "the incident to end", 20_000);
    await operator!.idle();
    const all = await operator!.incidents();
    expect(all.map((i) => [i.target.userId, i.key.pod, i.status])).toEqual([[USER, BACKEND.pod, "resolved"]]);
    // Had evil's lines counted, they would have fired the rule first (two of them reach the threshold).
    expect(all[0]!.evidence.entries.every((e) => e.fields["resource.container_name"] === "chat-backend")).toBe(true);
    // Of the nine lines, only chat-backend's three matched the rule.
    const metrics = await (await fetch(`http://127.0.0.1:${operator!.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/reclaim_operator_rule_matches_total\{rule="text-backend-lockout"\} 3\b/);
    // evil's six are counted as dropped, untrusted: a forged source shows in the metrics.
    expect(metrics).toMatch(/reclaim_operator_entries_dropped_total\{rule="text-backend-lockout",reason="untrusted"\} 6\b/);
  }, 30_000);

  it("lines naming a user the factory admits: one read, then suppressed (not_confirmed); nothing disruptive runs", async () => {
    const { entries } = await setUp();
    const tab = await factory!.open(OTHER); // OTHER holds one live tab and could open 19 more
    tabs.push(tab);
    await backendLogs(entries, OTHER, BACKEND);

    const ended = await operator!.ended(OTHER);
    expect(ended).toMatchObject({ status: "suppressed", rungs: [], suppressed: { not_confirmed: { count: 1 } }, target: { userId: OTHER } });
    expect(ended.decisions.map((d) => d.detail)).toContainEqual(`not acted on (not_confirmed): the factory admits user ${OTHER} now (1/20, admit=true)`);
    expect(factory!.events("factory.evicted", OTHER)).toEqual([]);
    expect(await tab.chat("still here")).toBe("echo: still here");
  }, 30_000);
});
