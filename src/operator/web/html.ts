/**
 * HTML that cannot be injected into. Every value shown by the web view comes
 * from a record, and records hold log text, user ids, field values and
 * people's notes: all of it is hostile. There is one way to put text into a
 * page, `escapeHtml`, and one way to build markup, the `html` template tag,
 * which escapes every interpolated value unless it is markup the tag itself
 * built (`SafeHtml`). No other code concatenates markup with values.
 */
import { visible } from "../incidents/markdown.js";

/** Markup built by `html` (or `raw` from a fixed string): the only thing inserted without escaping. */
export class SafeHtml {
  /** Use `html` or `raw`; the constructor is not for values. */
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };

/**
 * `value` as HTML text, safe both between tags and inside a quoted
 * attribute: `& < > " ' \`` become entities, and characters that render as
 * nothing or reorder text (controls, bidi and zero-width characters, lone
 * surrogates) are made visible first (markdown.ts `visible`), so a record
 * cannot hide or disguise what it says. A newline becomes `␊`: text that may
 * span lines goes through `multiline`.
 */
export function escapeHtml(value: string): string {
  return visible(value).replace(/[&<>"'`]/g, (c) => ESCAPES[c]!);
}

/** What an `html` template may interpolate: text (escaped), numbers, markup, nothing, or lists of these. */
export type HtmlValue = string | number | boolean | SafeHtml | null | undefined | readonly HtmlValue[];

/**
 * The template tag for markup: `html\`<td>${value}</td>\`` escapes `value`
 * (strings with `escapeHtml`, numbers as they print), inserts `SafeHtml`
 * as it is, joins arrays, and drops null, undefined and false.
 */
export function html(strings: TemplateStringsArray, ...values: readonly HtmlValue[]): SafeHtml {
  let out = strings[0]!;
  for (let n = 0; n < values.length; n++) out += render(values[n]) + strings[n + 1]!;
  return new SafeHtml(out);
}

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false) return "";
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return (value as readonly HtmlValue[]).map(render).join("");
  return escapeHtml(String(value));
}

/** A fixed piece of markup written in this code (never a value from a record). */
export function raw(markup: string): SafeHtml {
  return new SafeHtml(markup);
}

/** Text that may hold newlines (a note): each line escaped, lines joined with `<br>`. */
export function multiline(text: string): SafeHtml {
  return new SafeHtml(text.split("\n").map(escapeHtml).join("<br>"));
}

/**
 * A link target for a URL taken from a record (a runbook, a Logs Explorer
 * link): the URL itself when it is absolute `http:` or `https:`, else null
 * (a `javascript:` or `data:` URL is shown as text, never linked). The result
 * still goes through `escapeHtml` when it is written into an attribute.
 */
export function safeHref(url: string): string | null {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
}
