/**
 * The web view as the operator serves it, on its metrics port, over an
 * incident made by a real remediation (a real factory on 127.0.0.1, real
 * zombie ws clients, the operator tailing the factory's log file): the
 * links that notifications carry open the incident and the rule's list,
 * and /metrics, /healthz and /readyz are still the operator's own.
 */
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FileIncidentStore } from "../../../src/operator/incidents/file-store.js";
import { humanEntry } from "../../../src/operator/incidents/human.js";
import { circuitNotice, noticeOf } from "../../../src/operator/notify/notice.js";
import { startTestFactory, type Json, type TestFactory } from "../../support/factory.js";
import { startTestOperator, tempDir, type TestOperator } from "../../support/operator.js";

const USER = "105945141827451681156";

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
afterEach(async () => {
  await operator?.close();
  await factory?.close();
  operator = undefined;
  factory = undefined;
});

describe("the operator serves the web view", () => {
  it("a real remediation's incident opens from the notification's link, with a person's ack and note; the circuit notice's link lists the rule", async () => {
    const dir = await tempDir();
    const logFile = join(dir, "factory.log");
    factory = await startTestFactory({ logFile, probeTimeoutMs: 300, cleanup: "legacy" });
    operator = await startTestOperator({ dir, source: `file:${logFile}`, control: factory.controlUrl });
    for (let i = 0; i < 20; i++) await factory.open(USER, "no-pong");
    await factory.attempt(USER);
    const incident = await operator.ended(USER);
    expect(incident.status).toBe("resolved");
    // A person acks and notes it, as `reclaim incidents ack|note` does (the file beside the record).
    const people = new FileIncidentStore({ dir: join(dir, "incidents") });
    await people.appendHuman(incident.id, humanEntry({ kind: "ack", by: "alice", text: "looking", at: Date.now() }));
    await people.appendHuman(incident.id, humanEntry({ kind: "note", by: "bob", text: "<script>alert(1)</script> was in the chat", at: Date.now() }));

    const externalUrl = `http://127.0.0.1:${operator.metricsPort}/`;
    const link = noticeOf(incident, { externalUrl, now: Date.now(), acknowledged: null }).link!;
    expect(link).toBe(`http://127.0.0.1:${operator.metricsPort}/incidents/${incident.id}`);
    const page = await fetch(link);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toMatch(/^default-src 'none'/);
    const body = await page.text();
    expect(body).toContain(`<code>${incident.id}</code>`);
    expect(body).toContain("acknowledged by alice");
    expect(body).toContain("&lt;script&gt;alert(1)&lt;/script&gt; was in the chat");
    expect(body).not.toContain("<script>");
    // The evidence leads back to the log file, line by line.
    for (const e of incident.evidence.entries) expect(body).toContain(`<code>${logFile}</code> at byte ${e.file!.offset}`);
    expect(body).toMatch(/<svg[^>]*role="img"/);

    const record: Json = await (await fetch(`http://127.0.0.1:${operator.metricsPort}/api/v1/incidents/${incident.id}`)).json();
    expect(record).toEqual(await operator.store.get(incident.id));
    expect(record.human.map((h: { kind: string }) => h.kind)).toEqual(["ack", "note"]);

    const circuit = circuitNotice(
      { rule: "lockout", open: true, severity: "high", incidents: [incident.id], openedAt: Date.now(), closesAt: null, description: null, runbook: null },
      { externalUrl, now: Date.now() },
    );
    const list = await fetch(circuit.link!);
    expect(list.status).toBe(200);
    expect(await list.text()).toContain(`<a href="incidents/${incident.id}">`);

    // The operator's own paths are unchanged.
    expect((await fetch(`http://127.0.0.1:${operator.metricsPort}/metrics`)).headers.get("content-type")).toContain("text/plain");
    expect(await (await fetch(`http://127.0.0.1:${operator.metricsPort}/healthz`)).json()).toMatchObject({ status: "ok" });
    expect((await fetch(`http://127.0.0.1:${operator.metricsPort}/readyz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${operator.metricsPort}/`, { method: "POST" })).status).toBe(405);
  });
});
