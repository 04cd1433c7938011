import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  AlertmanagerReceiver,
  DEFAULT_FIRING_TTL_MS,
  FiringSet,
  MAX_LABEL_LENGTH,
  alertFor,
  type PostableAlert,
} from "../../../src/operator/notify/alertmanager.js";
import type { Notice } from "../../../src/operator/notify/types.js";
import {
  describeWithAlertmanager,
  freePort,
  startAlertmanager,
  startWebhookReceiver,
  type TestAlertmanager,
  type WebhookAlert,
  type WebhookPayload,
  type WebhookReceiver,
} from "../../support/alertmanager.js";
import { ManualClock } from "../../support/clock.js";

let seq = 0;
/** A firing incident notice with every field set; `subject` unique per call unless given. */
function notice(overrides: Partial<Notice> = {}): Notice {
  const now = new Date().toISOString();
  return {
    subject: `20261126T120000Z-lockout-${(seq++).toString(16).padStart(8, "0")}`,
    kind: "incident",
    rule: "lockout",
    userId: "105945141827451681156",
    pod: "factory-7d9f-abcde",
    namespace: "chat",
    severity: "critical",
    status: "remediating",
    needsHuman: false,
    firing: true,
    acknowledged: null,
    summary: "User locked out at 20/20 managers: remediating",
    description: "A user reached the manager limit and cleanup freed nothing.",
    runbookUrl: "https://runbooks.example.com/reclaim/lockout",
    link: "http://reclaim.example.com/incidents/x",
    startsAt: now,
    endsAt: null,
    at: now,
    ...overrides,
  };
}

const never = new AbortController().signal;

describe("alertFor", () => {
  const now = Date.parse("2026-11-26T12:00:00Z");

  it("labels an incident with every non-empty field, and annotates it", () => {
    const n = notice({ startsAt: "2026-11-26T11:59:00.000Z", at: "2026-11-26T11:59:30.000Z" });
    expect(alertFor(n, now)).toEqual({
      labels: {
        alertname: "ReclaimIncident",
        incident: n.subject,
        rule: "lockout",
        user: "105945141827451681156",
        pod: "factory-7d9f-abcde",
        namespace: "chat",
        severity: "critical",
        status: "remediating",
        needs_human: "false",
      },
      annotations: {
        summary: n.summary,
        description: n.description,
        runbook_url: "https://runbooks.example.com/reclaim/lockout",
        incident_url: "http://reclaim.example.com/incidents/x",
      },
      generatorURL: "http://reclaim.example.com/incidents/x",
      startsAt: "2026-11-26T11:59:00.000Z",
      endsAt: new Date(now + DEFAULT_FIRING_TTL_MS).toISOString(),
    });
  });

  it("names a circuit ReclaimCircuitOpen and leaves out what is null or empty", () => {
    const alert = alertFor(
      notice({ kind: "circuit", subject: "circuit:lockout", userId: null, pod: null, namespace: "", needsHuman: true, runbookUrl: null, link: null, status: "open" }),
      now,
    );
    expect(alert.labels).toEqual({ alertname: "ReclaimCircuitOpen", incident: "circuit:lockout", rule: "lockout", severity: "critical", status: "open", needs_human: "true" });
    expect(Object.keys(alert.annotations).sort()).toEqual(["description", "summary"]);
    expect(alert).not.toHaveProperty("generatorURL");
  });

  it("ends an ended notice at its endsAt (or at), and never before it starts", () => {
    const started = "2026-11-26T11:00:00.000Z";
    expect(alertFor(notice({ firing: false, startsAt: started, endsAt: "2026-11-26T11:30:00.000Z" }), now).endsAt).toBe("2026-11-26T11:30:00.000Z");
    expect(alertFor(notice({ firing: false, startsAt: started, endsAt: null, at: "2026-11-26T11:40:00.000Z" }), now).endsAt).toBe("2026-11-26T11:40:00.000Z");
    // Alertmanager answers 400 to an end before the start (a skewed clock).
    expect(alertFor(notice({ firing: false, startsAt: started, endsAt: "2026-11-26T10:00:00.000Z" }), now).endsAt).toBe(started);
    expect(alertFor(notice({ startsAt: "2026-11-26T13:00:00.000Z" }), now, 60_000).endsAt).toBe("2026-11-26T13:00:00.000Z");
    expect(alertFor(notice({ startsAt: started }), now, 90_000).endsAt).toBe("2026-11-26T12:01:30.000Z");
  });

  it("caps label values and keeps them valid UTF-8; leaves out a link that is not an http(s) URL", () => {
    const long = `${"x".repeat(MAX_LABEL_LENGTH - 1)}😀tail`; // the cap cuts the emoji's surrogate pair in half
    const alert = alertFor(notice({ pod: long, namespace: "a\uDC00b", link: "not a url" }), now);
    expect(alert.labels.pod).toBe(`${"x".repeat(MAX_LABEL_LENGTH - 1)}\uFFFD`);
    expect(alert.labels.namespace).toBe("a\uFFFDb");
    expect(alert).not.toHaveProperty("generatorURL");
    expect(alertFor(notice({ link: "javascript:alert(1)" }), now)).not.toHaveProperty("generatorURL");
  });
});

describe("AlertmanagerReceiver options", () => {
  it.each([
    [{ name: "Bad Name", url: "http://127.0.0.1:9093" }, /name must match/],
    [{ name: "am", url: "nope" }, /url is not a URL/],
    [{ name: "am", url: "ftp://127.0.0.1" }, /http or https/],
    [{ name: "am", url: "http://user:secret@127.0.0.1:9093" }, /no credentials/],
    [{ name: "am", url: "http://127.0.0.1:9093", firingTtlMs: 0 }, /firingTtlMs/],
  ])("refuses %j", (options, message) => {
    expect(() => new AlertmanagerReceiver(options)).toThrow(TypeError);
    expect(() => new AlertmanagerReceiver(options)).toThrow(message);
  });

  it("keeps a secret out of its error", () => {
    expect(() => new AlertmanagerReceiver({ name: "am", url: "http://user:secret@127.0.0.1:9093" })).not.toThrow(/secret/);
  });
});

/** A tiny local HTTP server answering as the test says, recording what came. */
interface Stub {
  url: string;
  requests: { path: string; body: unknown }[];
  /** Resolves when the next request has arrived (before it is answered). */
  nextRequest(): Promise<void>;
  close(): Promise<void>;
}

async function startStub(answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<Stub> {
  const requests: Stub["requests"] = [];
  let arrived: (() => void) | null = null;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      requests.push({ path: req.url ?? "", body: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
      arrived?.();
      answer(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return {
    url: `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`,
    requests,
    nextRequest: () => new Promise<void>((resolve) => (arrived = resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe("AlertmanagerReceiver failures", () => {
  const stubs: Stub[] = [];
  afterEach(async () => {
    await Promise.all(stubs.splice(0).map((s) => s.close()));
  });

  it("nothing listening: retryable, and the detail names the host only", async () => {
    const port = await freePort();
    const receiver = new AlertmanagerReceiver({ name: "am", url: `http://127.0.0.1:${port}/secret-prefix` });
    const delivery = await receiver.send(notice(), never);
    expect(delivery).toMatchObject({ ok: false, permanent: false, retryAfterMs: null });
    if (delivery.ok) throw new Error("unreachable");
    expect(delivery.detail).toBe(`http://127.0.0.1:${port}: ECONNREFUSED`);
  });

  it("400: permanent, posted as one alert under the path prefix", async () => {
    const stub = await startStub((_req, res) => res.writeHead(400, { "content-type": "application/json" }).end('"start time must be before end time"'));
    stubs.push(stub);
    const n = notice();
    const delivery = await new AlertmanagerReceiver({ name: "am", url: `${stub.url}/alertmanager/` }).send(n, never);
    expect(delivery).toMatchObject({ ok: false, permanent: true });
    expect(stub.requests).toHaveLength(1);
    expect(stub.requests[0]?.path).toBe("/alertmanager/api/v2/alerts");
    expect(stub.requests[0]?.body).toEqual([expect.objectContaining({ labels: expect.objectContaining({ incident: n.subject }) })]);
  });

  it("503 with Retry-After: 7 is retried after 7 s", async () => {
    const stub = await startStub((_req, res) => res.writeHead(503, { "retry-after": "7" }).end());
    stubs.push(stub);
    const delivery = await new AlertmanagerReceiver({ name: "am", url: stub.url }).send(notice(), never);
    expect(delivery).toEqual({ ok: false, permanent: false, retryAfterMs: 7000, detail: `${stub.url}: HTTP 503` });
  });

  it("a server that never answers: the send ends when the signal aborts", async () => {
    const stub = await startStub(() => {
      // Never answers.
    });
    stubs.push(stub);
    const controller = new AbortController();
    const arrived = stub.nextRequest();
    const sending = new AlertmanagerReceiver({ name: "am", url: stub.url }).send(notice(), controller.signal);
    await arrived;
    controller.abort();
    expect(await sending).toEqual({ ok: false, permanent: false, retryAfterMs: null, detail: `${stub.url}: no answer before the deadline` });
  });
});

describe("AlertmanagerReceiver label sets of one subject", () => {
  let stub: Stub;
  let status = 200;
  const clock = new ManualClock(Date.parse("2026-11-26T12:00:00Z"));
  beforeAll(async () => {
    stub = await startStub((_req, res) => res.writeHead(status).end());
  });
  afterAll(async () => {
    await stub.close();
  });
  afterEach(() => {
    status = 200;
    stub.requests.splice(0);
  });
  const posted = (i: number): PostableAlert[] => stub.requests[i]?.body as PostableAlert[];
  const at = (s: number): string => new Date(clock.now() + s * 1000).toISOString();

  it("ends the label set posted before when the status changes, as Prometheus does", async () => {
    const receiver = new AlertmanagerReceiver({ name: "am", url: stub.url, timers: clock });
    const open = notice({ status: "open", startsAt: at(-60), at: at(-60) });
    const remediating = { ...open, status: "remediating", at: at(-30) };
    const resolved = { ...open, status: "resolved", firing: false, endsAt: at(-1), at: at(-1) };
    expect(await receiver.send(open, never)).toEqual({ ok: true });
    expect(await receiver.send(remediating, never)).toEqual({ ok: true });
    expect(await receiver.send(resolved, never)).toEqual({ ok: true });
    expect(posted(0).map((a) => a.labels.status)).toEqual(["open"]);
    expect(posted(1).map((a) => [a.labels.status, a.endsAt])).toEqual([
      ["open", at(0)],
      ["remediating", at(DEFAULT_FIRING_TTL_MS / 1000)],
    ]);
    expect(posted(2).map((a) => [a.labels.status, a.endsAt])).toEqual([
      ["remediating", at(0)],
      ["resolved", at(-1)],
    ]);
    // Everything of it has ended: a repost of the end is the end alone.
    await receiver.send(resolved, never);
    expect(posted(3).map((a) => a.labels.status)).toEqual(["resolved"]);
  });

  it("keeps ending a label set until a post that ends it got through", async () => {
    const receiver = new AlertmanagerReceiver({ name: "am", url: stub.url, timers: clock });
    const open = notice({ status: "open", startsAt: at(-60), at: at(-60) });
    await receiver.send(open, never);
    status = 503;
    expect(await receiver.send({ ...open, status: "remediating", at: at(-30) }, never)).toMatchObject({ ok: false });
    status = 200;
    await receiver.send({ ...open, status: "failed", needsHuman: true, at: at(-10) }, never);
    expect(posted(2).map((a) => [a.labels.status, a.labels.needs_human])).toEqual([
      ["open", "false"],
      ["remediating", "false"],
      ["failed", "true"],
    ]);
  });

  it("does not post a notice older than one it already sent", async () => {
    const receiver = new AlertmanagerReceiver({ name: "am", url: stub.url, timers: clock });
    const newer = notice({ status: "escalated", at: at(-10) });
    await receiver.send(newer, never);
    expect(await receiver.send({ ...newer, status: "remediating", at: at(-20) }, never)).toEqual({ ok: true });
    expect(stub.requests).toHaveLength(1);
  });
});

describe("FiringSet", () => {
  const started = (minutes: number): string => new Date(Date.parse("2026-11-26T12:00:00Z") + minutes * 60_000).toISOString();

  it("re-posts the latest notice of every firing subject each interval, and forgets ended ones", async () => {
    const clock = new ManualClock();
    const set = new FiringSet({ timers: clock });
    const calls: Notice[][] = [];
    set.start(60_000, (notices) => calls.push(notices));
    const a = notice({ subject: "a" });
    const b = notice({ subject: "b" });
    set.update(a);
    set.update(b);
    set.update(notice({ subject: "c", firing: false }));
    await clock.run(59_999);
    expect(calls).toEqual([]);
    await clock.run(1);
    expect(calls).toEqual([[a, b]]);

    const a2 = { ...a, status: "escalated", needsHuman: true };
    set.update(a2);
    set.update({ ...b, firing: false, status: "resolved" });
    await clock.run(60_000);
    expect(calls[1]).toEqual([a2]);

    set.update({ ...a2, firing: false });
    await clock.run(60_000);
    expect(calls).toHaveLength(2); // nothing fires: nothing posted

    set.update(a);
    set.stop();
    await clock.run(180_000);
    expect(calls).toHaveLength(2);
    expect(clock.timers).toBe(0);
  });

  it("stays bounded, dropping the subject that started first and counting it", () => {
    const set = new FiringSet({ max: 3 });
    set.update(notice({ subject: "b", startsAt: started(2) }));
    set.update(notice({ subject: "a", startsAt: started(1) }));
    set.update(notice({ subject: "d", startsAt: started(4) }));
    set.update(notice({ subject: "c", startsAt: started(3) }));
    expect(set.firing().map((n) => n.subject).sort()).toEqual(["b", "c", "d"]);
    expect(set.dropped).toBe(1);
    // Replacing a subject it holds is no growth.
    set.update(notice({ subject: "c", startsAt: started(3), status: "failed" }));
    expect(set.dropped).toBe(1);
    expect(set.firing()).toHaveLength(3);
  });
});

/** Routes `needs_human="true"` to "page", everything else to "visible"; one group per incident. */
function routingConfig(hook: string): unknown {
  const webhook = (path: string): unknown => ({ webhook_configs: [{ url: `${hook}${path}`, send_resolved: true }] });
  return {
    route: {
      receiver: "visible",
      group_by: ["incident"],
      group_wait: "0s",
      group_interval: "1s",
      repeat_interval: "1m",
      routes: [{ receiver: "page", matchers: ['needs_human="true"'] }],
    },
    receivers: [
      { name: "visible", ...(webhook("/visible") as object) },
      { name: "page", ...(webhook("/page") as object) },
    ],
  };
}

/** The alert about `subject` in a payload, when it is there with that status. */
function alertOf(payload: WebhookPayload, subject: string, status: "firing" | "resolved"): WebhookAlert | undefined {
  return payload.alerts.find((a) => a.labels.incident === subject && a.status === status);
}

interface GettableAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  generatorURL?: string;
  receivers: { name: string }[];
  startsAt: string;
  endsAt: string;
}

async function alertsIn(am: TestAlertmanager, subject: string): Promise<GettableAlert[]> {
  const res = await fetch(`${am.url}/api/v2/alerts?${new URLSearchParams({ filter: `incident="${subject}"` }).toString()}`, { signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
  return (await res.json()) as GettableAlert[];
}

describeWithAlertmanager("AlertmanagerReceiver against the real Alertmanager", () => {
  let hook: WebhookReceiver;
  let am: TestAlertmanager;
  let receiver: AlertmanagerReceiver;
  const others: TestAlertmanager[] = [];

  beforeAll(async () => {
    hook = await startWebhookReceiver();
    // Behind a path prefix, as Alertmanager often is behind a proxy.
    am = await startAlertmanager({ config: routingConfig(hook.url), routePrefix: "/alertmanager" });
    receiver = new AlertmanagerReceiver({ name: "alertmanager-1", url: am.url });
  });
  afterAll(async () => {
    await Promise.all([...others, am].map((a) => a?.stop()));
    await hook?.close();
  });

  it("a firing incident reaches the webhook with every label and annotation, and is listed by the API", async () => {
    const n = notice();
    expect(await receiver.send(n, never)).toEqual({ ok: true });
    const payload = await hook.waitFor((p) => alertOf(p, n.subject, "firing") !== undefined);
    const expected = {
      labels: {
        alertname: "ReclaimIncident",
        incident: n.subject,
        rule: n.rule,
        user: n.userId,
        pod: n.pod,
        namespace: n.namespace,
        severity: n.severity,
        status: n.status,
        needs_human: "false",
      },
      annotations: { summary: n.summary, description: n.description, runbook_url: n.runbookUrl, incident_url: n.link },
      generatorURL: n.link,
    };
    expect(payload.receiver).toBe("visible");
    const got = alertOf(payload, n.subject, "firing");
    expect(got).toMatchObject(expected);
    // Go writes times without trailing zeros: compare instants, not strings.
    expect(Date.parse(got?.startsAt ?? "")).toBe(Date.parse(n.startsAt));
    const listed = await alertsIn(am, n.subject);
    expect(listed).toEqual([expect.objectContaining(expected)]);
    expect(listed[0]?.receivers).toEqual([{ name: "visible" }]);
  });

  it("routes on needs_human: a needs-human notice pages, an ordinary one is only visible", async () => {
    const ordinary = notice();
    const needsHuman = notice({ status: "failed", needsHuman: true });
    expect(await receiver.send(ordinary, never)).toEqual({ ok: true });
    expect(await receiver.send(needsHuman, never)).toEqual({ ok: true });
    const paged = await hook.waitFor((p) => alertOf(p, needsHuman.subject, "firing") !== undefined);
    expect(paged.receiver).toBe("page");
    const visible = await hook.waitFor((p) => alertOf(p, ordinary.subject, "firing") !== undefined);
    expect(visible.receiver).toBe("visible");
    // Alertmanager's own routing decision, without waiting for a notification that should not come.
    expect((await alertsIn(am, ordinary.subject))[0]?.receivers).toEqual([{ name: "visible" }]);
    expect((await alertsIn(am, needsHuman.subject))[0]?.receivers).toEqual([{ name: "page" }]);
    expect(hook.received.filter((r) => r.path === "/page" && alertOf(r.payload, ordinary.subject, "firing") !== undefined)).toEqual([]);
  });

  it("an ended notice sends the resolved notification", async () => {
    const n = notice();
    await receiver.send(n, never);
    await hook.waitFor((p) => alertOf(p, n.subject, "firing") !== undefined);
    const end = new Date().toISOString();
    expect(await receiver.send({ ...n, firing: false, endsAt: end, at: end }, never)).toEqual({ ok: true });
    const resolved = await hook.waitFor((p) => alertOf(p, n.subject, "resolved") !== undefined);
    expect(resolved.status).toBe("resolved");
    expect(Date.parse(alertOf(resolved, n.subject, "resolved")?.endsAt ?? "")).toBe(Date.parse(end));
  });

  it("resolving an incident whose status label changed resolves the alert that fired, and pages are resolved when it stops needing a human", async () => {
    const n = notice({ status: "escalated", needsHuman: true });
    await receiver.send(n, never);
    await hook.waitFor((p, path) => path === "/page" && alertOf(p, n.subject, "firing") !== undefined);
    const end = new Date().toISOString();
    await receiver.send({ ...n, status: "resolved", needsHuman: false, firing: false, endsAt: end, at: end }, never);
    const resolved = await hook.waitFor((p, path) => path === "/page" && alertOf(p, n.subject, "resolved") !== undefined);
    expect(alertOf(resolved, n.subject, "resolved")?.labels).toMatchObject({ status: "escalated", needs_human: "true" });
  });

  it("an HA pair both get it; one being down does not stop the other", async () => {
    const second = await startAlertmanager({ config: routingConfig(hook.url) });
    others.push(second);
    const pair = [receiver, new AlertmanagerReceiver({ name: "alertmanager-2", url: second.url })];
    const n = notice();
    expect(await Promise.all(pair.map((r) => r.send(n, never)))).toEqual([{ ok: true }, { ok: true }]);
    expect(await alertsIn(am, n.subject)).toHaveLength(1);
    expect(await alertsIn(second, n.subject)).toHaveLength(1);
    for (const instance of [am, second]) {
      await hook.waitFor((p) => p.externalURL === instance.url && alertOf(p, n.subject, "firing") !== undefined);
    }

    await second.stop();
    const m = notice();
    const [first, down] = await Promise.all(pair.map((r) => r.send(m, never)));
    expect(first).toEqual({ ok: true });
    expect(down).toMatchObject({ ok: false, permanent: false, detail: `${new URL(second.url).origin}: ECONNREFUSED` });
    await hook.waitFor((p) => p.externalURL === am.url && alertOf(p, m.subject, "firing") !== undefined);
  });
});
