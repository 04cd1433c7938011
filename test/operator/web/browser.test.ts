/**
 * The web view in a real browser (Debian's Chromium, headless, through
 * playwright-core): the list and an incident made by a real remediation (a
 * real factory on 127.0.0.1, 20 zombie ws clients, the operator tailing
 * its log), the filters used as a person would (a GET form, no script),
 * no console error, no serious or critical axe-core violation, and a script
 * planted in a record's title, log line, fields, key and a person's note
 * shown as text and never run. Screenshots go to reports/web/ for a person
 * to look at.
 */
import { mkdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { FileIncidentStore } from "../../../src/operator/incidents/file-store.js";
import { humanEntry } from "../../../src/operator/incidents/human.js";
import type { Incident } from "../../../src/operator/incidents/model.js";
import { describeWithBrowser, startTestBrowser, type TestBrowser, type TestPage } from "../../support/browser.js";
import { startTestFactory, type TestFactory } from "../../support/factory.js";
import { buildIncident } from "../../support/incidents.js";
import { startTestOperator, tempDir, type TestOperator } from "../../support/operator.js";

const USER = "105945141827451681156";
/** Sets a global and the title if it ever runs. */
const PAYLOAD = '<script>window.__pwned = 1; document.title = "pwned"</script>';
const IMG_PAYLOAD = '<img src="data:," onerror="window.__pwned = 2; document.title = \'pwned\'">';
const SCREENSHOTS = fileURLToPath(new URL("../../../reports/web/", import.meta.url));
const AXE_SOURCE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

/** One axe-core violation as the test reports it. */
interface Violation {
  id: string;
  impact: string | null;
  help: string;
  nodes: number;
}

describeWithBrowser("the incident web view in a browser", () => {
  let browser: TestBrowser;
  let factory: TestFactory;
  let operator: TestOperator;
  let base: string;
  let real: Incident;
  let hostile: Incident;
  let axe: string;
  const pages: TestPage[] = [];

  beforeAll(async () => {
    axe = await readFile(AXE_SOURCE, "utf8");
    await mkdir(SCREENSHOTS, { recursive: true });
    const dir = await tempDir("reclaim-web-browser-");
    const logFile = join(dir, "factory.log");
    factory = await startTestFactory({ logFile, probeTimeoutMs: 300, cleanup: "legacy" });
    operator = await startTestOperator({ dir, source: `file:${logFile}`, control: factory.controlUrl });
    // The original outage: 20 tabs that never answer, the 21st refused; the operator probes, verifies, resolves.
    for (let i = 0; i < 20; i++) await factory.open(USER, "no-pong");
    await factory.attempt(USER);
    real = await operator.ended(USER);
    const people = new FileIncidentStore({ dir: join(dir, "incidents") });
    await people.appendHuman(real.id, humanEntry({ kind: "ack", by: "alice", text: "on it", at: Date.now() }));
    await people.appendHuman(real.id, humanEntry({ kind: "note", by: "bob", text: "user confirmed chat works\nclosing", at: Date.now() }));

    // A record full of hostile text, as a forged log line and a careless note would make it.
    const planted = buildIncident({ detectedAt: new Date(Date.now() - 3_600_000).toISOString(), status: "escalated", userId: "mallory", rule: "hostile-rule" });
    hostile = {
      ...planted,
      title: `Lockout ${PAYLOAD}`,
      key: { userId: PAYLOAD },
      keyString: `userId=${PAYLOAD}`,
      evidence: {
        total: 1,
        entries: [{ ...planted.evidence.entries[0]!, message: `HARD LIMIT: User ${PAYLOAD} ${IMG_PAYLOAD}`, fields: { userId: PAYLOAD, pod: IMG_PAYLOAD } }],
      },
    };
    await people.save(hostile);
    await people.appendHuman(hostile.id, humanEntry({ kind: "note", by: "eve", text: `pasted from chat: ${PAYLOAD}\n${IMG_PAYLOAD}`, at: Date.now() }));

    browser = await startTestBrowser({ deadlineMs: 15_000 });
    base = `http://127.0.0.1:${operator.metricsPort}`;
    // A real remediation, then a cold browser start (bounded at 20 s by the harness) on a busy 2-core machine.
  }, 60_000);

  afterAll(async () => {
    for (const p of pages.splice(0)) await p.close();
    await browser?.close();
    await operator?.close();
    await factory?.close();
  });

  const open = async (path: string): Promise<TestPage> => {
    const page = await browser.open();
    pages.push(page);
    const response = await page.page.goto(`${base}${path}`, { waitUntil: "load" });
    expect(response?.status(), path).toBe(200);
    return page;
  };

  /** Runs axe-core in the page (evaluated through the DevTools protocol: the page's CSP forbids every script of its own). */
  const violations = async (page: TestPage): Promise<Violation[]> => {
    await page.page.evaluate(axe);
    // A string, not a function: the page has no DOM types here, and what runs is exactly this text.
    const result = await page.page.evaluate<Violation[]>(`(async () => {
      const r = await window.axe.run(document, { resultTypes: ["violations"] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length }));
    })()`);
    return result;
  };
  const serious = (list: Violation[]): Violation[] => list.filter((v) => v.impact === "serious" || v.impact === "critical");

  it("the list: both incidents, counts by status, no console error, no serious axe violation; the filters narrow it", async () => {
    const page = await open("/");
    const p = page.page;
    expect(await p.title()).toBe("Incidents · Reclaim incidents");
    const links = await p.locator('a[href^="incidents/"]').evaluateAll((as) => as.map((a) => a.getAttribute("href")));
    // Newest first: the real incident (now) before the planted one (an hour ago).
    expect(links).toEqual([`incidents/${real.id}`, `incidents/${hostile.id}`]);
    expect(await p.locator("ul.counts").innerText()).toMatch(/resolved\s+1/);
    expect(serious(await violations(page))).toEqual([]);
    await p.screenshot({ path: join(SCREENSHOTS, "list.png"), fullPage: true });

    // Filters as a person uses them: tick "resolved", type the rule, Apply.
    await p.getByLabel("resolved", { exact: true }).check();
    await p.getByLabel("Rule").fill("lockout");
    await Promise.all([p.waitForURL(/status=resolved/), p.getByRole("button", { name: "Apply" }).click()]);
    expect(new URL(p.url()).searchParams.getAll("status")).toEqual(["resolved"]);
    expect(new URL(p.url()).searchParams.get("rule")).toBe("lockout");
    expect(await p.locator('a[href^="incidents/"]').evaluateAll((as) => as.map((a) => a.getAttribute("href")))).toEqual([`incidents/${real.id}`]);
    await p.screenshot({ path: join(SCREENSHOTS, "list-filtered.png"), fullPage: true });

    // A bad value is told, not guessed at.
    await p.getByLabel("User").fill("no spaces allowed");
    await Promise.all([p.waitForURL(/user=/), p.getByRole("button", { name: "Apply" }).click()]);
    expect(await p.locator("p.error").innerText()).toMatch(/^user: /);
    // The 400 the browser logs for the page itself is the only console message.
    expect(page.errors().filter((e) => !/status of 400/.test(e))).toEqual([]);

    await p.goto(`${base}/?user=mallory`);
    expect(await p.locator('a[href^="incidents/"]').evaluateAll((as) => as.map((a) => a.getAttribute("href")))).toEqual([`incidents/${hostile.id}`]);
    expect(page.errors().filter((e) => !/status of 400/.test(e))).toEqual([]);
  });

  it("the incident of the real remediation: summary, impact, SVG timeline, acks and notes; no console error, no serious axe violation", async () => {
    const page = await open("/");
    const p = page.page;
    await Promise.all([p.waitForURL(/\/incidents\//), p.locator(`a[href="incidents/${real.id}"]`).click()]);
    expect(new URL(p.url()).pathname).toBe(`/incidents/${real.id}`);
    expect(await p.locator("h1").innerText()).toBe(real.title);
    expect(await p.locator("svg[role=img] .tl-rung").count()).toBe(real.rungs.length);
    expect(await p.locator("svg[role=img] .tl-verify").count()).toBe(real.rungs.filter((r) => r.verification !== null).length);
    expect(await p.locator("svg[role=img] .tl-human").count()).toBe(2);
    expect(await p.locator("#events + table td", { hasText: "user confirmed chat works" }).count()).toBe(1);
    expect(page.errors()).toEqual([]);
    expect(serious(await violations(page))).toEqual([]);
    await p.screenshot({ path: join(SCREENSHOTS, "incident.png"), fullPage: true });
  });

  it("a script in a record's title, log line, fields, key and a note is shown as text and never runs", async () => {
    const page = await open(`/incidents/${hostile.id}`);
    const p = page.page;
    // Shown literally: the browser parsed it as text, not as a tag.
    expect(await p.locator("h1").innerText()).toBe(`Lockout ${PAYLOAD}`);
    expect(await p.locator("body").innerText()).toContain(`pasted from chat: ${PAYLOAD}`);
    expect(await p.locator("body").innerText()).toContain(IMG_PAYLOAD);
    expect(await p.locator("main script, main img").count()).toBe(0);
    // Never run: no global, the title is the page's own.
    expect(await p.evaluate<unknown>("typeof window.__pwned")).toBe("undefined");
    expect(await p.title()).toBe(`Lockout ${PAYLOAD} · Reclaim incidents`);
    // Not even tried: the CSP would log a refused script or image.
    expect(page.errors()).toEqual([]);
    expect(serious(await violations(page))).toEqual([]);
    await p.screenshot({ path: join(SCREENSHOTS, "incident-hostile.png"), fullPage: true });
  });

  it("the digest page", async () => {
    const page = await open("/digest");
    expect(await page.page.locator("h1").innerText()).toMatch(/^Digest for \d{4}-\d{2}-\d{2}$/);
    expect(await page.page.locator("#needs-human + table").innerText()).toContain(hostile.id);
    expect(page.errors()).toEqual([]);
    expect(serious(await violations(page))).toEqual([]);
    await page.page.screenshot({ path: join(SCREENSHOTS, "digest.png"), fullPage: true });
  });
});
