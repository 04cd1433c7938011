/**
 * The Markdown that on-call reads: one incident rendered in the shape of an
 * SRE postmortem — summary, impact, timeline (the operator's decisions
 * and on-call's acks and notes), evidence, actions, verification,
 * suppressed triggers, follow-ups; the first acknowledgement at the top.
 * Derived from the JSON record, never the other way round.
 *
 * Every string in a record is treated as attacker-influenced (log messages,
 * field names and values, titles built from them, error texts): it goes
 * through `mdText` or `mdCode`, which make control, bidi and zero-width
 * characters visible and escape what Markdown or HTML would act on, so no
 * value can end a table cell, open a code span, start a heading or list, or
 * inject a tag or link. The output is GitHub-flavoured Markdown and is
 * deterministic: the same record gives the same bytes (no clock, no locale).
 *
 * The same structure also renders as plain text for a terminal
 * (`renderText`): one renderer, two dialects. The Markdown dialect escapes
 * for GitHub; the text dialect only makes invisible characters visible and
 * keeps each value on one line, with no backslashes, backticks or table pipes.
 */
import { acknowledgement } from "./human.js";
import { MAX_HUMAN_TEXT, type EvidenceEntry, type Incident, type RungRun, type UserSnapshot } from "./model.js";

/** Longest evidence message shown (characters); the record caps it at MAX_EVIDENCE_MESSAGE too. */
const MAX_MESSAGE = 500;
/** Longest single field value shown in the evidence table. */
const MAX_FIELD_VALUE = 120;
/** Longest "fields" cell of one evidence entry. */
const MAX_FIELDS = 400;
/** Longest free text (titles, decision details, errors, follow-ups). */
const MAX_TEXT = 500;
/** Longest JSON shown for a request or response body. */
const MAX_JSON = 300;
/** Removed managers listed by id per rung; the rest are counted. */
const MAX_REMOVED_LISTED = 10;

/**
 * How one output format writes the parts of a document. Every untrusted
 * string goes through `text` or `code`; the other methods take text already
 * made safe by them (or fixed wording).
 */
interface Dialect {
  /** Untrusted text as prose on one line, cut to `max` characters. */
  text(value: string, max?: number): string;
  /** Untrusted text shown literally (ids, keys, requests, JSON); "—" when empty. */
  code(value: string, options?: { inTable?: boolean }): string;
  /** A heading line and the blank line after it. */
  heading(level: 1 | 2 | 3, title: string): string[];
  /** A remark about the record (nothing recorded, decisions dropped). */
  note(text: string): string;
  strong(text: string): string;
  /** A warning paragraph set apart from the rest, and the blank line after it. */
  callout(text: string): string[];
  /** Named values of one thing (a summary, a rung), and a blank line. */
  fields(rows: readonly (readonly string[])[]): string[];
  /** Rows of values under column headers, and a blank line. */
  table(headers: readonly string[], rows: readonly (readonly string[])[]): string[];
  /** An open follow-up. */
  task(text: string): string;
  /** The separator before the footer, and the blank line after it. */
  rule(): string[];
}

/** GitHub-flavoured Markdown, every untrusted value escaped (the `.md` beside each record). */
const MARKDOWN: Dialect = {
  text: mdText,
  code: mdCode,
  heading: (level, title) => [`${"#".repeat(level)} ${title}`, ""],
  note: (text) => `_${text}_`,
  strong: (text) => `**${text}**`,
  callout: (text) => [`> ${text}`, ""],
  fields: (rows) => table(["Field", "Value"], rows),
  table,
  task: (text) => `- [ ] ${text}`,
  rule: () => ["---", ""],
};

/**
 * Widest start of the last column (characters) of a text table set in
 * columns; a wider table is written one row per block. The last column is
 * not padded, so a long detail at the end of a line does not count.
 */
const TEXT_TABLE_WIDTH = 100;

/**
 * Plain text for a terminal: values as they are, only made visible and kept
 * on one line (so a record cannot drive the terminal), with no escapes.
 */
const TEXT: Dialect = {
  text: (value, max = Number.POSITIVE_INFINITY) => visible(cut(value, max)).trim(),
  code: (value) => visible(value) || "—",
  heading: (level, title) => (level === 3 ? [title, ""] : [title, (level === 1 ? "=" : "-").repeat(Math.max(3, Array.from(title).length)), ""]),
  note: (text) => text,
  strong: (text) => text,
  callout: (text) => [`! ${text}`, ""],
  fields: (rows) => {
    const width = Math.max(...rows.map((r) => r[0]!.length)) + 1;
    return [...rows.map(([name, value]) => `  ${`${name}:`.padEnd(width)}  ${value === "" ? "—" : value}`), ""];
  },
  table: textTable,
  task: (text) => `- ${text}`,
  rule: () => [],
};

/**
 * Renders `incident` as Markdown. Pure and deterministic: no clock, no
 * locale, keys of free-form objects sorted. Long values are cut (the JSON
 * record keeps them whole).
 */
export function renderMarkdown(incident: Incident): string {
  return render(incident, MARKDOWN);
}

/**
 * Renders `incident` as plain text for a terminal (`reclaim incidents show`):
 * the same sections, rows and cuts as `renderMarkdown`, with no Markdown
 * escapes, emphasis or table pipes. Invisible and control characters are
 * made visible as in the Markdown. Pure and deterministic.
 */
export function renderText(incident: Incident): string {
  return render(incident, TEXT);
}

function render(incident: Incident, d: Dialect): string {
  const out: string[] = [];
  const title = incident.title.trim() === "" ? `Incident ${incident.id}` : incident.title;
  out.push(...d.heading(1, d.text(title, MAX_TEXT)));
  out.push(`Incident ${d.code(incident.id)} · ${d.text(incident.severity)} · ${d.text(incident.status)}`, "");
  if (incident.dryRun) out.push(...d.callout(`${d.strong("Dry run:")} the operator recorded what it would do and did not act on the factory.`));
  const ack = acknowledgement(incident);
  if (ack !== null) out.push(`${d.strong("Acknowledged")} by ${d.text(ack.by)} at ${d.text(ack.at)}.`, "");

  out.push(...summary(incident, d));
  if (incident.rollup !== undefined) out.push(...rollupKeys(incident, d));
  out.push(...impact(incident, d));
  out.push(...timeline(incident, d));
  out.push(...evidence(incident, d));
  out.push(...actions(incident, d));
  out.push(...verification(incident, d));
  out.push(...suppressed(incident, d));
  out.push(...followUps(incident, d));

  out.push(...d.rule(), d.note(`Rendered from the record ${d.code(`${incident.id}.json`)} (schema version ${incident.schemaVersion}); the JSON is the record.`), "");
  return out.join("\n");
}

function summary(i: Incident, d: Dialect): string[] {
  const ran = i.rungs.map((r) => d.text(r.rung)).join(" → ");
  return [
    ...d.heading(2, "Summary"),
    ...d.fields([
        ["Status", d.text(i.status)],
        ["Severity", d.text(i.severity)],
        ["Rule", d.text(i.rule)],
        ...(i.ruleInfo === undefined
          ? []
          : [
              ["Rule revision", d.code(i.ruleInfo.revision, { inTable: true })],
              ...(i.ruleInfo.description === undefined ? [] : [["Rule description", d.text(i.ruleInfo.description, MAX_TEXT)]]),
              ["Runbook", i.ruleInfo.runbook === undefined ? "—" : d.code(i.ruleInfo.runbook, { inTable: true })],
            ]),
        ...(i.operatorVersion === undefined ? [] : [["Operator version", d.text(i.operatorVersion)]]),
        ...(i.rollup === undefined
          ? [
              ["Key", d.code(i.keyString, { inTable: true })],
              ["User", d.text(i.target.userId)],
              ["Pod", i.target.pod === null ? "—" : d.text(i.target.pod)],
            ]
          : [
              ["Rollup", `${d.text(i.rollup.reason)}, the hour from ${d.text(i.rollup.hour)}, part ${i.rollup.part}`],
              ["Keys not acted on", `${i.rollup.keys.length} (listed below)`],
              ["Triggers of keys not listed", String(i.rollup.unlisted.triggers)],
            ]),
        ["Control API", d.code(i.target.control, { inTable: true })],
        ["First matching entry", d.text(i.firstEntryAt)],
        ["Detected", d.text(i.detectedAt)],
        ["Resolved", optional(d, i.resolvedAt)],
        ["Closed", optional(d, i.closedAt)],
        ["Last updated", d.text(i.updatedAt)],
        ["Time to detect", formatDuration(i.durations.detectMs)],
        ["Time to mitigate", formatDuration(i.durations.mitigateMs)],
        ["Total", formatDuration(i.durations.totalMs)],
        ["Dry run", i.dryRun ? "yes" : "no"],
        ["Rungs run", i.rungs.length === 0 ? "none" : `${i.rungs.length} (${ran})`],
    ]),
  ];
}

/** A rollup record's keys: every user it stands for, none of whom was acted on (ADR 12). */
function rollupKeys(i: Incident, d: Dialect): string[] {
  const r = i.rollup!;
  const out = [...d.heading(2, "Keys not acted on")];
  out.push(
    `Rule ${d.text(i.rule)} did not act on these keys because of ${d.code(r.reason)}, and none of them has an incident of its own. ` +
      "The evidence below is the first key's.",
    "",
  );
  if (r.unlisted.triggers > 0) {
    out.push(
      `${d.strong(`${r.unlisted.triggers} more ${plural(r.unlisted.triggers, "trigger", "triggers")} of keys not listed here`)} (the hour's records were full; ` +
        `last at ${optional(d, r.unlisted.lastAt)}): the operator's log names them (${d.code("operator.suppressed")}).`,
      "",
    );
  }
  if (r.keys.length === 0) return [...out, d.note("None."), ""];
  const rows = r.keys.map((k, n) => [
    String(n + 1),
    d.code(k.keyString, { inTable: true }),
    d.text(k.userId),
    k.pod === null ? "—" : d.text(k.pod),
    String(k.triggers),
    d.text(k.firstEntryAt),
    d.text(k.firstAt),
    d.text(k.lastAt),
  ]);
  return [...out, ...d.table(["#", "Key", "User", "Pod", "Triggers", "First entry", "First suppressed", "Last suppressed"], rows)];
}

function impact(i: Incident, d: Dialect): string[] {
  const row = (when: string, s: UserSnapshot | null): string[] =>
    s === null
      ? [when, "—", "—", "—", "—", "—"]
      : [when, d.text(s.at), s.admit ? "yes" : "no", String(s.active), String(s.effectiveLimit), String(s.queued)];
  return [
    ...d.heading(2, "Impact"),
    "What the factory said about the user before the first rung and after the last.",
    "",
    ...d.table(["When", "At", "New connection admitted", "Active managers", "Effective limit", "Queued"], [row("Before", i.before), row("After", i.after)]),
  ];
}

/** The operator's decisions and people's entries (acks, notes), in time order; at the same time the decision comes first. */
function timeline(i: Incident, d: Dialect): string[] {
  const out = [...d.heading(2, "Timeline")];
  if (i.decisionsDropped > 0) {
    out.push(d.note(`${i.decisionsDropped} earlier ${plural(i.decisionsDropped, "decision was", "decisions were")} dropped; the record keeps the latest ${i.decisions.length}.`), "");
  }
  const dropped = i.humanDropped ?? 0;
  if (dropped > 0) {
    out.push(d.note(`${dropped} human ${plural(dropped, "entry was", "entries were")} dropped (beyond the limit, oldest notes first, or unreadable).`), "");
  }
  const human = i.human ?? [];
  if (i.decisions.length === 0 && human.length === 0) return [...out, d.note("No decisions recorded."), ""];
  const humanRow = (h: (typeof human)[number]): string[] => [
    d.text(h.at),
    h.kind === "ack" ? "acknowledged" : "note",
    `by ${d.text(h.by)}${h.text === "" ? "" : `: ${d.text(h.text, MAX_HUMAN_TEXT)}`}`,
  ];
  // Merged, not sorted: the decisions keep the order they were made in, and each human entry goes before the first
  // decision made after it (an unparseable time, which Reclaim never writes, goes last).
  const people = human.map((h, n) => ({ h, n, t: Date.parse(h.at) })).sort((a, b) => a.t - b.t || a.n - b.n);
  const rows: string[][] = [];
  let next = 0;
  for (const x of i.decisions) {
    const t = Date.parse(x.at);
    while (next < people.length && people[next]!.t < t) rows.push(humanRow(people[next++]!.h));
    rows.push([d.text(x.at), d.text(x.kind), d.text(x.detail, MAX_TEXT)]);
  }
  while (next < people.length) rows.push(humanRow(people[next++]!.h));
  return [...out, ...d.table(["Time", "Decision", "Detail"], rows)];
}

function evidence(i: Incident, d: Dialect): string[] {
  const kept = i.evidence.entries.length;
  const more = Math.max(0, i.evidence.total - kept);
  const out = [...d.heading(2, "Evidence")];
  out.push(
    `${i.evidence.total} matching log ${plural(i.evidence.total, "entry", "entries")}; ${kept} kept below` +
      (more > 0 ? `, ${more} more not kept.` : "."),
    "",
  );
  if (kept === 0) return out;
  const rows = i.evidence.entries.map((e, n) => [
    String(n + 1),
    d.text(e.time),
    d.text(e.severity),
    e.event === null ? "—" : d.text(e.event),
    d.text(e.message, MAX_MESSAGE),
    fieldsCell(e, d),
    e.insertId === null ? "—" : d.text(e.insertId, MAX_FIELD_VALUE),
  ]);
  // A way back to each entry in the logs: the file and byte offset, or the Logs Explorer link.
  const where = i.evidence.entries.flatMap((e, n) =>
    e.file !== undefined
      ? [[String(n + 1), d.code(`${e.file.path}:${e.file.offset}`, { inTable: true }), d.text(`byte offset ${e.file.offset} (e.g. tail -c +${e.file.offset + 1} FILE | head -1)`)]]
      : e.logsUrl !== undefined
        ? [[String(n + 1), d.code(e.logsUrl, { inTable: true }), "Logs Explorer, by its insert id"]]
        : [],
  );
  return [
    ...out,
    ...d.table(["#", "Time", "Severity", "Event", "Message", "Fields", "Insert id"], rows),
    ...(where.length === 0 ? [] : [...d.heading(3, "Where each entry is"), ...d.table(["#", "Where", "How to read it"], where)]),
  ];
}

/** `name=value, …` with names sorted; strings as they are, anything else as JSON. */
function fieldsCell(e: EvidenceEntry, d: Dialect): string {
  const names = Object.keys(e.fields).sort();
  if (names.length === 0) return "—";
  const parts = names.map((name) => {
    const value = e.fields[name];
    return `${cut(name, MAX_FIELD_VALUE)}=${cut(typeof value === "string" ? value : stableJson(value), MAX_FIELD_VALUE)}`;
  });
  return d.text(parts.join(", "), MAX_FIELDS);
}

function actions(i: Incident, d: Dialect): string[] {
  const out = [...d.heading(2, "Actions")];
  if (i.rungs.length === 0) return [...out, d.note("No rung was run."), ""];
  i.rungs.forEach((r, n) => out.push(...rung(r, n, d)));
  return out;
}

function rung(r: RungRun, n: number, d: Dialect): string[] {
  const result = r.result;
  const rows: string[][] = [
    ["Ladder step", String(r.index + 1)],
    ["Started", d.text(r.startedAt)],
    ["Finished", optional(d, r.finishedAt)],
    ["Request", d.code(`${r.request.method} ${r.request.url}`, { inTable: true })],
    ["Parameters", jsonCell(d, r.params)],
  ];
  if (r.request.body !== undefined && r.request.body !== null) rows.push(["Request body", jsonCell(d, r.request.body)]);
  rows.push(["Response status", r.response === null ? "no response" : String(r.response.status)]);
  if (result === null) {
    if (r.response !== null && r.response.body !== undefined && r.response.body !== null) rows.push(["Response body", jsonCell(d, r.response.body)]);
  } else {
    rows.push(
      ["Removed", removedCell(r, d)],
      ["Remaining", `${result.remaining} of limit ${result.limit} (effective ${result.effectiveLimit})`],
      ["New connection admitted", result.admit ? "yes" : "no"],
      ["Degraded until", optional(d, result.degradedUntil)],
      ["Factory time", formatDuration(result.durationMs)],
    );
  }
  rows.push(
    ["Duration", formatDuration(r.durationMs)],
    ["Attempts", String(r.attempts)],
    ["Timeout", formatDuration(r.timeoutMs)],
    ["Error", r.error === null ? "—" : d.text(r.error, MAX_TEXT)],
  );
  return [...d.heading(3, `${n + 1}. ${d.text(r.rung)}: ${d.text(r.outcome)}`), ...d.fields(rows)];
}

function removedCell(r: RungRun, d: Dialect): string {
  const removed = r.result?.removed ?? [];
  if (removed.length === 0) return "none";
  const listed = removed.slice(0, MAX_REMOVED_LISTED).map((m) => `${d.code(m.managerId, { inTable: true })} (${d.text(m.reason)})`);
  const rest = removed.length - listed.length;
  return `${removed.length}: ${listed.join(", ")}${rest > 0 ? `, and ${rest} more` : ""}`;
}

function verification(i: Incident, d: Dialect): string[] {
  const out = [...d.heading(2, "Verification")];
  const checked = i.rungs.map((r, n) => ({ r, n })).filter(({ r }) => r.verification !== null);
  if (checked.length === 0) return [...out, d.note("No verification was run."), ""];
  const rows = checked.map(({ r, n }) => {
    const v = r.verification!;
    const a = v.admission;
    return [
      String(n + 1),
      d.text(r.rung),
      d.text(v.at),
      v.verified ? "yes" : "no",
      a === null ? "unknown" : a.admit ? "admitted" : "not admitted",
      a === null ? "—" : `${a.active} / ${a.effectiveLimit}, ${a.queued} queued`,
      `${Math.round(v.heldMs)} ms`,
      formatDuration(v.durationMs),
      v.canary === null ? "not run" : `${v.canary.ok ? "ok" : "failed"}: ${d.text(v.canary.detail, MAX_TEXT)}`,
      d.text(v.detail, MAX_TEXT),
    ];
  });
  return [...out, ...d.table(["#", "After rung", "At", "Verified", "Admission", "Active / limit", "Held", "Took", "Canary", "Detail"], rows)];
}

function suppressed(i: Incident, d: Dialect): string[] {
  const out = [...d.heading(2, "Suppressed triggers")];
  const entries = Object.entries(i.suppressed).sort(([a], [b]) => a.localeCompare(b));
  if (entries.length === 0) return [...out, d.note("None."), ""];
  const rows = entries.map(([reason, s]) => [d.text(reason), String(s.count), d.text(s.lastAt)]);
  const what =
    i.rollup === undefined
      ? "Triggers for this key that were not acted on while this incident was the latest."
      : "Triggers of the keys this record stands for (listed or not), none acted on.";
  return [...out, what, "", ...d.table(["Reason", "Count", "Last"], rows)];
}

function followUps(i: Incident, d: Dialect): string[] {
  const out = [...d.heading(2, "Follow-ups")];
  if (i.followUps.length === 0) return [...out, d.note("None."), ""];
  return [...out, ...i.followUps.map((f) => d.task(d.text(f, MAX_TEXT) || "—")), ""];
}

/** A GFM table of cells already escaped; an empty cell shows as "—". */
function table(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const line = (cells: readonly string[]): string => `| ${cells.map((c) => (c === "" ? "—" : c)).join(" | ")} |`;
  return [line(headers), `|${headers.map(() => " --- ").join("|")}|`, ...rows.map(line), ""];
}

/**
 * A text table: left-aligned columns two spaces apart under their headers
 * when the last column starts within TEXT_TABLE_WIDTH characters; otherwise one block
 * per row, `Header: value` a line, so a long message is not padded across
 * the whole table. An empty cell shows as "—".
 */
function textTable(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const cells = rows.map((row) => row.map((c) => (c === "" ? "—" : c)));
  const length = (text: string): number => Array.from(text).length;
  const widths = headers.map((h, n) => Math.max(length(h), ...cells.map((row) => length(row[n] ?? ""))));
  const lastStart = widths.slice(0, -1).reduce((sum, w) => sum + w + 2, 2);
  if (lastStart <= TEXT_TABLE_WIDTH) {
    const line = (row: readonly string[]): string => `  ${row.map((c, n) => c + " ".repeat(widths[n]! - length(c))).join("  ")}`.trimEnd();
    return [line(headers), ...cells.map(line), ""];
  }
  const width = Math.max(...headers.map(length)) + 1;
  return cells.flatMap((row) => [...row.map((c, n) => `  ${`${headers[n]!}:`.padEnd(width)}  ${c}`), ""]);
}

function optional(d: Dialect, value: string | null): string {
  return value === null ? "—" : d.text(value);
}

function jsonCell(d: Dialect, value: unknown): string {
  return d.code(cut(stableJson(value), MAX_JSON), { inTable: true });
}

function plural(n: number, one: string, many: string): string {
  return n === 1 ? one : many;
}

/** `850 ms`, `12.3 s`, `4 min 5 s`, `2 h 3 min`; `—` for null. */
export function formatDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return "—";
  // Each unit is chosen after rounding, so 999.6 ms reads "1.0 s" and 59.99 s reads "1 min 0 s".
  const rounded = Math.round(ms);
  if (rounded < 1000) return `${rounded} ms`;
  if (rounded < 59_950) return `${(rounded / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const m = Math.round(ms / 60_000);
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// Characters that render as nothing or move other text: C0 and C1 controls, DEL,
// soft hyphen, Arabic letter mark, zero-width and bidi controls, line and
// paragraph separators, invisible operators, BOM, interlinear annotations,
// and lone surrogates (which would not survive as UTF-8).
const INVISIBLE =
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Makes invisible characters visible: C0 controls as their Unicode control
 * pictures (a newline shows as ␊), DEL as ␡, lone surrogates as U+FFFD,
 * anything else as `⟨U+XXXX⟩`. One line in, one line out.
 */
export function visible(text: string): string {
  return text.replace(INVISIBLE, (c) => {
    const code = c.charCodeAt(0);
    if (code < 0x20) return String.fromCharCode(0x2400 + code);
    if (code === 0x7f) return "\u2421";
    if (code >= 0xd800 && code <= 0xdfff) return "\ufffd";
    return `⟨U+${code.toString(16).toUpperCase().padStart(4, "0")}⟩`;
  });
}

/**
 * Untrusted text as inline Markdown prose, safe in a table cell, a heading or
 * a list item: made visible and kept on one line, trimmed, cut to `max`
 * characters, and every character Markdown or HTML could act on escaped with
 * a backslash (`\ \` * _ [ ] < > & | ~ # $ !`); a leading `+ - =` or `1.` that
 * could start a block is escaped too, and so is the `:` of `://` and the
 * `.` of `www.`, so that GFM does not turn an address into a link. (GFM still
 * links a bare e-mail address, showing the address it links to.)
 */
export function mdText(value: string, max = Number.POSITIVE_INFINITY): string {
  let text = visible(cut(value, max)).trim();
  text = text.replace(/[\\`*_[\]<>&|~#$!]/g, (c) => `\\${c}`);
  text = text.replace(/^([+\-=])/, "\\$1").replace(/^(\d+)([.)])/, "$1\\$2");
  // GFM links bare `scheme://…` and `www.…` from the raw source, escapes and all
  // (a `\_` in the address would show); an escaped `:` or `.` stops it.
  text = text.replace(/:(?=\/\/)/g, "\\:").replace(/\b(www)\./gi, "$1\\.");
  return text;
}

/**
 * Untrusted text as a code span: literal (no emphasis, link, tag or entity is
 * read inside one), made visible, fenced with more backticks than any run in
 * it. In a table cell `|` is escaped as GFM requires (it still shows as `|`).
 * An empty value gives "—".
 */
export function mdCode(value: string, options: { inTable?: boolean } = {}): string {
  let text = visible(value);
  if (text === "") return "—";
  if (options.inTable) text = text.replace(/\|/g, "\\|");
  const longest = Math.max(0, ...Array.from(text.matchAll(/`+/g), (m) => m[0].length));
  const fence = "`".repeat(longest + 1);
  // A space on both sides is stripped by the renderer; add one when the value
  // starts or ends with a backtick or a space so that the value shows exactly.
  const pad = /^[` ]|[` ]$/.test(text) ? " " : "";
  return `${fence}${pad}${text}${pad}${fence}`;
}

/** Cuts `text` to `max` code points, marking the cut with "…". */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const points = Array.from(text);
  return points.length <= max ? text : `${points.slice(0, max).join("")}…`;
}

/** JSON with object keys sorted at every level, so the same value always gives the same text. */
function stableJson(value: unknown): string {
  const seen = new WeakSet<object>();
  const normalize = (v: unknown, depth: number): unknown => {
    if (typeof v === "bigint") return `${v}n`;
    if (typeof v === "undefined" || typeof v === "function" || typeof v === "symbol") return null;
    if (typeof v !== "object" || v === null) return v;
    if (seen.has(v) || depth > 20) return "[…]";
    seen.add(v);
    const result = Array.isArray(v)
      ? v.map((x) => normalize(x, depth + 1))
      : Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, normalize((v as Record<string, unknown>)[k], depth + 1)]),
        );
    seen.delete(v);
    return result;
  };
  return JSON.stringify(normalize(value, 0)) ?? "null";
}
