/**
 * The daily digest: one Markdown page that says what the operator did in the
 * last 24 hours, for the people who were not watching. Incidents by status
 * and by rule, time to mitigate, the users with the most incidents, the
 * triggers guards suppressed, and first of all the incidents that need a
 * human (escalated, failed, interrupted) with their ids.
 *
 * Written atomically as `digest-YYYY-MM-DD.md` (the UTC date of "now") beside
 * the incident records. Every value that came from a log (titles, pods,
 * decision details, even rule names and user ids) goes through the escaping
 * of markdown.ts. The page depends only on the clock and the store: the same
 * records at the same "now" give the same bytes.
 */
import { join } from "node:path";
import type { Clock } from "../../contract/clock.js";
import { formatDuration, mdCode, mdText } from "../incidents/markdown.js";
import { IncidentStatus, NEEDS_HUMAN, SuppressReason, type Incident } from "../incidents/model.js";
import type { IncidentStore } from "../incidents/store.js";
import type { Job } from "./scheduler.js";
import { writeFileAtomic } from "../atomic-file.js";

/** The digest's schedule when none is configured: 06:00 every day (UTC unless the Scheduler has another time zone). */
export const DEFAULT_DIGEST_SCHEDULE = "0 6 * * *";
/** The period a digest covers. */
export const DEFAULT_DIGEST_WINDOW_MS = 24 * 3_600_000;
/** Users listed in "Top users"; the rest are counted. */
export const DEFAULT_TOP_USERS = 10;

/** Statuses that need a human (the record's own set): the ladder did not fix it, nobody knows whether it did, or a guard held it back. */
export { NEEDS_HUMAN };

/** Longest title or reason shown. */
const MAX_TEXT = 200;

/** One rule's line in the digest. */
export interface RuleSummary {
  rule: string;
  incidents: number;
  resolved: number;
  needsHuman: number;
  suppressed: number;
  /** `open` or `remediating` at "now". */
  open: number;
}

/** One user's line in "Top users". */
export interface UserSummary {
  userId: string;
  incidents: number;
  /** The rules of those incidents, sorted. */
  rules: string[];
}

/** Suppressed triggers of one reason, summed over the incidents of the period. */
export interface SuppressedSummary {
  reason: SuppressReason;
  triggers: number;
  incidents: number;
  /** The latest `lastAt` (ISO). */
  lastAt: string;
}

/** An incident that needs a human. */
export interface HumanItem {
  id: string;
  status: IncidentStatus;
  rule: string;
  userId: string;
  pod: string | null;
  title: string;
  detectedAt: string;
  closedAt: string | null;
  /** The decision that ended it (or the last one). */
  why: string;
}

/** Everything the digest says, as numbers (the page is rendered from this). */
export interface DigestSummary {
  /** The period, ISO: incidents whose `updatedAt` is in (from, to]. */
  from: string;
  to: string;
  incidents: number;
  /** Of those, detected in the period. */
  opened: number;
  dryRuns: number;
  byStatus: Record<IncidentStatus, number>;
  byRule: RuleSummary[];
  /** Detected → resolved, over resolved incidents; null when none was. */
  mitigation: { count: number; p50Ms: number; p95Ms: number; maxMs: number } | null;
  topUsers: UserSummary[];
  /** Users with incidents beyond `topUsers`. */
  otherUsers: number;
  suppressed: SuppressedSummary[];
  needsHuman: HumanItem[];
  /** Records the store could not read (FileIncidentStore only), so that the reader knows the page may be short. */
  unreadable: number;
}

/** What the digest job needs; every dependency is injected. */
export interface DigestDeps {
  store: IncidentStore;
  /** Where `digest-YYYY-MM-DD.md` is written: the incidents folder, or the state folder when incidents live only in the cluster. */
  dir: string;
  clock: Clock;
  /** Default 24 h. */
  windowMs?: number;
  /** Default 10. */
  topUsers?: number;
  /** Default `0 6 * * *`. */
  schedule?: string;
}

/** `digest-YYYY-MM-DD.md` for the UTC date of `now`. */
export function digestFileName(now: number): string {
  return `digest-${new Date(now).toISOString().slice(0, 10)}.md`;
}

/**
 * Sums up `incidents` for the period (from, to]: incidents whose `updatedAt`
 * falls outside are ignored, so the result does not depend on how the store
 * filtered. Pure and deterministic.
 */
export function summarizeDigest(
  incidents: readonly Incident[],
  period: { from: number; to: number },
  options: { topUsers?: number; unreadable?: number } = {},
): DigestSummary {
  const topN = options.topUsers ?? DEFAULT_TOP_USERS;
  const inPeriod = (iso: string | null): boolean => {
    if (iso === null) return false;
    const t = Date.parse(iso);
    return t > period.from && t <= period.to;
  };
  const list = incidents.filter((i) => inPeriod(i.updatedAt)).sort(byDetectedThenId);

  const byStatus = Object.fromEntries(IncidentStatus.options.map((s) => [s, 0])) as Record<IncidentStatus, number>;
  const rules = new Map<string, RuleSummary>();
  const users = new Map<string, { incidents: number; rules: Set<string> }>();
  const suppressed = new Map<SuppressReason, SuppressedSummary>();
  const mitigations: number[] = [];
  const needsHuman: HumanItem[] = [];
  let opened = 0;
  let dryRuns = 0;

  for (const i of list) {
    byStatus[i.status]++;
    if (inPeriod(i.detectedAt)) opened++;
    if (i.dryRun) dryRuns++;

    const rule = rules.get(i.rule) ?? { rule: i.rule, incidents: 0, resolved: 0, needsHuman: 0, suppressed: 0, open: 0 };
    rule.incidents++;
    if (i.status === "resolved") rule.resolved++;
    else if (NEEDS_HUMAN.has(i.status)) rule.needsHuman++;
    else if (i.status === "suppressed") rule.suppressed++;
    else rule.open++;
    rules.set(i.rule, rule);

    // A rollup record (ADR 12) stands for many users, none of them acted on: it is nobody's incident.
    if (i.rollup === undefined) {
      const user = users.get(i.target.userId) ?? { incidents: 0, rules: new Set<string>() };
      user.incidents++;
      user.rules.add(i.rule);
      users.set(i.target.userId, user);
    }

    for (const reason of SuppressReason.options) {
      const s = i.suppressed[reason];
      if (s === undefined || s.count === 0) continue;
      const sum = suppressed.get(reason) ?? { reason, triggers: 0, incidents: 0, lastAt: s.lastAt };
      sum.triggers += s.count;
      sum.incidents++;
      if (Date.parse(s.lastAt) > Date.parse(sum.lastAt)) sum.lastAt = s.lastAt;
      suppressed.set(reason, sum);
    }

    if (i.status === "resolved" && i.durations.mitigateMs !== null) mitigations.push(i.durations.mitigateMs);

    if (NEEDS_HUMAN.has(i.status)) {
      const ending = [...i.decisions].reverse().find((d) => d.kind === i.status) ?? i.decisions.at(-1);
      needsHuman.push({
        id: i.id,
        status: i.status,
        rule: i.rule,
        userId: i.target.userId,
        pod: i.target.pod,
        title: i.title,
        detectedAt: i.detectedAt,
        closedAt: i.closedAt,
        why: ending?.detail ?? "",
      });
    }
  }

  const rankedUsers = [...users.entries()]
    .map(([userId, u]) => ({ userId, incidents: u.incidents, rules: [...u.rules].sort(compare) }))
    .sort((a, b) => b.incidents - a.incidents || compare(a.userId, b.userId));

  return {
    from: new Date(period.from).toISOString(),
    to: new Date(period.to).toISOString(),
    incidents: list.length,
    opened,
    dryRuns,
    byStatus,
    byRule: [...rules.values()].sort((a, b) => b.incidents - a.incidents || compare(a.rule, b.rule)),
    mitigation: mitigations.length === 0 ? null : percentiles(mitigations),
    topUsers: rankedUsers.slice(0, topN),
    otherUsers: Math.max(0, rankedUsers.length - topN),
    // In the closed set's order, so the table reads the same every day.
    suppressed: SuppressReason.options.flatMap((r) => suppressed.get(r) ?? []),
    needsHuman,
    unreadable: options.unreadable ?? 0,
  };
}

/** The digest page for `summary`: GitHub-flavoured Markdown, every value from a log escaped. */
export function renderDigest(summary: DigestSummary): string {
  const s = summary;
  const out: string[] = [];
  out.push(`# Reclaim digest for ${s.to.slice(0, 10)}`, "");
  const hours = Math.round((Date.parse(s.to) - Date.parse(s.from)) / 3_600_000);
  out.push(
    `Incidents updated after ${s.from} and up to ${s.to} (${hours} h): ` +
      `**${s.incidents}** ${plural(s.incidents, "incident", "incidents")}, ${s.opened} opened in this period` +
      (s.dryRuns > 0 ? `, ${s.dryRuns} ${plural(s.dryRuns, "dry run", "dry runs")}` : "") +
      `; **${s.needsHuman.length}** ${plural(s.needsHuman.length, "needs", "need")} a human.`,
    "",
  );
  if (s.unreadable > 0) {
    out.push(`> **${s.unreadable} unreadable ${plural(s.unreadable, "record was", "records were")} skipped**: \`reclaim incidents list\` names them.`, "");
  }

  out.push("## Needs a human", "");
  if (s.needsHuman.length === 0) {
    out.push("_None: every incident of the period ended on its own or is still in progress._", "");
  } else {
    out.push("Escalated, failed or interrupted: the ladder did not fix these, or nobody knows whether it did. `reclaim incidents show ID` has the whole story.", "");
    out.push(
      ...table(
        ["Incident", "Status", "Rule", "User", "Pod", "Detected", "Closed", "Title", "Why"],
        s.needsHuman.map((h) => [
          mdCode(h.id, { inTable: true }),
          mdText(h.status),
          mdText(h.rule),
          mdText(h.userId),
          h.pod === null ? "—" : mdText(h.pod, MAX_TEXT),
          mdText(h.detectedAt),
          h.closedAt === null ? "—" : mdText(h.closedAt),
          mdText(h.title, MAX_TEXT),
          mdText(h.why, MAX_TEXT),
        ]),
      ),
    );
  }

  out.push("## By status", "");
  out.push(...table(["Status", "Incidents"], IncidentStatus.options.map((st) => [mdText(st), String(s.byStatus[st])])));

  out.push("## By rule", "");
  if (s.byRule.length === 0) out.push("_No incidents in this period._", "");
  else {
    out.push(
      ...table(
        ["Rule", "Incidents", "Resolved", "Need a human", "Suppressed", "Still open"],
        s.byRule.map((r) => [mdText(r.rule), String(r.incidents), String(r.resolved), String(r.needsHuman), String(r.suppressed), String(r.open)]),
      ),
    );
  }

  out.push("## Time to mitigate", "");
  if (s.mitigation === null) out.push("_No incident was resolved in this period._", "");
  else {
    const m = s.mitigation;
    out.push(`From detection to verified recovery, over ${m.count} resolved ${plural(m.count, "incident", "incidents")} (nearest-rank percentiles).`, "");
    out.push(...table(["p50", "p95", "Max"], [[formatDuration(m.p50Ms), formatDuration(m.p95Ms), formatDuration(m.maxMs)]]));
  }

  out.push("## Top users", "");
  if (s.topUsers.length === 0) out.push("_No incidents in this period._", "");
  else {
    out.push(...table(["User", "Incidents", "Rules"], s.topUsers.map((u) => [mdText(u.userId), String(u.incidents), u.rules.map((r) => mdText(r)).join(", ")])));
    if (s.otherUsers > 0) out.push(`_and ${s.otherUsers} more ${plural(s.otherUsers, "user", "users")}._`, "");
  }

  out.push("## Suppressed triggers", "");
  if (s.suppressed.length === 0) out.push("_None._", "");
  else {
    out.push("Triggers a guard stopped, counted on the incidents of the period (each incident's whole count).", "");
    out.push(...table(["Reason", "Triggers", "Incidents", "Last"], s.suppressed.map((x) => [mdText(x.reason), String(x.triggers), String(x.incidents), mdText(x.lastAt)])));
  }

  out.push("---", "", `_Written by the reclaim operator at ${s.to}. The JSON records are the source: \`reclaim incidents list\`._`, "");
  return out.join("\n");
}

/** The digest as a scheduled job (`name: "digest"`). */
export class DigestJob implements Job {
  readonly name = "digest";
  readonly schedule: string;
  private readonly windowMs: number;

  constructor(private readonly deps: DigestDeps) {
    this.schedule = deps.schedule ?? DEFAULT_DIGEST_SCHEDULE;
    this.windowMs = deps.windowMs ?? DEFAULT_DIGEST_WINDOW_MS;
    if (!Number.isFinite(this.windowMs) || this.windowMs <= 0) throw new TypeError(`DigestJob: windowMs must be a positive number of ms, got ${String(deps.windowMs)}`);
    if (typeof deps.dir !== "string" || deps.dir === "") throw new TypeError(`DigestJob: dir must be a non-empty path, got ${JSON.stringify(deps.dir)}`);
  }

  /** The digest for "now", without writing it. */
  async build(): Promise<{ file: string; summary: DigestSummary; markdown: string }> {
    const to = this.deps.clock.now();
    const from = to - this.windowMs;
    const incidents = await this.deps.store.list({ since: from });
    // Only the file store counts what it skipped; other stores have nothing to report here.
    const skipped = (this.deps.store as { lastListSkipped?: unknown }).lastListSkipped;
    const summary = summarizeDigest(incidents, { from, to }, {
      ...(this.deps.topUsers === undefined ? {} : { topUsers: this.deps.topUsers }),
      unreadable: typeof skipped === "number" ? skipped : 0,
    });
    return { file: join(this.deps.dir, digestFileName(to)), summary, markdown: renderDigest(summary) };
  }

  async run(): Promise<string> {
    const { file, summary, markdown } = await this.build();
    await writeFileAtomic(file, markdown);
    const name = digestFileName(Date.parse(summary.to));
    return (
      `wrote ${name}: ${summary.incidents} ${plural(summary.incidents, "incident", "incidents")} (${summary.opened} opened), ` +
      `${summary.needsHuman.length} ${plural(summary.needsHuman.length, "needs", "need")} a human`
    );
  }
}

/** Nearest-rank percentiles (the value at rank ⌈p·n⌉ of the sorted values): always one of the values. */
function percentiles(values: readonly number[]): { count: number; p50Ms: number; p95Ms: number; maxMs: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number): number => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
  return { count: sorted.length, p50Ms: rank(0.5), p95Ms: rank(0.95), maxMs: sorted[sorted.length - 1]! };
}

function byDetectedThenId(a: Incident, b: Incident): number {
  return Date.parse(a.detectedAt) - Date.parse(b.detectedAt) || compare(a.id, b.id);
}

/** Code-unit order: the same on every host, whatever the locale. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A GFM table of cells already escaped; an empty cell shows as "—". */
function table(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const line = (cells: readonly string[]): string => `| ${cells.map((c) => (c === "" ? "—" : c)).join(" | ")} |`;
  return [line(headers), `|${headers.map(() => " --- ").join("|")}|`, ...rows.map(line), ""];
}

function plural(n: number, one: string, many: string): string {
  return n === 1 ? one : many;
}
