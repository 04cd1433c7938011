/**
 * The one escape function and the template tag built on it: every value
 * from a record is hostile, and none may become markup.
 */
import { describe, expect, it } from "vitest";
import { escapeHtml, html, multiline, raw, safeHref } from "../../../src/operator/web/html.js";

describe("escapeHtml", () => {
  it.each([
    ["<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"],
    ['" onmouseover="x', "&quot; onmouseover=&quot;x"],
    ["' onfocus='x", "&#39; onfocus=&#39;x"],
    ["a & b", "a &amp; b"],
    ["&lt;", "&amp;lt;"],
    ["`x`", "&#96;x&#96;"],
    ["plain 105945141827451681156", "plain 105945141827451681156"],
    // Invisible and reordering characters are shown, not obeyed.
    ["a\u202eb", "a⟨U+202E⟩b"],
    ["line\nbreak", "line␊break"],
    ["nul\u0000", "nul␀"],
  ])("%j → %j", (input, expected) => {
    expect(escapeHtml(input)).toBe(expected);
  });
});

describe("html", () => {
  it("escapes every interpolated string, keeps markup it built, joins lists and drops null/undefined/false", () => {
    const evil = "<img src=x onerror=alert(1)>";
    const inner = html`<b>${evil}</b>`;
    const out = html`<p title="${evil}">${inner}${[evil, 1, null, undefined, false]}${raw("<hr>")}</p>`;
    expect(out.text).toBe(
      '<p title="&lt;img src=x onerror=alert(1)&gt;"><b>&lt;img src=x onerror=alert(1)&gt;</b>&lt;img src=x onerror=alert(1)&gt;1<hr></p>',
    );
  });

  it("multiline keeps a note's lines as <br>, each escaped", () => {
    expect(multiline("first <b>\nsecond & third").text).toBe("first &lt;b&gt;<br>second &amp; third");
  });
});

describe("safeHref", () => {
  it.each([
    ["https://runbooks.example.com/lockout#steps", "https://runbooks.example.com/lockout#steps"],
    ["http://alertmanager:9093", "http://alertmanager:9093/"],
    ["javascript:alert(1)", null],
    ["JAVASCRIPT:alert(1)", null],
    ["data:text/html,<script>alert(1)</script>", null],
    ["/relative/path", null],
    ["not a url", null],
  ])("%s → %s", (input, expected) => {
    expect(safeHref(input)).toBe(expected);
  });
});
