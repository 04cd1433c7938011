/**
 * The shell every page of the web view shares: one stylesheet, inlined and
 * allowed by its hash in a strict Content-Security-Policy (no script at all,
 * nothing loaded from anywhere), and the headers that go with every answer.
 * A page that somehow carried an injected `<script>` or `style` attribute
 * would still not run or apply it: the browser refuses both (ADR 24).
 */
import { createHash } from "node:crypto";
import { html, raw, type SafeHtml } from "./html.js";

/** The stylesheet, fixed at build time: its hash is what the CSP allows. */
export const STYLESHEET = `
:root { color-scheme: light; --fg: #1b1f24; --muted: #4a5360; --line: #c9d1d9; --bg: #ffffff; --head: #f3f5f7;
  --ok: #1a7f37; --bad: #b42318; --warn: #8a5a00; --link: #0b57d0; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header.site { background: #1b1f24; color: #fff; padding: .6rem 1.2rem; display: flex; gap: 1.5rem; align-items: baseline; flex-wrap: wrap; }
header.site a { color: #fff; }
header.site .brand { font-weight: 700; }
main { padding: 1rem 1.2rem 3rem; max-width: 1200px; }
h1 { font-size: 1.4rem; margin: .4rem 0 .8rem; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
a { color: var(--link); }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem; border-bottom: 1px solid var(--line); overflow-wrap: break-word; }
td.time { white-space: nowrap; }
thead th { background: var(--head); }
table.fields th { width: 14rem; background: var(--head); }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .9em; overflow-wrap: anywhere; word-break: break-word; }
.muted { color: var(--muted); }
.status { display: inline-block; padding: 0 .45rem; border-radius: .6rem; border: 1px solid currentColor; font-size: .85em; white-space: nowrap; }
.status-resolved { color: var(--ok); }
.status-escalated, .status-failed, .status-interrupted, .status-held { color: var(--bad); }
.status-open, .status-remediating { color: var(--warn); }
.status-suppressed { color: var(--muted); }
ul.counts { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .4rem 1rem; margin: .2rem 0 1rem; }
form.filters { display: flex; flex-wrap: wrap; gap: .6rem 1rem; align-items: flex-end; background: var(--head); padding: .7rem; border-radius: .4rem; }
form.filters fieldset { border: 0; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: .2rem .8rem; }
form.filters legend { font-weight: 600; padding: 0; }
form.filters label { display: flex; flex-direction: column; font-weight: 600; font-size: .9em; }
form.filters fieldset label { flex-direction: row; gap: .25rem; font-weight: 400; }
form.filters input[type=text], form.filters input[type=datetime-local], form.filters input[type=number] { font: inherit; padding: .2rem .3rem; min-width: 10rem; }
button { font: inherit; padding: .3rem .9rem; }
nav.pages { display: flex; gap: 1rem; margin: .5rem 0; }
.error { border-left: 4px solid var(--bad); padding: .5rem 1rem; background: #fff5f5; }
figure.timeline { margin: .5rem 0 1rem; }
figure.timeline svg { width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
figure.timeline figcaption { color: var(--muted); font-size: .9em; }
.tl-axis { stroke: #4a5360; stroke-width: 1; }
.tl-label { fill: #1b1f24; font-size: 12px; }
.tl-mark { fill: #fff; font-size: 11px; font-weight: 700; }
.tl-limit { fill: none; stroke: #8a5a00; stroke-width: 2; stroke-dasharray: 6 4; }
.tl-active { fill: none; stroke: #0b57d0; stroke-width: 2.5; }
.tl-sample { fill: #0b57d0; }
.tl-admit { fill: #1a7f37; }
.tl-refuse { fill: #b42318; }
.tl-detected { stroke: #4a5360; stroke-dasharray: 2 3; }
.tl-closed { stroke: #1b1f24; stroke-dasharray: 2 3; }
.tl-rung path { fill: #6639ba; }
.tl-outcome-error path, .tl-outcome-timeout path { fill: #b42318; }
.tl-verified circle { fill: #1a7f37; }
.tl-not-verified circle { fill: #b42318; }
.tl-unknown circle { fill: #4a5360; }
.tl-human path, .tl-human rect { fill: #1b1f24; }
footer.site { color: var(--muted); font-size: .85em; padding: 1rem 1.2rem; border-top: 1px solid var(--line); }
`;

/** `'sha256-…'` of the stylesheet, as a CSP source. */
export const STYLE_HASH = `'sha256-${createHash("sha256").update(STYLESHEET, "utf8").digest("base64")}'`;

/**
 * The Content-Security-Policy of every page: nothing by default; the one
 * stylesheet by its hash; images only from `data:` (the empty favicon); no
 * script, no frames, no plugins, forms (the filters) only to this origin,
 * and the page may not be framed (clickjacking).
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  `style-src ${STYLE_HASH}`,
  "img-src data:",
  "script-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** Headers on every answer of the web view, HTML and JSON alike. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy": CONTENT_SECURITY_POLICY,
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  // Older browsers that do not read frame-ancestors.
  "X-Frame-Options": "DENY",
  // Records change as the ladder runs: always read them fresh.
  "Cache-Control": "no-store",
};

/** What a page is made of. */
export interface PageParts {
  title: string;
  /** How to reach the web view's root from this page, relative ("./" or "../"), so the view works behind a path prefix. */
  root: string;
  body: SafeHtml;
}

/** A whole HTML document. */
export function page(parts: PageParts): string {
  const { root } = parts;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${parts.title} · Reclaim incidents</title>
<link rel="icon" href="data:,">
<style>${raw(STYLESHEET)}</style>
</head>
<body>
<header class="site"><span class="brand">Reclaim</span><nav aria-label="Site"><a href="${root}">Incidents</a> · <a href="${root}digest">Daily digest</a> · <a href="${root}api/v1/incidents">JSON</a></nav></header>
<main>
${parts.body}
</main>
<footer class="site">Read-only view of the operator's incident records. Times are UTC.</footer>
</body>
</html>
`.text;
}
