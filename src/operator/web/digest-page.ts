/**
 * `GET /digest`: the daily digest (jobs/digest.ts) as a page. The numbers
 * are the digest job's own (`summarizeDigest`), over the 24 hours up to
 * the request; only the rendering differs: HTML, every value escaped, each
 * incident id a link to its page.
 */
import type { DigestSummary } from "../jobs/digest.js";
import { formatDuration } from "../incidents/markdown.js";
import { IncidentStatus } from "../incidents/model.js";
import { html, type SafeHtml } from "./html.js";
import { page } from "./layout.js";

/** The digest page for `summary`. */
export function renderDigestPage(summary: DigestSummary): string {
  const s = summary;
  const hours = Math.round((Date.parse(s.to) - Date.parse(s.from)) / 3_600_000);
  const body = html`<h1>Digest for ${s.to.slice(0, 10)}</h1>
<p>Incidents updated after ${s.from} and up to ${s.to} (${hours} h): <strong>${s.incidents}</strong> ${s.incidents === 1 ? "incident" : "incidents"}, ${s.opened} opened in this period${
    s.dryRuns > 0 ? `, ${s.dryRuns} dry run(s)` : ""
  }; <strong>${s.needsHuman.length}</strong> ${s.needsHuman.length === 1 ? "needs" : "need"} a human.</p>
${s.unreadable > 0 ? html`<p class="error">${s.unreadable} unreadable record(s) were skipped: <code>reclaim incidents list</code> names them.</p>` : null}
<h2 id="needs-human">Needs a human</h2>
${
  s.needsHuman.length === 0
    ? html`<p class="muted">None: every incident of the period ended on its own or is still in progress.</p>`
    : table(
        "needs-human",
        ["Incident", "Status", "Rule", "User", "Pod", "Detected", "Closed", "Title", "Why"],
        s.needsHuman.map((h) => [
          html`<a href="incidents/${encodeURIComponent(h.id)}"><code>${h.id}</code></a>`,
          html`<span class="status status-${h.status}">${h.status}</span>`,
          html`${h.rule}`,
          html`<code>${h.userId}</code>`,
          html`${h.pod ?? "—"}`,
          html`${h.detectedAt}`,
          html`${h.closedAt ?? "—"}`,
          html`${h.title}`,
          html`${h.why}`,
        ]),
      )
}
<h2 id="by-status">By status</h2>
${table(
  "by-status",
  ["Status", "Incidents"],
  IncidentStatus.options.map((st) => [html`<a href="./?status=${st}">${st}</a>`, html`${s.byStatus[st] ?? 0}`]),
)}
<h2 id="by-rule">By rule</h2>
${
  s.byRule.length === 0
    ? html`<p class="muted">No incidents in this period.</p>`
    : table(
        "by-rule",
        ["Rule", "Incidents", "Resolved", "Need a human", "Suppressed", "Still open"],
        s.byRule.map((r) => [html`<a href="./?rule=${encodeURIComponent(r.rule)}">${r.rule}</a>`, html`${r.incidents}`, html`${r.resolved}`, html`${r.needsHuman}`, html`${r.suppressed}`, html`${r.open}`]),
      )
}
<h2 id="mitigate">Time to mitigate</h2>
${
  s.mitigation === null
    ? html`<p class="muted">No incident was resolved in this period.</p>`
    : html`<p>From detection to verified recovery, over ${s.mitigation.count} resolved incident(s) (nearest-rank percentiles).</p>${table(
        "mitigate",
        ["p50", "p95", "Max"],
        [[html`${formatDuration(s.mitigation.p50Ms)}`, html`${formatDuration(s.mitigation.p95Ms)}`, html`${formatDuration(s.mitigation.maxMs)}`]],
      )}`
}
<h2 id="top-users">Top users</h2>
${
  s.topUsers.length === 0
    ? html`<p class="muted">No incidents in this period.</p>`
    : html`${table(
        "top-users",
        ["User", "Incidents", "Rules"],
        s.topUsers.map((u) => [html`<a href="./?user=${encodeURIComponent(u.userId)}"><code>${u.userId}</code></a>`, html`${u.incidents}`, html`${u.rules.join(", ")}`]),
      )}${s.otherUsers > 0 ? html`<p class="muted">and ${s.otherUsers} more user(s).</p>` : null}`
}
<h2 id="suppressed">Suppressed triggers</h2>
${
  s.suppressed.length === 0
    ? html`<p class="muted">None.</p>`
    : table(
        "suppressed",
        ["Reason", "Triggers", "Incidents", "Last"],
        s.suppressed.map((x) => [html`${x.reason}`, html`${x.triggers}`, html`${x.incidents}`, html`${x.lastAt}`]),
      )
}`;
  return page({ title: `Digest for ${s.to.slice(0, 10)}`, root: "./", body });
}

function table(label: string, headers: readonly string[], rows: readonly (readonly SafeHtml[])[]): SafeHtml {
  return html`<table aria-labelledby="${label}"><thead><tr>${headers.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead><tbody>${rows.map(
    (row) => html`<tr>${row.map((c) => html`<td>${c}</td>`)}</tr>`,
  )}</tbody></table>`;
}
