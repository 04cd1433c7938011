/**
 * What a record carries for on-call (the rule's description, runbook and
 * revision, the operator's version, a way back to each log entry) and how a
 * record becomes a notice: firing while open or while it needs a human that
 * nobody acknowledged, ended otherwise.
 */
import { describe, expect, it } from "vitest";
import { RECLAIM_VERSION } from "../../../src/contract/version.js";
import { Incident } from "../../../src/operator/incidents/model.js";
import { close, evidenceOf, newIncident, ruleRevision } from "../../../src/operator/incidents/record.js";
import { circuitNotice, incidentLink, noticeOf } from "../../../src/operator/notify/notice.js";
import { pagerDutyAction } from "../../../src/operator/notify/pagerduty.js";
import { RemediationRule } from "../../../src/operator/rules/schema.js";
import { hardLimit, rule, T0 } from "../../support/rules.js";
import type { Trigger } from "../../../src/operator/detect/detector.js";

const USER = "105945141827451681156";

function trigger(spec: Parameters<typeof rule>[1] = {}): Trigger {
  const entry = hardLimit(USER, T0);
  return {
    rule: rule("lockout", spec),
    key: { userId: USER, pod: "factory-0" },
    keyString: `userId=${USER},pod=factory-0`,
    userId: USER,
    pod: "factory-0",
    namespace: "chat",
    entries: [entry],
    total: 1,
    firstAt: T0,
    at: T0,
    groups: {},
  };
}

const opened = (spec: Parameters<typeof rule>[1] = {}): Incident =>
  newIncident(trigger(spec), { now: T0 + 500, control: "http://127.0.0.1:8081", dryRun: false, status: "open" });

describe("what a record carries", () => {
  it("the rule's description, runbook and revision, and the operator's version", () => {
    const incident = opened({ description: "Users locked out of chat.", runbook: "https://runbooks.example.com/lockout" });
    expect(Incident.parse(incident)).toMatchObject({
      ruleInfo: { description: "Users locked out of chat.", runbook: "https://runbooks.example.com/lockout" },
      operatorVersion: RECLAIM_VERSION,
    });
    expect(incident.ruleInfo!.revision).toMatch(/^[0-9a-f]{12}$/);
  });

  it("a rule's revision changes with its content and not with the order of its keys", () => {
    const a = rule("lockout", { ladder: [{ rung: "probe" }] }).rule;
    const same = RemediationRule.parse(JSON.parse(JSON.stringify({ kind: a.kind, spec: a.spec, metadata: a.metadata, apiVersion: a.apiVersion })));
    const other = rule("lockout", { ladder: [{ rung: "probe" }, { rung: "force" }] }).rule;
    expect(ruleRevision(same)).toBe(ruleRevision(a));
    expect(ruleRevision(other)).not.toBe(ruleRevision(a));
  });

  it("a runbook must be an http(s) URL", () => {
    const input = (runbook: string): unknown => ({
      apiVersion: "reclaim.dev/v1",
      kind: "RemediationRule",
      metadata: { name: "x" },
      spec: { trigger: { log: { event: ["factory.hard_limit"] } }, ladder: [{ rung: "probe" }], runbook },
    });
    expect(RemediationRule.safeParse(input("https://runbooks.example.com/x")).success).toBe(true);
    const refused = RemediationRule.safeParse(input("javascript:alert(1)"));
    expect(refused.success).toBe(false);
    expect(refused.error?.issues[0]?.message).toBe("runbook must be an http(s) URL");
  });

  it("a Cloud Logging entry links to the Logs Explorer on its insertId, in its project, around its time", () => {
    const entry = { ...hardLimit(USER, T0), insertId: "1abc2def", resource: { project_id: "chat-prod-123", pod_name: "factory-0" } };
    const url = new URL(evidenceOf(entry).logsUrl!);
    expect(url.origin).toBe("https://console.cloud.google.com");
    expect(url.searchParams.get("project")).toBe("chat-prod-123");
    expect(decodeURIComponent(url.pathname)).toContain('query=insertId="1abc2def"');
    expect(decodeURIComponent(url.pathname)).toContain(`cursorTimestamp=${new Date(T0).toISOString()}`);
  });

  it("no link without an insertId or a project id that can be trusted to name a project", () => {
    expect(evidenceOf({ ...hardLimit(USER, T0), insertId: null, resource: { project_id: "chat-prod-123" } }).logsUrl).toBeUndefined();
    expect(evidenceOf({ ...hardLimit(USER, T0), insertId: "x", resource: { project_id: "evil.com/?a=" } }).logsUrl).toBeUndefined();
    expect(evidenceOf({ ...hardLimit(USER, T0), insertId: "x", resource: {} }).logsUrl).toBeUndefined();
  });

  it("a file entry keeps its path and byte offset", () => {
    const entry = { ...hardLimit(USER, T0), origin: { path: "/var/log/factory.log", offset: 4096 } };
    expect(evidenceOf(entry).file).toEqual({ path: "/var/log/factory.log", offset: 4096 });
    expect(evidenceOf(hardLimit(USER, T0)).file).toBeUndefined();
  });

  it("records written before these fields existed still read", () => {
    const incident = opened();
    const { ruleInfo: _r, operatorVersion: _v, ...old } = incident;
    expect(Incident.safeParse(old).success).toBe(true);
  });
});

describe("a record as a notice", () => {
  const options = { externalUrl: "https://reclaim.example.com/ops/", now: T0 + 1000, acknowledged: null };

  it("an open incident fires, with its rule's description, runbook and a link to it", () => {
    const notice = noticeOf(opened({ description: "Locked out.", runbook: "https://rb.example.com/x" }), options);
    expect(notice).toMatchObject({
      kind: "incident",
      rule: "lockout",
      userId: USER,
      pod: "factory-0",
      namespace: "chat",
      status: "open",
      firing: true,
      needsHuman: false,
      endsAt: null,
      runbookUrl: "https://rb.example.com/x",
    });
    expect(notice.description).toMatch(/^Locked out\.\nLast decision \(triggered\)/);
    expect(notice.link).toBe(`https://reclaim.example.com/ops/incidents/${notice.subject}`);
  });

  it("a resolved incident ends at its close", () => {
    const incident = opened();
    close(incident, "resolved", T0 + 900, "verified");
    const notice = noticeOf(incident, options);
    expect(notice).toMatchObject({ firing: false, needsHuman: false, endsAt: incident.closedAt });
  });

  it.each(["failed", "escalated", "interrupted"] as const)("a %s incident needs a human and fires until acknowledged", (status) => {
    const incident = opened();
    close(incident, status, T0 + 900, "gave up");
    expect(noticeOf(incident, options)).toMatchObject({ firing: true, needsHuman: true, endsAt: null });
    expect(noticeOf(incident, options).summary).toContain("needs a human");
    const acked = noticeOf(incident, { ...options, acknowledged: { by: "alice", at: new Date(T0 + 2000).toISOString() } });
    expect(acked).toMatchObject({ firing: false, needsHuman: false, acknowledged: { by: "alice" } });
  });

  it("a dry run never needs a human", () => {
    const incident = newIncident(trigger(), { now: T0, control: "(none)", dryRun: true, status: "open" });
    close(incident, "failed", T0 + 1, "x");
    expect(noticeOf(incident, options)).toMatchObject({ needsHuman: false, firing: false });
  });

  it("no link without an external URL; a link never lets the id out of its path segment", () => {
    expect(noticeOf(opened(), { ...options, externalUrl: null }).link).toBeNull();
    expect(incidentLink("http://x", "a/../b?c")).toBe("http://x/incidents/a%2F..%2Fb%3Fc");
  });

  it("a circuit opening fires and names the incidents that opened it and when it closes", () => {
    const notice = circuitNotice(
      { rule: "lockout", open: true, severity: "high", incidents: ["i-1", "i-2", "i-3"], openedAt: T0, closesAt: T0 + 1_800_000, description: null, runbook: null },
      { externalUrl: null, now: T0 },
    );
    expect(notice).toMatchObject({ subject: "circuit:lockout", kind: "circuit", status: "open", firing: true, needsHuman: true });
    expect(notice.description).toContain("(i-1, i-2, i-3)");
    expect(notice.description).toContain(new Date(T0 + 1_800_000).toISOString());
    const closed = circuitNotice(
      { rule: "lockout", open: false, severity: "high", incidents: [], openedAt: T0, closesAt: null, description: null, runbook: null },
      { externalUrl: null, now: T0 + 1_800_000 },
    );
    expect(closed).toMatchObject({ status: "closed", firing: false, needsHuman: false, endsAt: new Date(T0 + 1_800_000).toISOString() });
  });
});

describe("PagerDuty's action for an incident's notice", () => {
  const options = { externalUrl: null, now: T0 + 1000, acknowledged: null };
  const ack = { by: "alice", at: new Date(T0 + 2000).toISOString() };

  it("a failed incident triggers; acknowledged, it is acknowledged (not resolved: the person resolves it when done)", () => {
    const incident = opened();
    close(incident, "failed", T0 + 900, "gave up");
    expect(pagerDutyAction(noticeOf(incident, options))).toBe("trigger");
    expect(pagerDutyAction(noticeOf(incident, { ...options, acknowledged: ack }))).toBe("acknowledge");
  });

  it("an open incident triggers, and resolves when the automation resolves it, acknowledged or not", () => {
    const incident = opened();
    expect(pagerDutyAction(noticeOf(incident, options))).toBe("trigger");
    expect(pagerDutyAction(noticeOf(incident, { ...options, acknowledged: ack }))).toBe("acknowledge");
    close(incident, "resolved", T0 + 900, "verified");
    expect(pagerDutyAction(noticeOf(incident, options))).toBe("resolve");
    expect(pagerDutyAction(noticeOf(incident, { ...options, acknowledged: ack }))).toBe("resolve");
  });
});
