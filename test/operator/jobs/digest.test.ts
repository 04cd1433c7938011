/**
 * The daily digest over a folder of fixture incidents on an injected clock:
 * which incidents count (updated in the last 24 h), the numbers of every
 * section, hostile text from logs escaped, the file written atomically under
 * the UTC date, and the same bytes for the same store and clock.
 */
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Clock } from "../../../src/contract/clock.js";
import { FileIncidentStore } from "../../../src/operator/incidents/file-store.js";
import type { Incident } from "../../../src/operator/incidents/model.js";
import { DigestJob, digestFileName, renderDigest, summarizeDigest } from "../../../src/operator/jobs/digest.js";
import { Scheduler } from "../../../src/operator/jobs/scheduler.js";
import { buildIncident, type IncidentSpec } from "../../support/incidents.js";

const NOW = Date.parse("2026-11-26T06:00:00Z");
const clock: Clock = { now: () => NOW };
const A = "105945141827451681156";
const B = "user-b";
const C = "user-c";
const HOSTILE_TITLE = "<script>alert(1)</script> | # not a heading [click](http://evil.example) `tick` **bold**";
const HOSTILE_POD = "pod|evil\n## injected heading";
const HOSTILE_WHY = "restarted | ![img](http://evil.example/x.png) <b>not bold</b>";
const HOSTILE_RULE = "rule|<i>x</i>";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-digest-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A resolved incident whose time to mitigate is `mitigateMs`. */
function resolved(spec: IncidentSpec, mitigateMs: number, overrides: Partial<Incident> = {}): Incident {
  const base = buildIncident({ ...spec, status: "resolved" });
  const resolvedAt = new Date(Date.parse(base.detectedAt) + mitigateMs).toISOString();
  return buildIncident(
    { ...spec, status: "resolved" },
    { resolvedAt, closedAt: resolvedAt, updatedAt: resolvedAt, durations: { ...base.durations, mitigateMs }, ...overrides },
  );
}

function interruptedHostile(): Incident {
  const base = buildIncident({ detectedAt: "2026-11-25T14:00:00.000Z", userId: A, status: "interrupted" });
  return buildIncident(
    { detectedAt: "2026-11-25T14:00:00.000Z", userId: A, status: "interrupted" },
    {
      rule: HOSTILE_RULE,
      title: HOSTILE_TITLE,
      target: { ...base.target, pod: HOSTILE_POD },
      decisions: [...base.decisions.slice(0, -1), { ...base.decisions.at(-1)!, detail: HOSTILE_WHY }],
    },
  );
}

/** Twelve incidents in the window (11 opened in it), and two outside it. */
function fixtures(): Incident[] {
  const lockout = "factory-lockout";
  const atLimit = "factory-users-at-limit";
  return [
    resolved({ detectedAt: "2026-11-25T08:00:00.000Z", rule: lockout, userId: A }, 1000),
    resolved({ detectedAt: "2026-11-25T09:00:00.000Z", rule: lockout, userId: A }, 3000),
    resolved({ detectedAt: "2026-11-25T10:00:00.000Z", rule: lockout, userId: B }, 7000),
    resolved({ detectedAt: "2026-11-25T11:00:00.000Z", rule: atLimit, userId: C }, 14_320),
    // Opened before the window, but changed in it (a suppressed trigger counted later): it counts, not as opened.
    resolved({ detectedAt: "2026-11-24T05:59:00.000Z", rule: lockout, userId: A }, 60_000, { updatedAt: "2026-11-25T07:00:00.000Z" }),
    buildIncident({ detectedAt: "2026-11-25T12:00:00.000Z", rule: lockout, userId: B, status: "escalated" }),
    buildIncident({ detectedAt: "2026-11-25T13:00:00.000Z", rule: atLimit, userId: "user-d", status: "failed" }),
    interruptedHostile(),
    buildIncident({ detectedAt: "2026-11-25T15:00:00.000Z", rule: lockout, userId: "user-e", status: "suppressed" }),
    buildIncident({ detectedAt: "2026-11-26T05:59:00.000Z", rule: lockout, userId: C, status: "open" }),
    buildIncident({ detectedAt: "2026-11-26T05:00:00.000Z", rule: atLimit, userId: "user-f", status: "remediating" }),
    buildIncident({ detectedAt: "2026-11-25T16:00:00.000Z", rule: lockout, userId: "user-g", status: "suppressed", dryRun: true }),
    // Outside: closed six days ago, and changed after "now".
    buildIncident({ detectedAt: "2026-11-20T10:00:00.000Z", rule: lockout, userId: B, status: "resolved" }),
    buildIncident({ detectedAt: "2026-11-26T07:00:00.000Z", rule: lockout, userId: B, status: "open" }),
  ];
}

async function storeWith(incidents: readonly Incident[]): Promise<FileIncidentStore> {
  const store = new FileIncidentStore({ dir });
  for (const i of incidents) await store.save(i);
  return store;
}

describe("digest: numbers", () => {
  it("sums up the incidents updated in the last 24 h, section by section", async () => {
    const all = fixtures();
    const store = await storeWith(all);
    const { summary } = await new DigestJob({ store, dir, clock, topUsers: 3 }).build();

    expect(summary).toMatchObject({ from: "2026-11-25T06:00:00.000Z", to: "2026-11-26T06:00:00.000Z", incidents: 12, opened: 11, dryRuns: 1, unreadable: 0 });
    expect(summary.byStatus).toEqual({ open: 1, remediating: 1, resolved: 5, escalated: 1, failed: 1, suppressed: 2, interrupted: 1, held: 0 });
    expect(summary.byRule).toEqual([
      { rule: "factory-lockout", incidents: 8, resolved: 4, needsHuman: 1, suppressed: 2, open: 1 },
      { rule: "factory-users-at-limit", incidents: 3, resolved: 1, needsHuman: 1, suppressed: 0, open: 1 },
      { rule: HOSTILE_RULE, incidents: 1, resolved: 0, needsHuman: 1, suppressed: 0, open: 0 },
    ]);
    // Nearest rank over [1 s, 3 s, 7 s, 14.32 s, 60 s].
    expect(summary.mitigation).toEqual({ count: 5, p50Ms: 7000, p95Ms: 60_000, maxMs: 60_000 });
    expect(summary.topUsers).toEqual([
      { userId: A, incidents: 4, rules: ["factory-lockout", HOSTILE_RULE] },
      { userId: B, incidents: 2, rules: ["factory-lockout"] },
      { userId: C, incidents: 2, rules: ["factory-lockout", "factory-users-at-limit"] },
    ]);
    expect(summary.otherUsers).toBe(4);
    // Every resolved fixture counted 4 cooldowns; each suppressed one a rate limit.
    expect(summary.suppressed).toEqual([
      { reason: "cooldown", triggers: 20, incidents: 5, lastAt: expect.any(String) },
      { reason: "rate_limit", triggers: 2, incidents: 2, lastAt: "2026-11-25T16:00:00.001Z" },
    ]);
    const byId = new Map(all.map((i) => [i.id, i]));
    expect(summary.needsHuman.map((h) => [h.status, byId.get(h.id)?.detectedAt])).toEqual([
      ["escalated", "2026-11-25T12:00:00.000Z"],
      ["failed", "2026-11-25T13:00:00.000Z"],
      ["interrupted", "2026-11-25T14:00:00.000Z"],
    ]);
    expect(summary.needsHuman.map((h) => h.why)).toEqual(["ladder exhausted; paging on-call", "control API unavailable", HOSTILE_WHY]);
  });

  it("filters by the period itself, whatever the store returned", () => {
    const summary = summarizeDigest(fixtures(), { from: NOW - 86_400_000, to: NOW });
    expect(summary.incidents).toBe(12);
    const none = summarizeDigest(fixtures(), { from: NOW + 86_400_000, to: NOW + 2 * 86_400_000 });
    expect(none).toMatchObject({ incidents: 0, opened: 0, mitigation: null, topUsers: [], suppressed: [], needsHuman: [] });
  });
});

describe("digest: the page", () => {
  it("writes digest-YYYY-MM-DD.md beside the records, atomically, with every section", async () => {
    const all = fixtures();
    const store = await storeWith(all);
    const job = new DigestJob({ store, dir, clock, topUsers: 3 });
    const outcome = await job.run();
    expect(outcome).toBe("wrote digest-2026-11-26.md: 12 incidents (11 opened), 3 need a human");

    const names = await readdir(dir);
    expect(names).toContain("digest-2026-11-26.md");
    expect(names.filter((n) => n.endsWith(".tmp"))).toEqual([]);
    // The store still reads the folder as before: the digest is not a record.
    expect(await store.list()).toHaveLength(all.length);
    expect(store.lastListSkipped).toBe(0);

    const md = await readFile(join(dir, "digest-2026-11-26.md"), "utf8");
    const headings = md.split("\n").filter((l) => /^#{1,6} /.test(l));
    expect(headings).toEqual([
      "# Reclaim digest for 2026-11-26",
      "## Needs a human",
      "## By status",
      "## By rule",
      "## Time to mitigate",
      "## Top users",
      "## Suppressed triggers",
    ]);
    expect(md).toContain("Incidents updated after 2026-11-25T06:00:00.000Z and up to 2026-11-26T06:00:00.000Z (24 h): **12** incidents, 11 opened in this period, 1 dry run; **3** need a human.");
    for (const i of all.filter((x) => ["escalated", "failed", "interrupted"].includes(x.status))) {
      expect(md).toContain(`| \`${i.id}\` | ${i.status} |`);
    }
    expect(md).toContain("| resolved | 5 |");
    expect(md).toContain("| suppressed | 2 |");
    expect(md).toContain("| factory-lockout | 8 | 4 | 1 | 2 | 1 |");
    expect(md).toMatch(/\| p50 \| p95 \| Max \|\n\| --- \| --- \| --- \|\n\| 7\.0 s \| 1 min 0 s \| 1 min 0 s \|/);
    expect(md).toContain("over 5 resolved incidents");
    expect(md).toContain(`| ${A} | 4 |`);
    expect(md).toContain("_and 4 more users._");
    expect(md).toContain("| cooldown | 20 | 5 |");
    expect(md).toContain("| rate\\_limit | 2 | 2 | 2026-11-25T16:00:00.001Z |");
  });

  it("escapes everything that came from logs", async () => {
    const store = await storeWith(fixtures());
    const { markdown } = await new DigestJob({ store, dir, clock }).build();
    const row = markdown.split("\n").find((l) => l.includes("interrupted |"))!;
    // The hostile values are in the row, escaped, and the row is still one table row of 9 cells.
    expect(row).toContain("\\<script\\>alert(1)\\</script\\>");
    expect(row).toContain("\\# not a heading \\[click\\](http\\://evil.example)");
    expect(row).toContain("pod\\|evil␊\\#\\# injected heading");
    expect(row).toContain("\\!\\[img\\](http\\://evil.example/x.png) \\<b\\>not bold\\</b\\>");
    expect(row).toContain("rule\\|\\<i\\>x\\</i\\>");
    expect(row.replace(/\\\|/g, "").split("|")).toHaveLength(11);
    // Nothing raw got through anywhere on the page.
    expect(markdown).not.toMatch(/<script>|<b>|<i>|\]\(http:\/\/|^## injected/m);
    expect(markdown).not.toContain("\n## injected");
  });

  it("gives the same bytes for the same store and clock", async () => {
    const store = await storeWith(fixtures());
    const first = await new DigestJob({ store, dir, clock }).build();
    const second = await new DigestJob({ store: new FileIncidentStore({ dir }), dir, clock }).build();
    expect(second.markdown).toBe(first.markdown);
    expect(renderDigest(first.summary)).toBe(first.markdown);
    // Another "now" is another file.
    expect(digestFileName(NOW + 86_400_000)).toBe("digest-2026-11-27.md");
    expect(digestFileName(Date.parse("2026-11-26T23:59:59.999Z"))).toBe("digest-2026-11-26.md");
  });

  it("says so when nothing happened, and when records could not be read", async () => {
    const store = new FileIncidentStore({ dir });
    const job = new DigestJob({ store, dir, clock });
    expect(await job.run()).toBe("wrote digest-2026-11-26.md: 0 incidents (0 opened), 0 need a human");
    let md = await readFile(join(dir, "digest-2026-11-26.md"), "utf8");
    expect(md).toContain("_None: every incident of the period ended on its own or is still in progress._");
    expect(md).toContain("_No incident was resolved in this period._");
    expect(md).toContain("| open | 0 |");

    // A corrupt record: skipped by the store, and the digest says so. The rerun replaces the file.
    await writeFile(join(dir, "20261126T050000Z-factory-lockout-0badc0de.json"), "{ not json");
    await new Scheduler([job]).runNow("digest");
    md = await readFile(join(dir, "digest-2026-11-26.md"), "utf8");
    expect(md).toContain("**1 unreadable record was skipped**");
  });
});
