/**
 * The notifications file: a valid one loads, routes as its doc comment says
 * and delivers over real HTTP; every refusal is at the exact `file:line:col`
 * of the node it is about; secrets (inline or from the environment) never
 * reach an error message.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadNotifications, type NotificationsLoad } from "../../../src/operator/notify/config.js";
import type { Notice } from "../../../src/operator/notify/types.js";
import { startPagerDutyServer, startSlackServer, startWebhookServer, type LocalReceiver } from "../../support/receivers.js";

const ROUTING_KEY = "R0123456789abcdef0123456789abcde";
const SLACK_URL = "https://hooks.slack.com/services/T0RECLAIM/B0RECLAIM/slacksecretpath0123";
const AUDIT_URL = "https://audit.example/hook?token=auditsecret0123";
const AUTHORIZATION = "Bearer headersecret0123";
const ENV = { PAGERDUTY_ROUTING_KEY: ROUTING_KEY, SLACK_WEBHOOK_URL: SLACK_URL, AUDIT_WEBHOOK_URL: AUDIT_URL, AUDIT_AUTHORIZATION: AUTHORIZATION };

/** The documented example; tests replace lines by number (1-based) to make each mistake. */
const VALID = [
  /*  1 */ "apiVersion: reclaim.dev/v1",
  /*  2 */ "kind: Notifications",
  /*  3 */ "receivers:",
  /*  4 */ "  - name: oncall-pager",
  /*  5 */ "    pagerduty: { routingKeyFrom: PAGERDUTY_ROUTING_KEY }",
  /*  6 */ "  - name: team-chat",
  /*  7 */ "    slack: { webhookUrlFrom: SLACK_WEBHOOK_URL }",
  /*  8 */ "  - name: audit",
  /*  9 */ "    webhook:",
  /* 10 */ "      urlFrom: AUDIT_WEBHOOK_URL",
  /* 11 */ "      headers:",
  /* 12 */ "        - { name: Authorization, valueFrom: AUDIT_AUTHORIZATION }",
  /* 13 */ "routes:",
  /* 14 */ "  - match: { needsHuman: true }",
  /* 15 */ "    receivers: [oncall-pager]",
  /* 16 */ "  - match: { rule: [factory-lockout], severity: [critical, high], status: [failed, escalated] }",
  /* 17 */ "    receivers: [team-chat]",
  /* 18 */ "  - receivers: [audit]",
];

/** VALID with line `n` replaced by `text` (several lines, or none, for an array). */
function edit(changes: Record<number, string | string[]>): string {
  return VALID.flatMap((line, i) => changes[i + 1] ?? [line]).join("\n");
}

let dir: string;
let file: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-notify-"));
  file = join(dir, "notifications.yaml");
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function load(yaml: string, env: Record<string, string | undefined> = ENV): Promise<NotificationsLoad> {
  await writeFile(file, yaml);
  return loadNotifications(file, { env });
}

async function errors(yaml: string, env?: Record<string, string | undefined>): Promise<string[]> {
  const result = await load(yaml, env);
  if (result.ok) throw new Error("expected the file to be refused");
  return result.errors.map((e) => e.format().replace(file, "F"));
}

function notice(over: Partial<Notice>): Notice {
  return {
    subject: "20261126T120000Z-factory-lockout-1a2b3c4d",
    kind: "incident",
    rule: "factory-lockout",
    userId: "u1",
    pod: "factory-0",
    namespace: "chat",
    severity: "critical",
    status: "failed",
    needsHuman: true,
    firing: true,
    acknowledged: null,
    summary: "factory-lockout: user u1 (failed)",
    description: "A user is locked out.",
    runbookUrl: null,
    link: null,
    startsAt: "2026-11-26T12:00:00.000Z",
    endsAt: null,
    at: "2026-11-26T12:03:00.000Z",
    ...over,
  };
}

describe("a valid file", () => {
  it("loads its receivers in file order", async () => {
    const result = await load(VALID.join("\n"));
    if (!result.ok) throw new Error(result.errors.map((e) => e.format()).join("\n"));
    expect(result.receivers.map((r) => [r.name, r.type])).toEqual([
      ["oncall-pager", "pagerduty"],
      ["team-chat", "slack"],
      ["audit", "webhook"],
    ]);
  });

  it.each<[string, Partial<Notice>, string[]]>([
    ["needs a human, matches the chat route too", { needsHuman: true, severity: "critical", status: "failed" }, ["oncall-pager", "team-chat", "audit"]],
    ["escalated high lockout", { needsHuman: false, severity: "high", status: "escalated" }, ["team-chat", "audit"]],
    ["a warning: only the catch-all", { needsHuman: false, severity: "warning", status: "failed" }, ["audit"]],
    ["a resolved lockout", { needsHuman: false, status: "resolved" }, ["audit"]],
    ["another rule that needs a human", { rule: "other-rule", needsHuman: true }, ["oncall-pager", "audit"]],
  ])("routes %s to every matching route's receivers", async (_, over, expected) => {
    const result = await load(VALID.join("\n"));
    if (!result.ok) throw new Error("refused");
    expect(result.route(notice(over)).map((r) => r.name)).toEqual(expected);
  });

  it("a notice no route matches goes nowhere; a receiver named by two matching routes gets it once; kind matches", async () => {
    const result = await load(
      edit({
        14: "  - match: { kind: [circuit] }",
        18: ["  - match: { needsHuman: true }", "    receivers: [audit, oncall-pager]", "  - match: {}", "    receivers: [team-chat]"],
      }),
    );
    if (!result.ok) throw new Error(result.errors.map((e) => e.format()).join("\n"));
    const names = (over: Partial<Notice>): string[] => result.route(notice(over)).map((r) => r.name);
    expect(names({ kind: "circuit", needsHuman: false, rule: "x" })).toEqual(["oncall-pager", "team-chat"]);
    expect(names({ needsHuman: true, severity: "warning" })).toEqual(["audit", "oncall-pager", "team-chat"]);
    // team-chat by the lockout route and by the catch-all: once.
    expect(names({ needsHuman: true, severity: "critical", status: "failed" })).toEqual(["team-chat", "audit", "oncall-pager"]);
    const noCatchAll = await load(VALID.slice(0, 17).join("\n"));
    if (!noCatchAll.ok) throw new Error("refused");
    expect(noCatchAll.route(notice({ needsHuman: false, severity: "info", status: "resolved" }))).toEqual([]);
  });

  it("delivers through the receivers it built, secrets read from the environment", async () => {
    const servers: LocalReceiver[] = [];
    try {
      const pd = await startPagerDutyServer();
      const slack = await startSlackServer();
      const hook = await startWebhookServer({ requireHeader: { name: "Authorization", value: AUTHORIZATION } });
      servers.push(pd, slack, hook);
      const yaml = edit({ 5: "    pagerduty: { routingKeyFrom: PAGERDUTY_ROUTING_KEY, endpoint: " + pd.eventsUrl + " }" });
      // A Secret made from a file ends in a newline: it is trimmed, not refused.
      const result = await load(yaml, { ...ENV, PAGERDUTY_ROUTING_KEY: `${ROUTING_KEY}\n`, SLACK_WEBHOOK_URL: slack.webhookUrl, AUDIT_WEBHOOK_URL: hook.url });
      if (!result.ok) throw new Error(result.errors.map((e) => e.format()).join("\n"));
      const n = notice({ needsHuman: true });
      const deliveries = await Promise.all(result.route(n).map((r) => r.send(n, AbortSignal.timeout(5000))));
      expect(deliveries).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
      expect([(await pd.next()).status, (await slack.next()).status, (await hook.next()).status]).toEqual([202, 200, 204]);
      expect(pd.alerts.get(n.subject)?.routingKey).toBe(ROUTING_KEY);
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  });
});

describe("refusals, each at its line and column", () => {
  it("an unknown key", async () => {
    expect(await errors(edit({ 16: "  - match: { rules: [factory-lockout] }" }))).toEqual([
      "F:16:14: routes[1].match.rules: unknown field (allowed here: rule, severity, status, kind, needsHuman)",
    ]);
    expect(await errors(edit({ 2: ["kind: Notifications", "namespace: chat"] }))).toEqual([
      "F:3:1: namespace: unknown field (allowed here: apiVersion, kind, receivers, routes)",
    ]);
    expect(await errors(edit({ 13: "route:" }))).toEqual([
      "F:1:1: routes: is required",
      "F:13:1: route: unknown field (allowed here: apiVersion, kind, receivers, routes)",
    ]);
  });

  it("a wrong kind or a misspelt value", async () => {
    expect(await errors(edit({ 2: "kind: Notification", 16: "  - match: { severity: [critcal] }" }))).toEqual([
      'F:2:7: kind: must be "Notifications", got "Notification"',
      'F:16:25: routes[1].match.severity[0]: must be one of "critical", "high", "warning", "info", got "critcal"',
    ]);
  });

  it("a receiver with no kind, and one with two", async () => {
    expect(await errors(edit({ 9: [], 10: [], 11: [], 12: [] }))).toEqual(["F:8:5: receivers[2]: needs one kind: webhook, slack or pagerduty"]);
    expect(await errors(edit({ 7: ["    slack: { webhookUrlFrom: SLACK_WEBHOOK_URL }", "    pagerduty: { routingKeyFrom: PAGERDUTY_ROUTING_KEY }"] }))).toEqual([
      "F:8:5: receivers[1].pagerduty: a receiver has exactly one kind, and this one is already slack: make another receiver",
    ]);
  });

  it("a duplicate name, an invalid name", async () => {
    expect(await errors(edit({ 8: "  - name: team-chat" }))).toEqual([
      'F:8:11: receivers[2].name: duplicate receiver name "team-chat", first used by receivers[1]',
      'F:18:17: routes[2].receivers[0]: no receiver is named "audit" (receivers: oncall-pager, team-chat)',
    ]);
    expect(await errors(edit({ 6: "  - name: Team_Chat" }))).toEqual([
      "F:6:11: receivers[1].name: must be lowercase letters, digits and '-', start and end with a letter or digit, at most 63 characters",
    ]);
  });

  it.each(["new", "rejected", "alertmanager-1"])("a reserved name: %s (the outbox's folders, the --alertmanager receivers)", async (name) => {
    const found = await errors(edit({ 8: `  - name: ${name}` }));
    expect(found[0]).toMatch(/^F:8:11: receivers\[2\]\.name: is reserved \(new, rejected are the outbox's own folders; alertmanager-N names/);
  });

  it("a route naming an unknown receiver", async () => {
    expect(await errors(edit({ 17: "    receivers: [team-chat, pager]" }))).toEqual([
      'F:17:28: routes[1].receivers[1]: no receiver is named "pager" (receivers: oncall-pager, team-chat, audit)',
    ]);
  });

  it("a secret written inline: use the …From form", async () => {
    const slackInline = "https://hooks.slack.com/services/T0/B0/inlinesecret0001";
    const keyInline = "inlinesecret0002inlinesecret0002";
    const headerInline = "Bearer inlinesecret0003";
    const found = await errors(
      edit({
        5: `    pagerduty: { routingKey: ${keyInline} }`,
        7: `    slack: { url: ${slackInline} }`,
        12: `        - { name: Authorization, value: ${headerInline} }`,
      }),
    );
    expect(found).toEqual([
      "F:5:5: receivers[0].pagerduty.routingKeyFrom: is required",
      "F:5:18: receivers[0].pagerduty.routingKey: a secret is never written in this file: put it in an environment variable and name the variable with routingKeyFrom",
      "F:7:5: receivers[1].slack.webhookUrlFrom: is required",
      "F:7:14: receivers[1].slack.url: a secret is never written in this file: put it in an environment variable and name the variable with webhookUrlFrom",
      "F:12:11: receivers[2].webhook.headers[0].valueFrom: is required",
      "F:12:34: receivers[2].webhook.headers[0].value: a secret is never written in this file: put it in an environment variable and name the variable with valueFrom",
    ]);
    for (const secret of [slackInline, keyInline, headerInline, "inlinesecret"]) for (const e of found) expect(e).not.toContain(secret);
  });

  it("a value where a variable's name belongs is refused without being quoted", async () => {
    const hexKey = "e93facc04764012d7bfb002500d5d1a6"; // what PagerDuty integration keys look like
    const found = await errors(edit({ 5: `    pagerduty: { routingKeyFrom: ${hexKey} }`, 7: `    slack: { webhookUrlFrom: "${SLACK_URL}" }` }));
    expect(found).toEqual([
      "F:5:34: receivers[0].pagerduty.routingKeyFrom: must name an environment variable (upper-case letters, digits and _, such as SLACK_WEBHOOK_URL), not hold a value",
      "F:7:30: receivers[1].slack.webhookUrlFrom: must name an environment variable (upper-case letters, digits and _, such as SLACK_WEBHOOK_URL), not hold a value",
    ]);
    expect(found.join("\n")).not.toContain("slacksecretpath");
    expect(found.join("\n")).not.toContain(hexKey);
  });

  it("a variable that is not set, or empty", async () => {
    expect(await errors(VALID.join("\n"), { ...ENV, SLACK_WEBHOOK_URL: undefined, PAGERDUTY_ROUTING_KEY: " \n" }))
      .toEqual([
        "F:5:34: receivers[0].pagerduty.routingKeyFrom: environment variable PAGERDUTY_ROUTING_KEY is empty",
        "F:7:30: receivers[1].slack.webhookUrlFrom: environment variable SLACK_WEBHOOK_URL is not set",
      ]);
  });

  it("a variable that holds no http(s) URL, a URL with credentials, a routing key of the wrong length, a header value on two lines; none quoted", async () => {
    const values = {
      SLACK_WEBHOOK_URL: "ftp://hooks.example/slacksecretpath0123",
      AUDIT_WEBHOOK_URL: "https://user:auditsecret0123@audit.example/hook",
      PAGERDUTY_ROUTING_KEY: `${ROUTING_KEY}x`,
      AUDIT_AUTHORIZATION: "Bearer headersecret0123\r\nX-Evil: 1",
    };
    const found = await errors(VALID.join("\n"), values);
    expect(found).toEqual([
      "F:5:34: receivers[0].pagerduty.routingKeyFrom: environment variable PAGERDUTY_ROUTING_KEY does not hold a PagerDuty routing key (an integration key is 32 characters)",
      "F:7:30: receivers[1].slack.webhookUrlFrom: environment variable SLACK_WEBHOOK_URL does not hold an http(s) URL",
      "F:10:16: receivers[2].webhook.urlFrom: environment variable AUDIT_WEBHOOK_URL holds a URL with a user name or password, which fetch refuses: send credentials in a header (webhook headers with valueFrom)",
      "F:12:45: receivers[2].webhook.headers[0].valueFrom: environment variable AUDIT_AUTHORIZATION does not hold a valid header value (one line of Latin-1 text)",
    ]);
    for (const e of found) for (const secret of ["slacksecretpath", "auditsecret", ROUTING_KEY, "headersecret"]) expect(e).not.toContain(secret);
    expect(await errors(VALID.join("\n"), { ...ENV, AUDIT_WEBHOOK_URL: "not a url" })).toEqual([
      "F:10:16: receivers[2].webhook.urlFrom: environment variable AUDIT_WEBHOOK_URL does not hold a URL",
    ]);
  });

  it("invalid YAML, an empty file, a missing file", async () => {
    expect(await errors(edit({ 17: "    receivers: [team-chat" }))).toEqual([expect.stringMatching(/^F:18:\d+: invalid YAML: /)]);
    expect(await errors("# nothing here\n")).toEqual(["F:1:1: the file is empty; a Notifications file holds apiVersion, kind, receivers and routes"]);
    const missing = await loadNotifications(join(dir, "absent.yaml"), { env: ENV });
    expect(missing.ok ? [] : missing.errors.map((e) => e.format())).toEqual([`${join(dir, "absent.yaml")}:1:1: cannot read: no such file`]);
  });
});
