/**
 * `GET /`: the incidents, newest first, with counts by status, a filter
 * form that works without script (a plain GET form), and links to the
 * next page. Every value escaped (html.ts).
 */
import { acknowledgement } from "../incidents/human.js";
import { IncidentStatus, type Incident } from "../incidents/model.js";
import { html, type SafeHtml } from "./html.js";
import { page } from "./layout.js";
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, parseCursor, queryString, type ListPage, type ListQuery } from "./query.js";

/** The list page for `query` and the page of records it selected. */
export function renderListPage(query: ListQuery, result: ListPage): string {
  const filtered = query.status.length > 0 || query.rule !== null || query.user !== null || query.from !== null || query.to !== null;
  const counts = IncidentStatus.options.map(
    (s) =>
      html`<li><a href="./${queryString(query, { status: [s] })}"><span class="status status-${s}">${s}</span></a> ${result.counts[s]}</li>`,
  );
  const rows = result.items.map(row);
  const nextLink = result.next === null ? null : html`<a href="./${queryString(query, { before: parseCursor(result.next) })}" rel="next">Older incidents →</a>`;
  const body = html`<h1>Incidents</h1>
<p class="muted">${result.total} ${result.total === 1 ? "incident matches" : "incidents match"}${filtered ? " the filter" : ""}; newest first${query.before === null ? "" : ", continued"}.</p>
<h2 id="counts">By status</h2>
<ul class="counts" aria-labelledby="counts">${counts}</ul>
${filterForm(query)}
<h2 id="list">List</h2>
${
  rows.length === 0
    ? html`<p>No incidents${filtered ? " match the filter" : " on record"}.</p>`
    : html`<table aria-labelledby="list">
<thead><tr><th scope="col">Detected</th><th scope="col">Status</th><th scope="col">Severity</th><th scope="col">Rule</th><th scope="col">User</th><th scope="col">Title</th><th scope="col">Rungs</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>`
}
<nav class="pages" aria-label="Pages">${query.before === null ? null : html`<a href="./${queryString(query)}">← Newest</a>`}${nextLink}</nav>`;
  return page({ title: "Incidents", root: "./", body });
}

function row(i: Incident): SafeHtml {
  const ack = acknowledgement(i);
  const user = i.rollup === undefined ? html`<a href="./?user=${encodeURIComponent(i.target.userId)}"><code>${i.target.userId}</code></a>` : html`${i.rollup.keys.length} users (${i.rollup.reason})`;
  return html`<tr>
<td><a href="incidents/${encodeURIComponent(i.id)}">${i.detectedAt}</a><br><code class="muted">${i.id}</code></td>
<td><span class="status status-${i.status}">${i.status}</span>${i.dryRun ? " (dry run)" : ""}${ack === null ? "" : html`<br><span class="muted">acked by ${ack.by}</span>`}</td>
<td>${i.severity}</td>
<td><a href="./?rule=${encodeURIComponent(i.rule)}">${i.rule}</a></td>
<td>${user}</td>
<td>${i.title}</td>
<td>${i.rungs.length === 0 ? "—" : i.rungs.map((r) => `${r.rung}: ${r.outcome}`).join(", ")}</td>
</tr>`;
}

/** A GET form: status checkboxes (from the schema's statuses), rule, user, time range, page size. */
function filterForm(query: ListQuery): SafeHtml {
  const local = (ms: number | null): string => (ms === null ? "" : new Date(ms).toISOString().slice(0, 16));
  const boxes = IncidentStatus.options.map(
    (s) => html`<label><input type="checkbox" name="status" value="${s}"${query.status.includes(s) ? html` checked` : ""}> ${s}</label>`,
  );
  return html`<h2 id="filter">Filter</h2>
<form class="filters" method="get" action="./" aria-labelledby="filter">
<fieldset><legend>Status</legend>${boxes}</fieldset>
<label for="f-rule">Rule<input id="f-rule" type="text" name="rule" value="${query.rule ?? ""}" maxlength="63"></label>
<label for="f-user">User<input id="f-user" type="text" name="user" value="${query.user ?? ""}" maxlength="128"></label>
<label for="f-from">Detected from (UTC)<input id="f-from" type="datetime-local" name="from" value="${local(query.from)}"></label>
<label for="f-to">Detected before (UTC)<input id="f-to" type="datetime-local" name="to" value="${local(query.to)}"></label>
<label for="f-limit">Per page<input id="f-limit" type="number" name="limit" min="1" max="${MAX_PAGE_SIZE}" value="${query.limit === DEFAULT_PAGE_SIZE ? "" : query.limit}" placeholder="${DEFAULT_PAGE_SIZE}"></label>
<button type="submit">Apply</button> <a href="./">Clear</a>
</form>`;
}
