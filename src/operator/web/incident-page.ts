/**
 * `GET /incidents/{id}`: one incident for on-call, in the order a
 * postmortem reads: summary and links (runbook, Alertmanager, the JSON),
 * impact before and after, the timeline (inline SVG, then the same as a
 * table: every decision with the guard that made it, and on-call's acks and
 * notes), what each rung did and how it was verified, suppressed triggers,
 * the evidence with its way back to the logs, follow-ups. Every value
 * escaped (html.ts); URLs from the record are linked only when they are
 * http(s).
 */
import { acknowledgement } from "../incidents/human.js";
import { formatDuration } from "../incidents/markdown.js";
import { SuppressReason, type Decision, type EvidenceEntry, type HumanEntry, type Incident, type RungRun, type UserSnapshot } from "../incidents/model.js";
import { html, multiline, safeHref, type SafeHtml } from "./html.js";
import { page } from "./layout.js";
import { renderTimeline } from "./timeline.js";

/** What the incident page links to besides the record. */
export interface IncidentLinks {
  /** Alertmanager's base URL, for a link to this incident's alerts; null: no link. */
  alertmanagerUrl: string | null;
}

/** The link to the alerts of incident `id` in Alertmanager's UI (its `incident` label), or null without a URL. */
export function alertmanagerLink(base: string | null, id: string): string | null {
  if (base === null) return null;
  const href = safeHref(base);
  if (href === null) return null;
  return `${href.replace(/\/+$/, "")}/#/alerts?filter=${encodeURIComponent(`{incident="${id}"}`)}`;
}

/**
 * The guard a decision records, or null for decisions that are not a
 * guard's: the guards that passed (`guards passed: leader, cooldown`), or
 * the reason a trigger was not acted on (`not acted on (silenced): …`,
 * `dry run: …`), from the closed set of reasons.
 */
export function guardOf(decision: Decision): string | null {
  if (decision.kind === "guards_passed") return decision.detail.replace(/^guards passed:\s*/, "passed: ");
  if (decision.kind !== "suppressed") return null;
  if (/^dry run\b/.test(decision.detail)) return "dry_run";
  for (const reason of SuppressReason.options) {
    if (decision.detail.includes(`(${reason})`) || decision.detail.startsWith(`${reason}:`)) return reason;
  }
  return null;
}

/** The incident page. */
export function renderIncidentPage(incident: Incident, links: IncidentLinks): string {
  const i = incident;
  const ack = acknowledgement(i);
  const runbook = i.ruleInfo?.runbook;
  const runbookHref = runbook === undefined ? null : safeHref(runbook);
  const amHref = alertmanagerLink(links.alertmanagerUrl, i.id);
  const linkItems: SafeHtml[] = [html`<li><a href="../api/v1/incidents/${encodeURIComponent(i.id)}">The record as JSON</a></li>`];
  if (runbook !== undefined) {
    linkItems.push(runbookHref === null ? html`<li>Runbook: <code>${runbook}</code></li>` : html`<li><a href="${runbookHref}" rel="noreferrer">Runbook</a></li>`);
  }
  if (amHref !== null) linkItems.push(html`<li><a href="${amHref}" rel="noreferrer">Alerts in Alertmanager</a></li>`);
  linkItems.push(html`<li><a href="../?rule=${encodeURIComponent(i.rule)}">Incidents of rule ${i.rule}</a></li>`);
  if (i.rollup === undefined) linkItems.push(html`<li><a href="../?user=${encodeURIComponent(i.target.userId)}">Incidents of user ${i.target.userId}</a></li>`);

  const body = html`<p><a href="../">← All incidents</a></p>
<h1>${i.title}</h1>
<p><span class="status status-${i.status}">${i.status}</span>${i.dryRun ? " (dry run)" : ""} · severity ${i.severity} · <code>${i.id}</code>${
    ack === null ? "" : html` · acknowledged by ${ack.by} at ${ack.at}`
  }</p>
<ul>${linkItems}</ul>
<h2 id="summary">Summary</h2>
${fields("summary", [
  ["Rule", html`${i.rule}${i.ruleInfo === undefined ? "" : html` <span class="muted">(revision <code>${i.ruleInfo.revision}</code>)</span>`}`],
  ...(i.ruleInfo?.description === undefined ? [] : [["Rule description", html`${i.ruleInfo.description}`] as const]),
  ["Key", html`<code>${i.keyString}</code>`],
  ["User", i.rollup === undefined ? html`<code>${i.target.userId}</code>` : html`${i.rollup.keys.length} users listed below (rollup, ${i.rollup.reason})`],
  ["Pod", html`${i.target.pod ?? "—"}${i.target.namespace ? html` in namespace ${i.target.namespace}` : ""}`],
  ["Control API", html`<code>${i.target.control}</code>`],
  ["First matching entry", html`${i.firstEntryAt}`],
  ["Detected", html`${i.detectedAt} <span class="muted">(${formatDuration(i.durations.detectMs)} after the first entry)</span>`],
  ["Resolved", html`${i.resolvedAt ?? "—"}${i.durations.mitigateMs === null ? "" : html` <span class="muted">(mitigated in ${formatDuration(i.durations.mitigateMs)})</span>`}`],
  ["Closed", html`${i.closedAt ?? "—"}${i.durations.totalMs === null ? "" : html` <span class="muted">(${formatDuration(i.durations.totalMs)} in all)</span>`}`],
  ["Last updated", html`${i.updatedAt}`],
  ...(i.operatorVersion === undefined ? [] : [["Operator version", html`${i.operatorVersion}`] as const]),
])}
<h2 id="impact">Impact</h2>
${impact(i.before, i.after)}
<h2 id="timeline">Timeline</h2>
${renderTimeline(i)}
${events(i)}
<h2 id="actions">Actions</h2>
${actions(i.rungs)}
<h2 id="suppressed">Suppressed triggers</h2>
${suppressed(i)}
<h2 id="evidence">Evidence</h2>
${evidence(i)}
${i.rollup === undefined ? null : rollup(i)}
<h2 id="follow-ups">Follow-ups</h2>
${i.followUps.length === 0 ? html`<p class="muted">None recorded.</p>` : html`<ul>${i.followUps.map((f) => html`<li>${f}</li>`)}</ul>`}`;
  return page({ title: i.title, root: "../", body });
}

function fields(label: string, rows: readonly (readonly [string, SafeHtml])[]): SafeHtml {
  return html`<table class="fields" aria-labelledby="${label}"><tbody>${rows.map(([name, value]) => html`<tr><th scope="row">${name}</th><td>${value}</td></tr>`)}</tbody></table>`;
}

function impact(before: UserSnapshot | null, after: UserSnapshot | null): SafeHtml {
  if (before === null && after === null) return html`<p class="muted">The factory was not asked about the user (no snapshot on record).</p>`;
  const cell = (s: UserSnapshot | null, f: (s: UserSnapshot) => string | number): string | number => (s === null ? "—" : f(s));
  const rows: [string, (s: UserSnapshot) => string | number][] = [
    ["At", (s) => s.at],
    ["New connection admitted", (s) => (s.admit ? "yes" : "no (refused)")],
    ["Connections (active managers)", (s) => s.active],
    ["Limit (effective)", (s) => s.effectiveLimit],
    ["Queued", (s) => s.queued],
    ["Refusals counted", (s) => s.refusals ?? "—"],
    ["Last refused", (s) => s.lastRefusedAt ?? "—"],
  ];
  return html`<table aria-labelledby="impact"><thead><tr><th scope="col"></th><th scope="col">Before</th><th scope="col">After</th></tr></thead><tbody>${rows.map(
    ([name, f]) => html`<tr><th scope="row">${name}</th><td>${cell(before, f)}</td><td>${cell(after, f)}</td></tr>`,
  )}</tbody></table>`;
}

/** Decisions and human entries, in time order (ties: decisions first, as recorded). */
function events(i: Incident): SafeHtml {
  type Row = { at: string; n: number; decision?: Decision; human?: HumanEntry };
  const rows: Row[] = [...i.decisions.map((d, n) => ({ at: d.at, n, decision: d })), ...(i.human ?? []).map((h, n) => ({ at: h.at, n: 100_000 + n, human: h }))];
  rows.sort((a, b) => Date.parse(a.at) - Date.parse(b.at) || a.n - b.n);
  const dropped = i.decisionsDropped > 0 ? html`<p class="muted">${i.decisionsDropped} older decision(s) were dropped from the record (it keeps the latest).</p>` : null;
  const humanDropped = (i.humanDropped ?? 0) > 0 ? html`<p class="muted">${i.humanDropped ?? 0} ack(s) or note(s) dropped or unreadable.</p>` : null;
  return html`<h3 id="events">Decisions, acks and notes</h3>${dropped}${humanDropped}
<table aria-labelledby="events"><thead><tr><th scope="col">At</th><th scope="col">What</th><th scope="col">Guard</th><th scope="col">Detail</th></tr></thead><tbody>
${rows.map((r) =>
  r.decision !== undefined
    ? html`<tr><td class="time">${r.at}</td><td>${r.decision.kind}</td><td>${guardOf(r.decision) ?? "—"}</td><td>${r.decision.detail}</td></tr>`
    : html`<tr><td class="time">${r.at}</td><td>${r.human!.kind === "ack" ? "acknowledged" : "note"} by <strong>${r.human!.by}</strong></td><td>—</td><td>${r.human!.text === "" ? "—" : multiline(r.human!.text)}</td></tr>`,
)}
</tbody></table>`;
}

function actions(rungs: readonly RungRun[]): SafeHtml {
  if (rungs.length === 0) return html`<p class="muted">No rung ran.</p>`;
  return html`<table aria-labelledby="actions"><thead><tr><th scope="col">#</th><th scope="col">Rung</th><th scope="col">Outcome</th><th scope="col">Started</th><th scope="col">Took</th><th scope="col">Result</th><th scope="col">Verification</th></tr></thead><tbody>
${rungs.map((r) => {
  const result =
    r.result === null
      ? html`${r.error ?? (r.response === null ? "—" : `HTTP ${r.response.status}`)}`
      : html`removed ${r.result.removed.length}, ${r.result.remaining}/${r.result.effectiveLimit} left, ${r.result.admit ? "admitted" : "refused"}${
          r.result.removed.length === 0 ? "" : html`<br><span class="muted">${r.result.removed.slice(0, 10).map((m) => `${m.managerId} (${m.reason})`).join(", ")}${r.result.removed.length > 10 ? ` and ${r.result.removed.length - 10} more` : ""}</span>`
        }`;
  const v = r.verification;
  const verification =
    v === null
      ? html`—`
      : html`${v.unknown === true ? "unknown" : v.verified ? "verified" : "not verified"} at ${v.at}: ${v.detail}${v.canary === null ? "" : html`<br><span class="muted">canary: ${v.canary.ok ? "ok" : "failed"}, ${v.canary.detail}</span>`}`;
  return html`<tr><td>${r.index + 1}</td><td>${r.rung}<br><code class="muted">${r.request.method} ${r.request.url}</code></td><td>${r.outcome}${r.attempts > 1 ? ` (${r.attempts} attempts)` : ""}</td><td class="time">${r.startedAt}</td><td class="time">${formatDuration(r.durationMs)}</td><td>${result}</td><td>${verification}</td></tr>`;
})}
</tbody></table>`;
}

function suppressed(i: Incident): SafeHtml {
  const rows = SuppressReason.options.flatMap((reason) => {
    const s = i.suppressed[reason];
    return s === undefined ? [] : [html`<tr><td>${reason}</td><td>${s.count}</td><td>${s.lastAt}</td></tr>`];
  });
  if (rows.length === 0) return html`<p class="muted">None: no trigger for this key was held back while this was its incident.</p>`;
  return html`<table aria-labelledby="suppressed"><thead><tr><th scope="col">Guard (reason)</th><th scope="col">Triggers</th><th scope="col">Last</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function evidence(i: Incident): SafeHtml {
  const { entries, total } = i.evidence;
  if (entries.length === 0) return html`<p class="muted">No log entries kept.</p>`;
  const more = total > entries.length ? html`<p class="muted">${entries.length} of ${total} matching entries kept; the rest were counted.</p>` : null;
  return html`${more}<table aria-labelledby="evidence"><thead><tr><th scope="col">Time</th><th scope="col">Severity</th><th scope="col">Event</th><th scope="col">Message</th><th scope="col">Fields</th><th scope="col">In the logs</th></tr></thead><tbody>
${entries.map((e) => html`<tr><td class="time">${e.time}</td><td>${e.severity}</td><td>${e.event ?? "—"}</td><td>${e.message}</td><td class="mono">${fieldsText(e)}</td><td>${logLink(e)}</td></tr>`)}
</tbody></table>`;
}

function fieldsText(e: EvidenceEntry): string {
  const parts = Object.keys(e.fields)
    .sort()
    .map((k) => `${k}=${String(e.fields[k])}`);
  const text = parts.join(", ");
  return text.length > 400 ? `${text.slice(0, 399)}…` : text || "—";
}

/** The way back to the log line: the Logs Explorer link, else the file and byte offset, else the insertId. */
function logLink(e: EvidenceEntry): SafeHtml {
  const href = e.logsUrl === undefined ? null : safeHref(e.logsUrl);
  if (href !== null) return html`<a href="${href}" rel="noreferrer">Logs Explorer</a>`;
  if (e.file !== undefined) return html`<code>${e.file.path}</code> at byte ${e.file.offset}`;
  if (e.insertId !== null) return html`insertId <code>${e.insertId}</code>`;
  return html`—`;
}

function rollup(i: Incident): SafeHtml {
  const r = i.rollup!;
  return html`<h2 id="rollup">Users in this rollup</h2>
<p>Triggers stopped by <strong>${r.reason}</strong> in the hour from ${r.hour} (part ${r.part})${r.unlisted.triggers > 0 ? `; ${r.unlisted.triggers} more trigger(s) not listed` : ""}.</p>
<table aria-labelledby="rollup"><thead><tr><th scope="col">User</th><th scope="col">Pod</th><th scope="col">Triggers</th><th scope="col">First</th><th scope="col">Last</th></tr></thead><tbody>
${r.keys.map((k) => html`<tr><td><a href="../?user=${encodeURIComponent(k.userId)}"><code>${k.userId}</code></a></td><td>${k.pod ?? "—"}</td><td>${k.triggers}</td><td>${k.firstAt}</td><td>${k.lastAt}</td></tr>`)}
</tbody></table>`;
}
