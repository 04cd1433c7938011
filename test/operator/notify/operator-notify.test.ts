/**
 * On-call told where they are (issue 13, ADR 23), end to end: a real
 * factory locks a user out, the operator remediates, and what it records is
 * posted to a real Alertmanager (routing to local webhooks) and to local
 * Slack and PagerDuty servers that validate their real formats. An incident
 * the automation gives up on pages (`needs_human`); `reclaim incidents ack`
 * acknowledges it in PagerDuty and ends the page.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { isRefusal } from "../../../src/demo/clients.js";
import { describeWithAlertmanager, startAlertmanager, startWebhookReceiver, type TestAlertmanager, type WebhookReceiver } from "../../support/alertmanager.js";
import { runCli } from "../../support/cli.js";
import { eventually, startTestFactory, type TestFactory } from "../../support/factory.js";
import { startTestOperator, tempDir, type TestOperator } from "../../support/operator.js";
import { startPagerDutyServer, startSlackServer, type PagerDutyServer, type SlackServer } from "../../support/receivers.js";

const USER = "105945141827451681156";
const ROUTING_KEY = "0123456789abcdef0123456789abcdef";

/** The outage's rule with one rung, `probe`: live tabs are not zombies, so against them it cannot free a slot. */
const PROBE_ONLY = `apiVersion: reclaim.dev/v1
kind: RemediationRule
metadata: { name: lockout }
spec:
  description: A user is locked out of chat at the manager limit.
  runbook: https://runbooks.example.com/reclaim/lockout
  trigger: { log: { event: [factory.hard_limit], minSeverity: ERROR } }
  key: [userId, pod]
  ladder:
    - { rung: probe, timeout: 5s }
  verify: { settle: 1s, timeout: 3s }
  incident: { severity: high, title: "Chat lockout: user {{userId}} on {{pod}}" }
`;

let factory: TestFactory | undefined;
let operator: TestOperator | undefined;
let am: TestAlertmanager | undefined;
let hook: WebhookReceiver | undefined;
let slack: SlackServer | undefined;
let pagerduty: PagerDutyServer | undefined;
afterEach(async () => {
  await operator?.close();
  await factory?.close();
  await am?.stop();
  await hook?.close();
  await slack?.close();
  await pagerduty?.close();
  operator = factory = am = hook = slack = pagerduty = undefined;
});

/** Alertmanager routing `needs_human="true"` to /page and everything to /visible, one group per incident. */
function amConfig(url: string): unknown {
  const webhook = (path: string): unknown => ({ webhook_configs: [{ url: `${url}${path}`, send_resolved: true }] });
  return {
    route: {
      receiver: "visible",
      group_by: ["incident"],
      group_wait: "0s",
      group_interval: "1s",
      repeat_interval: "1h",
      routes: [{ receiver: "page", matchers: ['needs_human="true"'], continue: true }, { receiver: "visible" }],
    },
    receivers: [
      { name: "visible", ...(webhook("/visible") as object) },
      { name: "page", ...(webhook("/page") as object) },
    ],
  };
}

describeWithAlertmanager("the operator tells on-call through Alertmanager, Slack and PagerDuty", () => {
  it("a lockout it resolves fires in Alertmanager with its labels and links, then ends; nobody is paged", async () => {
    hook = await startWebhookReceiver();
    am = await startAlertmanager({ config: amConfig(hook.url) });
    const dir = await tempDir();
    const logFile = join(dir, "factory.log");
    factory = await startTestFactory({ logFile, probeTimeoutMs: 300, cleanup: "legacy" });
    operator = await startTestOperator({
      dir,
      source: `file:${logFile}`,
      control: factory.controlUrl,
      rule: PROBE_ONLY,
      notifications: { alertmanagers: [am.url], file: null, externalUrl: "https://reclaim.example.com" },
    });
    for (let i = 0; i < 20; i++) await factory.open(USER, "no-pong");
    expect(isRefusal(await factory.attempt(USER))).toBe(true);

    const [incident] = await operator.until((all) => all.some((i) => i.status === "resolved"), "the incident to resolve");
    const id = incident!.id;
    const firing = await hook.waitFor((p, path) => path === "/visible" && p.alerts.some((a) => a.labels.incident === id && a.status === "firing"));
    const alert = firing.alerts.find((a) => a.labels.incident === id)!;
    expect(alert.labels).toMatchObject({ alertname: "ReclaimIncident", rule: "lockout", user: USER, pod: "test-factory-0", severity: "high", needs_human: "false" });
    expect(alert.annotations).toMatchObject({
      runbook_url: "https://runbooks.example.com/reclaim/lockout",
      incident_url: `https://reclaim.example.com/incidents/${id}`,
    });
    expect(alert.annotations.description).toContain("A user is locked out of chat at the manager limit.");
    await hook.waitFor((p, path) => path === "/visible" && p.status === "resolved" && p.alerts.every((a) => a.labels.incident === id && a.status === "resolved"));
    expect(hook.received.filter((r) => r.path === "/page")).toEqual([]);
  });

  it("an incident it gives up on pages (Alertmanager, PagerDuty) and posts to Slack; `incidents ack` acknowledges it and ends the page", async () => {
    hook = await startWebhookReceiver();
    am = await startAlertmanager({ config: amConfig(hook.url) });
    slack = await startSlackServer();
    pagerduty = await startPagerDutyServer();
    const dir = await tempDir();
    const logFile = join(dir, "factory.log");
    const notifications = join(dir, "notifications.yaml");
    await writeFile(
      notifications,
      [
        "apiVersion: reclaim.dev/v1",
        "kind: Notifications",
        "receivers:",
        "  - name: oncall-pager",
        `    pagerduty: { routingKeyFrom: PD_ROUTING_KEY, endpoint: "${pagerduty.eventsUrl}" }`,
        "  - name: team-chat",
        "    slack: { webhookUrlFrom: SLACK_WEBHOOK_URL }",
        "routes:",
        "  - match: { needsHuman: true }",
        "    receivers: [oncall-pager]",
        "  - receivers: [team-chat]",
        "",
      ].join("\n"),
    );
    factory = await startTestFactory({ logFile, probeTimeoutMs: 300, cleanup: "legacy" });
    operator = await startTestOperator(
      {
        dir,
        source: `file:${logFile}`,
        control: factory.controlUrl,
        rule: PROBE_ONLY,
        notifications: { alertmanagers: [am.url], file: notifications, externalUrl: null },
      },
      { env: { PD_ROUTING_KEY: ROUTING_KEY, SLACK_WEBHOOK_URL: slack.webhookUrl } },
    );
    // 20 live tabs: the probe finds no zombie, the user stays refused, the ladder has nothing left.
    for (let i = 0; i < 20; i++) await factory.open(USER);
    expect(isRefusal(await factory.attempt(USER))).toBe(true);
    const incident = await operator.ended(USER);
    expect(["failed", "escalated"]).toContain(incident.status);

    const page = await hook.waitFor((p, path) => path === "/page" && p.alerts.some((a) => a.labels.incident === incident.id && a.status === "firing"));
    expect(page.alerts.find((a) => a.labels.incident === incident.id)!.labels).toMatchObject({ needs_human: "true", status: incident.status });
    await eventually(() => pagerduty!.alerts.get(incident.id)?.status === "triggered", 10_000, "the PagerDuty alert to trigger");
    await eventually(() => slack!.requests.some((r) => r.status === 200 && r.text.includes("needs a human")), 10_000, "a Slack message");

    const acked = await runCli(["incidents", "ack", incident.id, "--by", "alice", "--dir", join(dir, "incidents"), "--state", join(dir, "state")]);
    expect(acked.stderr).toBe("");
    expect(acked.code).toBe(0);
    expect(acked.stdout).toContain("notifications: the acknowledgement is queued");
    await eventually(() => pagerduty!.alerts.get(incident.id)?.status === "acknowledged", 10_000, "the PagerDuty alert to be acknowledged");
    await hook.waitFor(
      (p, path) => path === "/page" && p.alerts.some((a) => a.labels.incident === incident.id && a.labels.needs_human === "true" && a.status === "resolved"),
    );
  });
});
