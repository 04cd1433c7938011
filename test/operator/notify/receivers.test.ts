/**
 * The direct receivers over real HTTP, against local servers that check what
 * they receive the way Slack and PagerDuty do (test/support/receivers.ts):
 * each receiver's wire format is accepted, a malformed one is refused (so the
 * checks bite), hostile record values cannot mention or link in Slack, long
 * values are cut to the limits, PagerDuty's alert follows one dedup_key from
 * trigger to resolve, and 429/400 become retryable/permanent deliveries that
 * name the host only.
 */
import { afterEach, describe, expect, it } from "vitest";
import { postJson } from "../../../src/operator/notify/http.js";
import { PAGERDUTY_SEVERITY, PagerDutyReceiver, pagerDutyEvent } from "../../../src/operator/notify/pagerduty.js";
import { SLACK_LIMITS, SlackReceiver, slackMessage, truncateEscaped, escapeSlack } from "../../../src/operator/notify/slack.js";
import type { Delivery, Notice, NoticeSeverity } from "../../../src/operator/notify/types.js";
import { WebhookReceiver } from "../../../src/operator/notify/webhook.js";
import {
  slackControlSequences,
  slackDisplayed,
  startPagerDutyServer,
  startSlackServer,
  startWebhookServer,
  type LocalReceiver,
} from "../../support/receivers.js";

const ROUTING_KEY = "R0123456789abcdef0123456789abcde"; // 32 characters, as PagerDuty's
const INCIDENT_LINK = "http://reclaim.example:8080/incidents/20261126T120000Z-factory-lockout-1a2b3c4d";
const RUNBOOK = "https://runbooks.example/reclaim/factory-lockout?team=chat&tier=1";

/** A failed lockout incident that needs a human; `over` replaces any part of it. */
function notice(over: Partial<Notice> = {}): Notice {
  return {
    subject: "20261126T120000Z-factory-lockout-1a2b3c4d",
    kind: "incident",
    rule: "factory-lockout",
    userId: "105945141827451681156",
    pod: "factory-7d9f8-abcde",
    namespace: "chat",
    severity: "critical",
    status: "failed",
    needsHuman: true,
    firing: true,
    acknowledged: null,
    summary: "factory-lockout: user 105945141827451681156 locked out (failed)",
    description: "A user holds the maximum number of WebSocket managers and cannot open chat.",
    runbookUrl: RUNBOOK,
    link: INCIDENT_LINK,
    startsAt: "2026-11-26T12:00:00.000Z",
    endsAt: null,
    at: "2026-11-26T12:03:00.000Z",
    ...over,
  };
}

const servers: LocalReceiver[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
async function started<T extends LocalReceiver>(server: Promise<T>): Promise<T> {
  const s = await server;
  servers.push(s);
  return s;
}

const signal = (): AbortSignal => AbortSignal.timeout(5000);

function failed(d: Delivery): Extract<Delivery, { ok: false }> {
  if (d.ok) throw new Error("expected a failed delivery");
  return d;
}

/** Every text a Slack message carries: the fallback and each block's text objects. */
function slackTexts(body: { text: string; blocks: { text?: { text: string }; fields?: { text: string }[]; elements?: { text: string }[] }[] }): string[] {
  return [body.text, ...body.blocks.flatMap((b) => [b.text?.text, ...(b.fields ?? []).map((f) => f.text), ...(b.elements ?? []).map((e) => e.text)])].filter(
    (t): t is string => t !== undefined,
  );
}

describe("webhook", () => {
  it("posts {version: 1, notice} with its extra headers", async () => {
    const server = await started(startWebhookServer({ requireHeader: { name: "Authorization", value: "Bearer audit-token-123" } }));
    const receiver = new WebhookReceiver({ name: "audit", url: server.url, headers: { Authorization: "Bearer audit-token-123" } });
    expect(await receiver.send(notice(), signal())).toEqual({ ok: true });
    const req = await server.next();
    expect(req.status).toBe(204);
    expect(req.body).toEqual({ version: "1", notice: notice() });
  });

  it("a refusal (401 without the header) is permanent and names only the host", async () => {
    const server = await started(startWebhookServer({ requireHeader: { name: "Authorization", value: "Bearer audit-token-123" } }));
    const d = failed(await new WebhookReceiver({ name: "audit", url: `${server.url}?token=s3cret` }).send(notice(), signal()));
    expect(d).toMatchObject({ permanent: true, retryAfterMs: null });
    expect(d.detail).toBe(`http://127.0.0.1:${new URL(server.url).port}: HTTP 401 unauthorized`);
  });
});

describe("slack", () => {
  it("sends text and blocks that Slack accepts: header, fields, description, links", async () => {
    const server = await started(startSlackServer());
    expect(await new SlackReceiver({ name: "team-chat", webhookUrl: server.webhookUrl }).send(notice(), signal())).toEqual({ ok: true });
    const req = await server.next();
    expect([req.status, req.answer, req.problem]).toEqual([200, "ok", null]);
    expect(req.body.text).toBe("[CRITICAL] factory-lockout: user 105945141827451681156 locked out (failed)");
    const acked = slackMessage(notice({ acknowledged: { by: "alice <!here>", at: "2026-11-26T12:05:00.000Z" } }));
    expect(acked.text).toBe("[CRITICAL] factory-lockout: user 105945141827451681156 locked out (failed) (acknowledged by alice &lt;!here&gt;)");
    expect(acked.blocks[1]).toMatchObject({ fields: expect.arrayContaining([{ type: "mrkdwn", text: "*Status*\nfailed, acknowledged by alice &lt;!here&gt;" }]) });
    expect(req.body.blocks.map((b: { type: string }) => b.type)).toEqual(["header", "section", "section", "context"]);
    expect(req.body.blocks[0].text).toEqual({ type: "plain_text", text: notice().summary });
    expect(req.body.blocks[1].fields.map((f: { text: string }) => f.text)).toEqual([
      "*Rule*\nfactory-lockout",
      "*User*\n105945141827451681156",
      "*Pod*\nchat/factory-7d9f8-abcde",
      "*Severity*\ncritical",
      "*Status*\nfailed",
    ]);
    expect(req.body.blocks[2].text.text).toBe(notice().description);
    expect(req.body.blocks[3].elements.map((e: { text: string }) => e.text)).toEqual([
      `<${INCIDENT_LINK}|Incident>`,
      // `&` in a link is escaped too: Slack decodes it back in the URL.
      "<https://runbooks.example/reclaim/factory-lockout?team=chat&amp;tier=1|Runbook>",
    ]);
  });

  it("the local Slack refuses what Slack refuses: a header over 150 characters, fields over 10, no text", async () => {
    const server = await started(startSlackServer());
    const good = slackMessage(notice());
    const header = { ...good, blocks: [{ type: "header", text: { type: "plain_text", text: "x".repeat(151) } }] };
    const fields = { ...good, blocks: [{ type: "section", fields: Array.from({ length: 11 }, () => ({ type: "mrkdwn", text: "x" })) }] };
    for (const body of [header, fields]) {
      const d = failed(await postJson(server.webhookUrl, body, { signal: signal() }));
      expect(d).toMatchObject({ permanent: true, retryAfterMs: null });
      expect(d.detail).toMatch(/HTTP 400 invalid_blocks$/);
    }
    expect(failed(await postJson(server.webhookUrl, {}, { signal: signal() })).detail).toMatch(/HTTP 400 no_text$/);
  });

  it("a hostile user id or log text cannot mention anyone or hide a link", async () => {
    const server = await started(startSlackServer());
    const hostile = "<!channel> <http://evil.example|click> & <@U024BE7LH>";
    const n = notice({ userId: hostile, summary: `lockout of ${hostile}`, description: `last log line: ${hostile}`, pod: "<!here>" });
    expect(await new SlackReceiver({ name: "team-chat", webhookUrl: server.webhookUrl }).send(n, signal())).toEqual({ ok: true });
    const req = await server.next();
    expect(req.status).toBe(200);
    const texts = slackTexts(req.body);
    // The only control sequences in the whole message are the operator's own two links.
    expect(texts.flatMap(slackControlSequences)).toEqual([`<${INCIDENT_LINK}|Incident>`, "<https://runbooks.example/reclaim/factory-lockout?team=chat&amp;tier=1|Runbook>"]);
    // And on-call reads the value as it was.
    expect(slackDisplayed(req.body.blocks[1].fields[1].text)).toBe(`*User*\n${hostile}`);
    expect(slackDisplayed(req.body.blocks[0].text.text)).toBe(`lockout of ${hostile}`);
    expect(slackDisplayed(req.body.text)).toContain(hostile);
  });

  it("a runbook that is not an http(s) URL is not linked", () => {
    const message = slackMessage(notice({ runbookUrl: "javascript:alert(1)", link: null }));
    expect(message.blocks.map((b) => b.type)).toEqual(["header", "section", "section"]);
  });

  it("cuts every text to its Block Kit limit, after escaping, never through an entity", async () => {
    const server = await started(startSlackServer());
    const long = "&<>".repeat(2000); // 6000 characters, 26000 once escaped
    const n = notice({ summary: long, description: long, userId: long, rule: long });
    expect(await new SlackReceiver({ name: "team-chat", webhookUrl: server.webhookUrl }).send(n, signal())).toEqual({ ok: true });
    const req = await server.next();
    expect([req.status, req.problem]).toEqual([200, null]);
    const [header, fields, description] = req.body.blocks;
    expect(header.text.text.length).toBeLessThanOrEqual(SLACK_LIMITS.headerText);
    expect(description.text.text.length).toBeLessThanOrEqual(SLACK_LIMITS.sectionText);
    for (const f of fields.fields) expect(f.text.length).toBeLessThanOrEqual(SLACK_LIMITS.fieldText);
    for (const text of slackTexts(req.body)) expect(text).not.toMatch(/&(?!amp;|lt;|gt;)/);
    expect(header.text.text.endsWith("…")).toBe(true);
    expect(slackDisplayed(header.text.text.slice(0, -1))).toBe(long.slice(0, slackDisplayed(header.text.text.slice(0, -1)).length));
  });

  // Lengths count the escaped text, as Slack does.
  it.each([
    ["a&b", 7, "a&amp;b"],
    ["a&b", 6, "a…"], // never "a&amp…"
    ["a&b", 3, "a…"],
    ["ab&cd", 8, "ab&amp;…"],
    ["a<b", 5, "a…"], // never "a&lt…"
    ["a😀b", 3, "a…"], // never half an emoji
    ["😀😀", 3, "😀…"],
  ])("truncateEscaped(escape(%j), %i) is %j", (raw, max, expected) => {
    expect(truncateEscaped(escapeSlack(raw), max)).toBe(expected);
  });

  it("429 with Retry-After is retryable after that long; a revoked webhook (404) is permanent; neither detail shows the secret path", async () => {
    const server = await started(startSlackServer());
    const receiver = new SlackReceiver({ name: "team-chat", webhookUrl: server.webhookUrl });
    server.answerNext({ status: 429, body: "rate_limited", headers: { "retry-after": "7" } });
    const limited = failed(await receiver.send(notice(), signal()));
    expect(limited).toMatchObject({ permanent: false, retryAfterMs: 7000 });
    const revoked = failed(await new SlackReceiver({ name: "team-chat", webhookUrl: `${server.webhookUrl}x` }).send(notice(), signal()));
    expect(revoked).toMatchObject({ permanent: true, retryAfterMs: null });
    expect(revoked.detail).toMatch(/HTTP 404 no_service$/);
    for (const d of [limited, revoked]) expect(d.detail).not.toContain(server.secret);
  });
});

describe("pagerduty", () => {
  it("trigger, acknowledge and resolve land on one alert under one dedup_key", async () => {
    const server = await started(startPagerDutyServer());
    const receiver = new PagerDutyReceiver({ name: "oncall-pager", routingKey: ROUTING_KEY, url: server.eventsUrl });
    const subject = notice().subject;

    expect(await receiver.send(notice(), signal())).toEqual({ ok: true });
    const trigger = await server.next();
    expect([trigger.status, trigger.problem]).toEqual([202, null]);
    expect(JSON.parse(trigger.answer)).toEqual({ status: "success", message: "Event processed", dedup_key: subject });
    expect(trigger.body).toEqual({
      routing_key: ROUTING_KEY,
      event_action: "trigger",
      dedup_key: subject,
      payload: {
        summary: notice().summary,
        source: "factory-7d9f8-abcde",
        severity: "critical",
        timestamp: "2026-11-26T12:03:00.000Z",
        component: "factory-lockout",
        group: "chat",
        class: "incident",
        custom_details: notice(),
      },
      links: [
        { href: INCIDENT_LINK, text: "Incident" },
        { href: RUNBOOK, text: "Runbook" },
      ],
      client: "Reclaim operator",
      client_url: INCIDENT_LINK,
    });
    expect(server.alerts.get(subject)?.status).toBe("triggered");

    expect(await receiver.send(notice({ acknowledged: { by: "alice", at: "2026-11-26T12:05:00.000Z" } }), signal())).toEqual({ ok: true });
    expect((await server.next()).body).toEqual({ routing_key: ROUTING_KEY, event_action: "acknowledge", dedup_key: subject });
    expect(server.alerts.get(subject)?.status).toBe("acknowledged");

    const resolved = notice({ status: "resolved", firing: false, needsHuman: false, endsAt: "2026-11-26T12:10:00.000Z", acknowledged: { by: "alice", at: "2026-11-26T12:05:00.000Z" } });
    expect(await receiver.send(resolved, signal())).toEqual({ ok: true });
    expect((await server.next()).body).toEqual({ routing_key: ROUTING_KEY, event_action: "resolve", dedup_key: subject });
    expect([...server.alerts.values()]).toEqual([expect.objectContaining({ dedupKey: subject, status: "resolved" })]);
    expect(server.requests.map((r) => r.status)).toEqual([202, 202, 202]);
  });

  it.each<[NoticeSeverity, string]>([
    ["critical", "critical"],
    ["high", "error"],
    ["warning", "warning"],
    ["info", "info"],
  ])("severity %s is PagerDuty's %s", (severity, expected) => {
    expect(PAGERDUTY_SEVERITY[severity]).toBe(expected);
    expect(pagerDutyEvent(notice({ severity }), ROUTING_KEY).payload?.severity).toBe(expected);
  });

  it("a circuit notice without a pod comes from reclaim-operator; a long summary is cut to 1024 characters and accepted", async () => {
    const server = await started(startPagerDutyServer());
    const receiver = new PagerDutyReceiver({ name: "oncall-pager", routingKey: ROUTING_KEY, url: server.eventsUrl });
    const circuit = notice({ subject: "circuit:factory-lockout", kind: "circuit", userId: null, pod: null, namespace: null, status: "open", summary: "x".repeat(5000), link: null, runbookUrl: null });
    expect(await receiver.send(circuit, signal())).toEqual({ ok: true });
    const req = await server.next();
    expect(req.status).toBe(202);
    expect(req.body.payload).toMatchObject({ source: "reclaim-operator", class: "circuit" });
    expect(req.body.payload).not.toHaveProperty("group");
    expect(req.body).not.toHaveProperty("links");
    expect(req.body.payload.summary).toHaveLength(1024);
  });

  it("the local PagerDuty refuses a malformed event (400 invalid event): permanent, and the detail never holds the key", async () => {
    const server = await started(startPagerDutyServer());
    const shortKey = ROUTING_KEY.slice(1);
    const d = failed(await new PagerDutyReceiver({ name: "oncall-pager", routingKey: shortKey, url: server.eventsUrl }).send(notice(), signal()));
    expect(d).toMatchObject({ permanent: true, retryAfterMs: null });
    expect(d.detail).toContain("HTTP 400");
    expect(d.detail).not.toContain(shortKey);
    const req = await server.next();
    expect(JSON.parse(req.answer)).toEqual({ status: "invalid event", message: "Event object is invalid", errors: ["Length of 'routing_key' is incorrect (should be 32 characters)"] });
    // A trigger without a payload summary is refused too.
    const bad = { ...pagerDutyEvent(notice(), ROUTING_KEY), payload: { ...pagerDutyEvent(notice(), ROUTING_KEY).payload, summary: "" } };
    expect(failed(await postJson(server.eventsUrl, bad, { signal: signal() })).detail).toContain("'payload.summary' is missing or blank");
    expect(server.alerts.size).toBe(0);
  });

  it("429 with Retry-After is retryable after that long", async () => {
    const server = await started(startPagerDutyServer());
    server.answerNext({ status: 429, body: "", headers: { "retry-after": "30" } });
    const receiver = new PagerDutyReceiver({ name: "oncall-pager", routingKey: ROUTING_KEY, url: server.eventsUrl });
    expect(failed(await receiver.send(notice(), signal()))).toMatchObject({ permanent: false, retryAfterMs: 30_000 });
    expect(await receiver.send(notice(), signal())).toEqual({ ok: true });
    expect(server.alerts.get(notice().subject)?.status).toBe("triggered");
  });
});
