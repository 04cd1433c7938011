/**
 * The web view over real HTTP on 127.0.0.1, reading a real file store in a
 * temp folder: pages and JSON, filters and pages, escaping of hostile
 * records, hostile ids and paths, methods, headers, and the deadline on a
 * store that hangs.
 */
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { request, createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FileIncidentStore } from "../../../src/operator/incidents/file-store.js";
import { humanEntry } from "../../../src/operator/incidents/human.js";
import { IncidentStatus, type Incident } from "../../../src/operator/incidents/model.js";
import type { IncidentFilter, IncidentStore } from "../../../src/operator/incidents/store.js";
import { CONTENT_SECURITY_POLICY } from "../../../src/operator/web/layout.js";
import { createWebView, type WebViewOptions } from "../../../src/operator/web/router.js";
import { ManualClock } from "../../support/clock.js";
import { eventually } from "../../support/factory.js";
import { buildIncident } from "../../support/incidents.js";

/** A script in a record: what it must never become. */
const XSS = '<script>window.__pwned=1;document.title="pwned"</script>';
const XSS_ESCAPED = "&lt;script&gt;window.__pwned=1;document.title=&quot;pwned&quot;&lt;/script&gt;";
const IMG = '<img src=x onerror="window.__pwned=2">';

let dir: string;
let store: FileIncidentStore;
let server: Server | undefined;
let base: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-web-"));
  store = new FileIncidentStore({ dir });
});
afterEach(async () => {
  if (server !== undefined) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    server = undefined;
  }
  await rm(dir, { recursive: true, force: true });
});

async function serve(options: Partial<WebViewOptions> = {}): Promise<void> {
  const view = createWebView({ store, ...options });
  server = createServer((req, res) => view.handle(req, res));
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request with the path exactly as given (fetch would normalise `..` and `%2F`). */
function send(path: string, method = "GET"): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}/`, { method, path, timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("timeout", () => req.destroy(new Error(`no answer to ${method} ${path}`)));
    req.on("error", reject);
    req.end();
  });
}

const at = (n: number): string => new Date(Date.parse("2026-11-26T00:00:00Z") + n * 60_000).toISOString();

/** A record whose every free-text place holds a script. */
function hostileIncident(): Incident {
  const base = buildIncident({ detectedAt: at(30), status: "escalated", userId: "mallory", rule: "lockout" });
  return {
    ...base,
    title: `Lockout ${XSS}`,
    keyString: `userId=${XSS}`,
    key: { userId: XSS },
    evidence: {
      total: 1,
      entries: [
        {
          ...base.evidence.entries[0]!,
          message: `HARD LIMIT: User ${XSS} still over limit ${IMG}`,
          fields: { userId: XSS, pod: IMG },
          file: { path: `/var/log/${IMG}.log`, offset: 42 },
        },
      ],
    },
    decisions: [...base.decisions, { at: at(31), kind: "suppressed", detail: `not acted on (silenced): ${XSS}` }],
    followUps: [XSS],
    ruleInfo: { revision: "0123456789ab", runbook: "javascript:alert(1)", description: IMG },
  };
}

describe("GET / (the list)", () => {
  beforeEach(async () => {
    await store.save(buildIncident({ detectedAt: at(0), status: "resolved", userId: "alice", rule: "lockout" }));
    await store.save(buildIncident({ detectedAt: at(1), status: "failed", userId: "bob", rule: "lockout" }));
    await store.save(buildIncident({ detectedAt: at(2), status: "escalated", userId: "alice", rule: "sweep" }));
    await serve();
  });

  it("lists newest first with counts for every status, links to each incident", async () => {
    const reply = await send("/");
    expect(reply.status).toBe(200);
    expect(reply.headers["content-type"]).toBe("text/html; charset=utf-8");
    const rows = [...reply.body.matchAll(/<a href="incidents\/([^"]+)">/g)].map((m) => m[1]);
    const all = await store.list();
    expect(rows).toEqual([...all].reverse().map((i) => i.id));
    for (const status of IncidentStatus.options) expect(reply.body).toContain(`<span class="status status-${status}">${status}</span></a> `);
    expect(reply.body).toMatch(/status-resolved">resolved<\/span><\/a> 1</);
    expect(reply.body).toMatch(/status-open">open<\/span><\/a> 0</);
  });

  it("filters by status, rule, user and time; a circuit notice's `/?rule=` link works", async () => {
    const ids = async (q: string): Promise<string[]> => [...(await send(`/${q}`)).body.matchAll(/<a href="incidents\/([^"]+)">/g)].map((m) => m[1]!);
    const [a0, b1, a2] = (await store.list()).map((i) => i.id);
    expect(await ids("?status=failed")).toEqual([b1]);
    expect(await ids("?status=failed&status=resolved")).toEqual([b1, a0]);
    expect(await ids("?rule=lockout")).toEqual([b1, a0]);
    expect(await ids("?user=alice")).toEqual([a2, a0]);
    expect(await ids(`?from=${encodeURIComponent(at(1))}`)).toEqual([a2, b1]);
    expect(await ids(`?to=${at(1).slice(0, 16)}`)).toEqual([a0]);
    // The form's own fields keep what was asked.
    expect((await send("/?rule=lockout&status=failed")).body).toMatch(/name="status" value="failed" checked/);
  });

  it("pages with `before`, bounded by `limit`", async () => {
    const first = await send("/?limit=2");
    const next = /<a href="\.\/(\?[^"]+)" rel="next">/.exec(first.body)?.[1];
    expect(next).toBeDefined();
    const second = await send(`/${next!.replace(/&amp;/g, "&")}`);
    const ids = (body: string): string[] => [...body.matchAll(/<a href="incidents\/([^"]+)">/g)].map((m) => m[1]!);
    expect([...ids(first.body), ...ids(second.body)]).toEqual((await store.list()).reverse().map((i) => i.id));
    expect(second.body).not.toContain('rel="next"');
  });

  it.each([
    ["/?status=bogus", "status"],
    ["/?limit=100000", "limit"],
    ["/?from=tomorrow", "from"],
    ["/?user=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "user"],
    ["/?rule=x,y", "rule"],
  ])("%s → 400 naming %s (page and JSON)", async (path, parameter) => {
    const page = await send(path);
    expect(page.status).toBe(400);
    expect(page.body).toContain(`<p class="error">${parameter}: `);
    expect(page.body).not.toContain("<script>");
    const api = await send(path.replace("/?", "/api/v1/incidents?"));
    expect(api.status).toBe(400);
    expect(JSON.parse(api.body)).toMatchObject({ error: { code: "bad_request", message: expect.stringMatching(new RegExp(`^${parameter}: `)) } });
  });
});

describe("GET /incidents/{id} (one incident)", () => {
  it("summary, impact, SVG timeline, rungs and verifications, decisions with their guards, evidence links, runbook, acks and notes", async () => {
    const incident = buildIncident({ status: "resolved" }, { ruleInfo: { revision: "0123456789ab", runbook: "https://runbooks.example.com/lockout" } });
    incident.evidence.entries[0]!.file = { path: "/var/log/factory.log", offset: 1234 };
    incident.evidence.entries[1]!.logsUrl = "https://console.cloud.google.com/logs/query;query=insertId%3D%221a2b3c0001%22?project=p";
    incident.decisions.splice(1, 1, { at: incident.decisions[1]!.at, kind: "guards_passed", detail: "guards passed: leader, cooldown, rate_limit" });
    await store.save(incident);
    await store.appendHuman(incident.id, humanEntry({ kind: "ack", by: "alice", text: "on it", at: Date.parse(incident.detectedAt) + 20_000 }));
    await store.appendHuman(incident.id, humanEntry({ kind: "note", by: "bob", text: "pod looked fine\nwatching", at: Date.parse(incident.detectedAt) + 30_000 }));
    await serve({ alertmanagerUrl: "http://alertmanager.example:9093/" });

    const { status, body } = await send(`/incidents/${incident.id}`);
    expect(status).toBe(200);
    expect(body).toContain(`<h1>${incident.title}</h1>`);
    // Impact: before refused at 20/20, after admitted at 18.
    expect(body).toMatch(/<th scope="row">New connection admitted<\/th><td>no \(refused\)<\/td><td>yes<\/td>/);
    expect(body).toMatch(/<th scope="row">Connections \(active managers\)<\/th><td>20<\/td><td>18<\/td>/);
    // The timeline: inline SVG with a marker per rung and per verification, and the human entries.
    const svg = /<svg[\s\S]*?<\/svg>/.exec(body)?.[0] ?? "";
    expect(svg).toContain('role="img"');
    expect(svg.match(/class="tl-rung /g)).toHaveLength(2);
    expect(svg.match(/class="tl-verify /g)).toHaveLength(2);
    expect(svg).toContain('class="tl-verify tl-verified"');
    expect(svg).toContain('class="tl-verify tl-not-verified"');
    expect(svg).toContain('class="tl-human tl-ack"');
    expect(svg).toContain('class="tl-human tl-note"');
    expect(svg).not.toMatch(/style=|<script|on\w+=/);
    // Every decision, with its guard.
    for (const d of incident.decisions) expect(body).toContain(`<td>${d.kind}</td>`);
    expect(body).toContain("<td>guards_passed</td><td>passed: leader, cooldown, rate_limit</td>");
    expect(body).toMatch(/<td>cooldown<\/td><td>4<\/td>/);
    // Acks and notes, in the table too (a note keeps its lines).
    expect(body).toContain("acknowledged by <strong>alice</strong>");
    expect(body).toContain("pod looked fine<br>watching");
    // Ways back to the logs.
    expect(body).toContain("<code>/var/log/factory.log</code> at byte 1234");
    expect(body).toContain('<a href="https://console.cloud.google.com/logs/query;query=insertId%3D%221a2b3c0001%22?project=p" rel="noreferrer">Logs Explorer</a>');
    expect(body).toContain('<a href="https://runbooks.example.com/lockout" rel="noreferrer">Runbook</a>');
    expect(body).toContain(
      `<a href="http://alertmanager.example:9093/#/alerts?filter=${encodeURIComponent(`{incident="${incident.id}"}`)}" rel="noreferrer">Alerts in Alertmanager</a>`,
    );
  });

  it("no Alertmanager link when none is configured", async () => {
    const incident = buildIncident();
    await store.save(incident);
    await serve();
    expect((await send(`/incidents/${incident.id}`)).body).not.toContain("Alertmanager");
  });

  it("a script in a title, key, log message, field, file path, decision, follow-up, description or note is text, never markup", async () => {
    const incident = hostileIncident();
    await store.save(incident);
    await store.appendHuman(incident.id, humanEntry({ kind: "note", by: "eve<script>", text: `look ${XSS}\n${IMG}`, at: Date.parse(incident.detectedAt) + 1000 }));
    await serve();
    for (const path of [`/incidents/${incident.id}`, "/", "/?user=mallory"]) {
      const { status, body } = await send(path);
      expect(status).toBe(200);
      // The page's only tags are its own: no script element, no event handler attribute, no img.
      expect(body).not.toMatch(/<script/i);
      expect(body).not.toMatch(/<img/i);
      expect(body).not.toMatch(/<[a-z][^>]*\son\w+=/i);
      expect(body).toContain(XSS_ESCAPED);
    }
    const { body } = await send(`/incidents/${incident.id}`);
    expect(body).toContain("eve&lt;script&gt;");
    // A `javascript:` runbook is shown, not linked.
    expect(body).toContain("Runbook: <code>javascript:alert(1)</code>");
    expect(body).not.toMatch(/href="javascript:/i);
  });

  it("an id that is not an incident id is a 400 before any store call; an unknown one is a 404", async () => {
    let calls = 0;
    const counting: Pick<IncidentStore, "get" | "list"> = {
      get: (id) => {
        calls++;
        return store.get(id);
      },
      list: (filter?: IncidentFilter) => {
        calls++;
        return store.list(filter);
      },
    };
    await serve({ store: counting });
    for (const path of [
      "/incidents/..%2F..%2F..%2Fetc%2Fpasswd",
      "/incidents/../../etc/passwd",
      "/incidents/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
      "/incidents/<script>alert(1)</script>",
      "/incidents/%E0%A4%A",
      "/incidents/20261126T120000Z-factory-hard-limit-1a2b3c4d.json",
      "/incidents/",
    ]) {
      const reply = await send(path);
      expect(reply.status, path).toBe(400);
      expect(reply.body).not.toMatch(/<script/i);
      const api = await send(path.replace("/incidents/", "/api/v1/incidents/"));
      expect(api.status, path).toBe(400);
      expect(JSON.parse(api.body).error.code).toBe("invalid_incident_id");
    }
    expect(calls).toBe(0);
    const unknown = "20261126T120000Z-factory-hard-limit-1a2b3c4d";
    expect((await send(`/incidents/${unknown}`)).status).toBe(404);
    expect(JSON.parse((await send(`/api/v1/incidents/${unknown}`)).body)).toEqual({ error: { code: "not_found", message: `There is no incident ${unknown}.` } });
  });
});

describe("the JSON API", () => {
  it("GET /api/v1/incidents/{id} is the record as the store reads it (human entries merged); the list has items, next, total, counts", async () => {
    const one = buildIncident({ detectedAt: at(0), userId: "alice" });
    const two = buildIncident({ detectedAt: at(1), status: "failed", userId: "bob" });
    await store.save(one);
    await store.save(two);
    await store.appendHuman(one.id, humanEntry({ kind: "ack", by: "alice", at: Date.parse(at(5)) }));
    await serve();
    const record = await send(`/api/v1/incidents/${one.id}`);
    expect(record.status).toBe(200);
    expect(record.headers["content-type"]).toBe("application/json; charset=utf-8");
    expect(JSON.parse(record.body)).toEqual(await store.get(one.id));
    expect(JSON.parse(record.body).human).toHaveLength(1);

    const list = JSON.parse((await send("/api/v1/incidents?limit=1")).body);
    expect(list.items).toEqual([await store.get(two.id)]);
    expect(list.total).toBe(2);
    expect(list.counts).toMatchObject({ resolved: 1, failed: 1 });
    const rest = JSON.parse((await send(`/api/v1/incidents?limit=1&before=${encodeURIComponent(list.next)}`)).body);
    expect(rest.items).toEqual([await store.get(one.id)]);
    expect(rest.next).toBeNull();
  });
});

describe("GET /digest", () => {
  it("the digest's own numbers over the last 24 h, needs-a-human incidents linked", async () => {
    const clock = new ManualClock(Date.parse("2026-11-26T06:00:00Z"));
    const failed = buildIncident({ detectedAt: "2026-11-26T03:14:08.000Z", status: "failed" });
    await store.save(failed);
    await store.save(buildIncident({ detectedAt: "2026-11-26T04:00:00.000Z", status: "resolved", userId: "alice" }));
    await store.save(buildIncident({ detectedAt: "2026-11-20T04:00:00.000Z", status: "resolved", userId: "old" }));
    await serve({ timers: clock });
    const { status, body } = await send("/digest");
    expect(status).toBe(200);
    expect(body).toContain("<h1>Digest for 2026-11-26</h1>");
    expect(body).toMatch(/<strong>2<\/strong> incidents/);
    expect(body).toContain(`<a href="incidents/${failed.id}"><code>${failed.id}</code></a>`);
    expect(body).not.toContain("old</code>");
  });
});

describe("what every answer carries", () => {
  it("a strict CSP whose style hash matches the page's one stylesheet, nosniff, no referrer, no framing", async () => {
    const incident = buildIncident();
    await store.save(incident);
    await serve();
    for (const path of ["/", `/incidents/${incident.id}`, "/digest", "/?status=nope", "/nothing/here", "/api/v1/incidents"]) {
      const { headers, body } = await send(path);
      expect(headers["content-security-policy"], path).toBe(CONTENT_SECURITY_POLICY);
      expect(headers["x-content-type-options"]).toBe("nosniff");
      expect(headers["referrer-policy"]).toBe("no-referrer");
      expect(headers["x-frame-options"]).toBe("DENY");
      if (path.startsWith("/api")) continue;
      const styles = [...body.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!);
      expect(styles).toHaveLength(1);
      expect(headers["content-security-policy"]).toContain(`style-src 'sha256-${createHash("sha256").update(styles[0]!).digest("base64")}'`);
      expect(body).not.toMatch(/<script|\sstyle=/i);
    }
    expect(CONTENT_SECURITY_POLICY).toMatch(/^default-src 'none'; /);
    expect(CONTENT_SECURITY_POLICY).toContain("script-src 'none'");
    expect(CONTENT_SECURITY_POLICY).toContain("frame-ancestors 'none'");
  });

  it("read-only: other methods get 405 with Allow; HEAD gets the headers and no body", async () => {
    const incident = buildIncident();
    await store.save(incident);
    await serve();
    for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
      for (const path of ["/", `/incidents/${incident.id}`, `/api/v1/incidents/${incident.id}`]) {
        const reply = await send(path, method);
        expect(reply.status, `${method} ${path}`).toBe(405);
        expect(reply.headers.allow).toBe("GET, HEAD");
      }
    }
    const head = await send(`/incidents/${incident.id}`, "HEAD");
    const get = await send(`/incidents/${incident.id}`);
    expect(head.status).toBe(200);
    expect(head.body).toBe("");
    expect(head.headers["content-length"]).toBe(String(Buffer.byteLength(get.body)));
    expect(await store.get(incident.id)).toEqual(incident);
  });

  it("unknown paths are 404: a page, or JSON under /api", async () => {
    await serve();
    expect((await send("/nothing")).status).toBe(404);
    expect((await send("/incidents")).status).toBe(404);
    const api = await send("/api/v2/incidents");
    expect(api.status).toBe(404);
    expect(JSON.parse(api.body).error.code).toBe("not_found");
  });
});

describe("a store that hangs or fails", () => {
  /** The real store, except that its calls wait until released (an API server that stopped answering). */
  function hanging(): { store: Pick<IncidentStore, "get" | "list">; waiting: () => number; release: () => void } {
    const held: (() => void)[] = [];
    let open = false;
    const hold = <T>(work: () => Promise<T>): Promise<T> =>
      open ? work() : new Promise<T>((resolve, reject) => {
            held.push(() => void work().then(resolve, reject));
          });
    return {
      store: { get: (id) => hold(() => store.get(id)), list: (f?: IncidentFilter) => hold(() => store.list(f)) },
      waiting: () => held.length,
      release: () => {
        open = true;
        for (const go of held.splice(0)) go();
      },
    };
  }

  it("a call past its deadline is a 503 page (JSON under /api) with Retry-After; beyond maxStoreCalls hung calls, 503 at once", async () => {
    const clock = new ManualClock();
    const slow = hanging();
    const errors: Error[] = [];
    await serve({ store: slow.store, timers: clock, storeTimeoutMs: 5000, maxStoreCalls: 2, onError: (e) => errors.push(e) });
    const incident = buildIncident();
    await store.save(incident);

    const page = send(`/incidents/${incident.id}`);
    const api = send("/api/v1/incidents");
    await eventually(() => slow.waiting() === 2, 5000, "both calls to reach the store");
    // Both slots are taken by hung calls: the next request is told at once.
    const busy = await send("/");
    expect(busy.status).toBe(503);
    expect(busy.body).toContain("busy");
    let answered = false;
    void Promise.race([page, api]).then(() => (answered = true));
    await clock.run(4999);
    expect(answered).toBe(false);
    await clock.run(1);
    const [p, a] = await Promise.all([page, api]);
    expect(p.status).toBe(503);
    expect(p.headers["retry-after"]).toBe("5");
    expect(p.body).toContain("did not answer within 5000 ms");
    expect(a.status).toBe(503);
    expect(JSON.parse(a.body).error.code).toBe("store_timeout");
    // The operator is told (it logs them).
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(["store_busy", "store_timeout", "store_timeout"]);
    // The slots come back when the store answers.
    slow.release();
    await eventually(async () => (await send(`/incidents/${incident.id}`)).status === 200, 5000, "the store to answer again");
  });

  it("a store that throws is a 503 naming what failed; a corrupt record is a 500", async () => {
    const failing: Pick<IncidentStore, "get" | "list"> = {
      get: () => Promise.reject(Object.assign(new Error("could not read incident record /x.json: EIO"), { code: "ERR_RECLAIM_INCIDENT_READ" })),
      list: () => Promise.reject(Object.assign(new Error("incident record /x.json is corrupt: not valid JSON"), { code: "ERR_RECLAIM_INCIDENT_CORRUPT" })),
    };
    await serve({ store: failing });
    const get = await send("/incidents/20261126T120000Z-factory-hard-limit-1a2b3c4d");
    expect(get.status).toBe(503);
    expect(get.body).toContain("EIO");
    expect((await send("/api/v1/incidents")).status).toBe(500);
  });
});
