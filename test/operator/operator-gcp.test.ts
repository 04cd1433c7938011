/**
 * The operator on Cloud Logging (`--source gcp:PROJECT`), through the real
 * client against the local gRPC server: the tail's server-side filter comes
 * from the rules (and follows a rule reload), a HARD LIMIT entry on the tail
 * is remediated against a real factory, and entries Cloud Logging left out are
 * counted in the metrics.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { eventually, startTestFactory, type TestFactory } from "../support/factory.js";
import { FakeLoggingServer } from "../support/gcp/logging-server.js";
import { factoryEntry } from "../support/gcp/entries.js";
import { LOCKOUT_RULE, startTestOperator, tempDir, type TestOperator } from "../support/operator.js";

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let logging: FakeLoggingServer | undefined;
afterEach(async () => {
  await operator?.close();
  await logging?.close();
  await factory?.close();
  operator = undefined;
  logging = undefined;
  factory = undefined;
  delete process.env.RECLAIM_GCP_ENDPOINT;
});

describe("the operator on Cloud Logging", () => {
  it("tails with the rules' filter, remediates a lockout it reads there, counts suppressed entries, and refilters on reload", async () => {
    factory = await startTestFactory({ cleanup: "legacy", probeTimeoutMs: 300 });
    for (let i = 0; i < 20; i++) await factory.open("cloud-user", "no-pong");
    logging = await FakeLoggingServer.start();
    process.env.RECLAIM_GCP_ENDPOINT = logging.endpoint;
    const dir = await tempDir();
    operator = await startTestOperator({
      dir,
      source: "gcp:reclaim-test",
      control: factory.controlUrl,
      gcpFilter: 'resource.labels.namespace_name="chat"',
    });
    await eventually(() => logging!.openTails > 0, 10_000, "the tail to open");
    const filter = logging.tailRequests.at(-1)!.filter;
    expect(filter).toContain('jsonPayload.event="factory.hard_limit"');
    expect(filter).toContain('jsonPayload.event="factory.error"');
    expect(filter).toContain("severity>=ERROR");
    expect(filter).toContain('resource.labels.namespace_name="chat"');

    logging.write([factoryEntry(Date.now(), { event: "factory.hard_limit", userId: "cloud-user", managers: 20, limit: 20, pod: "test-factory-0" })]);
    const [incident] = await operator.until((all) => all.some((i) => i.status === "resolved"), "the incident");
    expect(incident).toMatchObject({ target: { userId: "cloud-user", pod: "test-factory-0" }, rungs: [{ rung: "probe", outcome: "ok" }] });
    expect(incident!.evidence.entries[0]).toMatchObject({ fields: { "resource.namespace_name": "chat", "resource.pod_name": "test-factory-0" } });

    logging.suppress("RATE_LIMIT", 7);
    await eventually(async () => (await (await fetch(`http://127.0.0.1:${operator!.metricsPort}/metrics`)).text()).includes('reason="RATE_LIMIT"} 7'), 5000, "the suppression count");
    expect(operator.lines.some((l) => l.event === "operator.source_warning" && l.kind === "suppressed")).toBe(true);

    // A rule change changes what the tail asks for.
    await writeFile(join(dir, "rules", "rules.yaml"), LOCKOUT_RULE.replace("event: [factory.hard_limit, factory.error]", "event: [factory.refused]"));
    await eventually(() => logging!.tailRequests.at(-1)!.filter.includes('jsonPayload.event="factory.refused"'), 10_000, "the new filter");
    expect(logging.tailRequests.at(-1)!.filter).not.toContain("factory.hard_limit");
  });
});
