/**
 * An incident's timeline as inline SVG, drawn on the server from the record
 * alone: the user's connections (active managers) against their limit at
 * each moment the record knows them (before, after each rung, at each
 * verification, after), whether a new connection was admitted then, each
 * rung and each verification as a marker, and on-call's acks and notes on
 * a lane of their own. No script and no `style` attribute (the page's CSP
 * allows neither): colours come from classes in the page's stylesheet, and
 * each marker's `<title>` says in words what its shape and colour show. The
 * page beside it has the same events as a table, for those who do not see it.
 */
import { formatDuration } from "../incidents/markdown.js";
import type { Incident } from "../incidents/model.js";
import { html, raw, type SafeHtml } from "./html.js";

/** The drawing's size in its own units (it scales to the page's width). */
const WIDTH = 960;
const HEIGHT = 280;
const LEFT = 84;
const RIGHT = WIDTH - 24;
const TOP = 60;
const BOTTOM = 204;
/** Where the admission strip, the verification markers and the human lane sit. */
const STRIP_Y = 8;
const VERIFY_Y = 36;
const HUMAN_Y = 250;
/** Most markers drawn per kind (a record holds at most 20 rungs and 50 human entries: this is not a cut in practice). */
const MAX_MARKERS = 60;

/** One moment at which the record knows the user's state. */
interface Sample {
  at: number;
  active: number;
  limit: number;
  admit: boolean;
  what: string;
}

/** What the record says about the user over time (exported for tests). */
export function samplesOf(incident: Incident): Sample[] {
  const samples: Sample[] = [];
  const add = (iso: string | null | undefined, active: number, limit: number, admit: boolean, what: string): void => {
    const at = iso === null || iso === undefined ? Number.NaN : Date.parse(iso);
    if (Number.isFinite(at) && Number.isFinite(active) && Number.isFinite(limit)) samples.push({ at, active, limit, admit, what });
  };
  if (incident.before !== null) add(incident.before.at, incident.before.active, incident.before.effectiveLimit, incident.before.admit, "before");
  for (const rung of incident.rungs) {
    if (rung.result !== null) add(rung.finishedAt ?? rung.startedAt, rung.result.remaining, rung.result.effectiveLimit, rung.result.admit, `after ${rung.rung}`);
    const v = rung.verification;
    if (v?.admission) add(v.at, v.admission.active, v.admission.effectiveLimit, v.admission.admit, `verification after ${rung.rung}`);
  }
  if (incident.after !== null) add(incident.after.at, incident.after.active, incident.after.effectiveLimit, incident.after.admit, "after");
  return samples.sort((a, b) => a.at - b.at);
}

/** The SVG for `incident`'s timeline (a `<figure>` with a caption). */
export function renderTimeline(incident: Incident): SafeHtml {
  const samples = samplesOf(incident);
  const times: number[] = [...samples.map((s) => s.at)];
  const push = (iso: string | null | undefined): void => {
    const t = iso === null || iso === undefined ? Number.NaN : Date.parse(iso);
    if (Number.isFinite(t)) times.push(t);
  };
  push(incident.firstEntryAt);
  push(incident.detectedAt);
  push(incident.closedAt);
  for (const r of incident.rungs) {
    push(r.startedAt);
    push(r.finishedAt);
    push(r.verification?.at);
  }
  push(incident.after?.at);
  // The scale covers what the operator did; acks and notes that came later (often hours) sit at the right edge, marked "later".
  const start = Math.min(...times);
  const end = Math.max(start + 1000, ...times);
  const x = (t: number): number => round(LEFT + ((Math.min(Math.max(t, start), end) - start) / (end - start)) * (RIGHT - LEFT));
  const top = Math.max(1, ...samples.map((s) => Math.max(s.active, s.limit)));
  const yMax = Math.ceil(top * 1.1);
  const y = (v: number): number => round(BOTTOM - (Math.max(0, v) / yMax) * (BOTTOM - TOP));

  const parts: SafeHtml[] = [];
  // Axes: zero and the limit, the start and the end.
  parts.push(html`<line class="tl-axis" x1="${LEFT}" y1="${BOTTOM}" x2="${RIGHT}" y2="${BOTTOM}"/>`);
  parts.push(html`<line class="tl-axis" x1="${LEFT}" y1="${TOP - 4}" x2="${LEFT}" y2="${BOTTOM}"/>`);
  parts.push(html`<text class="tl-label" x="${LEFT - 6}" y="${BOTTOM + 4}" text-anchor="end">0</text>`);
  parts.push(html`<text class="tl-label" x="${LEFT - 6}" y="${TOP + 4}" text-anchor="end">${yMax}</text>`);
  parts.push(html`<text class="tl-label" x="${LEFT}" y="${BOTTOM + 18}">${new Date(start).toISOString()}</text>`);
  parts.push(html`<text class="tl-label" x="${RIGHT}" y="${BOTTOM + 18}" text-anchor="end">+${formatDuration(end - start)}</text>`);
  parts.push(html`<text class="tl-label" x="4" y="${STRIP_Y + 8}">admission</text>`);
  parts.push(html`<text class="tl-label" x="4" y="${VERIFY_Y + 4}">verified?</text>`);
  parts.push(html`<text class="tl-label" x="4" y="${(TOP + BOTTOM) / 2}">connections</text>`);
  parts.push(html`<text class="tl-label" x="4" y="${HUMAN_Y + 4}">on-call</text>`);

  // Detection and the end, as thin vertical lines.
  const detected = Date.parse(incident.detectedAt);
  if (Number.isFinite(detected)) parts.push(vertical(x(detected), "tl-detected", `detected at ${incident.detectedAt}`));
  const closed = incident.closedAt === null ? Number.NaN : Date.parse(incident.closedAt);
  if (Number.isFinite(closed)) parts.push(vertical(x(closed), "tl-closed", `${incident.status} at ${incident.closedAt}`));

  if (samples.length > 0) {
    // The limit as a step line, the connections as a line with a dot at each sample.
    const steps = (value: (s: Sample) => number): string =>
      samples.map((s, n) => (n === 0 ? `M${x(s.at)},${y(value(s))}` : `H${x(s.at)}V${y(value(s))}`)).join("") + `H${RIGHT}`;
    parts.push(html`<path class="tl-limit" d="${steps((s) => s.limit)}"><title>limit (effective)</title></path>`);
    parts.push(html`<path class="tl-active" d="${steps((s) => s.active)}"><title>connections (active managers)</title></path>`);
    for (const s of samples) {
      parts.push(
        html`<circle class="tl-sample" cx="${x(s.at)}" cy="${y(s.active)}" r="3"><title>${s.what}: ${s.active}/${s.limit} connections, ${s.admit ? "admitted" : "refused"} (${new Date(s.at).toISOString()})</title></circle>`,
      );
    }
    // Admission over time: refused (red) or admitted (green) from each sample to the next.
    samples.forEach((s, n) => {
      const from = x(s.at);
      const to = n + 1 < samples.length ? x(samples[n + 1]!.at) : RIGHT;
      parts.push(
        html`<rect class="${s.admit ? "tl-admit" : "tl-refuse"}" x="${from}" y="${STRIP_Y}" width="${Math.max(1, round(to - from))}" height="8"><title>${s.admit ? "new connections admitted" : "new connections refused"} from ${new Date(s.at).toISOString()} (${s.what})</title></rect>`,
      );
    });
  }

  // Rungs: a triangle on the axis where each started; verifications: a circle (✓ held, ✗ not, ? unknown).
  for (const rung of incident.rungs.slice(0, MAX_MARKERS)) {
    const at = Date.parse(rung.startedAt);
    if (!Number.isFinite(at)) continue;
    const cx = x(at);
    const removed = rung.result === null ? "" : `, removed ${rung.result.removed.length}, ${rung.result.remaining} left`;
    parts.push(
      html`<g class="tl-rung tl-outcome-${rung.outcome}"><path d="M${cx},${BOTTOM - 12}l7,12h-14z"/><text class="tl-label" x="${cx}" y="${BOTTOM - 16 - (rung.index % 2) * 14}" text-anchor="middle">${rung.rung}</text><title>rung ${rung.index + 1}: ${rung.rung} started ${rung.startedAt}: ${rung.outcome}${removed}, ${formatDuration(rung.durationMs)}</title></g>`,
    );
    const v = rung.verification;
    if (v !== null) {
      const vt = Date.parse(v.at);
      if (!Number.isFinite(vt)) continue;
      const state = v.unknown === true ? "unknown" : v.verified ? "verified" : "not-verified";
      const mark = v.unknown === true ? "?" : v.verified ? "✓" : "✗";
      parts.push(
        html`<g class="tl-verify tl-${state}"><circle cx="${x(vt)}" cy="${VERIFY_Y}" r="8"/><text class="tl-mark" x="${x(vt)}" y="${VERIFY_Y + 4}" text-anchor="middle">${mark}</text><title>verification after ${rung.rung} at ${v.at}: ${state.replace("-", " ")}: ${v.detail}</title></g>`,
      );
    }
  }

  // On-call's acks (diamonds) and notes (squares).
  const human = (incident.human ?? []).slice(0, MAX_MARKERS);
  if (human.some((e) => Date.parse(e.at) > end)) parts.push(html`<text class="tl-label" x="${RIGHT - 12}" y="${HUMAN_Y + 4}" text-anchor="end">later →</text>`);
  for (const entry of human) {
    const at = Date.parse(entry.at);
    if (!Number.isFinite(at)) continue;
    const cx = x(at);
    const shape = entry.kind === "ack" ? raw(`<path d="M${cx},${HUMAN_Y - 7}l7,7l-7,7l-7,-7z"/>`) : raw(`<rect x="${cx - 6}" y="${HUMAN_Y - 6}" width="12" height="12"/>`);
    parts.push(html`<g class="tl-human tl-${entry.kind}">${shape}<title>${entry.kind} by ${entry.by} at ${entry.at}${entry.text === "" ? "" : `: ${entry.text}`}</title></g>`);
  }

  const summary =
    samples.length === 0
      ? "No connection counts on record."
      : `Connections went from ${samples[0]!.active}/${samples[0]!.limit} (${samples[0]!.admit ? "admitted" : "refused"}) to ` +
        `${samples.at(-1)!.active}/${samples.at(-1)!.limit} (${samples.at(-1)!.admit ? "admitted" : "refused"}).`;
  const description = `${summary} ${incident.rungs.length} rung(s), ${incident.rungs.filter((r) => r.verification !== null).length} verification(s), ${(incident.human ?? []).length} ack(s) and note(s). The table below lists the same events.`;
  return html`<figure class="timeline">
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="tl-title tl-desc" focusable="false">
<title id="tl-title">Timeline of ${incident.id}</title>
<desc id="tl-desc">${description}</desc>
${parts}
</svg>
<figcaption>${description} Legend: line = connections, dashed = limit, ▲ rung, ● verification (✓ held, ✗ not), ◆ ack, ■ note; the strip on top is red while new connections were refused, green once admitted.</figcaption>
</figure>`;
}

function vertical(at: number, cls: string, title: string): SafeHtml {
  return html`<line class="${cls}" x1="${at}" y1="${STRIP_Y}" x2="${at}" y2="${BOTTOM}"><title>${title}</title></line>`;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
