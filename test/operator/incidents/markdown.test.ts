/**
 * The Markdown on-call reads: every section of a full incident, hostile text
 * from logs that cannot change the document's structure, and deterministic
 * output.
 */
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { formatDuration, mdCode, mdText, renderMarkdown, visible } from "../../../src/operator/incidents/markdown.js";
import { Incident } from "../../../src/operator/incidents/model.js";
import { buildIncident } from "../../support/incidents.js";
import { describeNeeding } from "../../support/needs.js";

/** Text an attacker could get into a log line, and so into a record. */
const HOSTILE = [
  "a | b || c \\| d",
  "`code` and ``` fence ```",
  "line one\n# Injected heading\n| x | y |\n\n- item",
  "\r\n## crlf heading",
  "<script>alert(1)</script><img src=x onerror=alert(2)>",
  "[click here](https://evil.example/reset) ![pixel](https://evil.example/p.png)",
  "**bold** _em_ ~~gone~~ $x^2$ &lt; &amp;",
  "<!-- unterminated comment",
  "trailing backslash \\",
  "\u001b[31mred\u001b[0m tab\there bell\u0007",
  "bidi \u202eevil\u202c zero\u200bwidth line\u2028sep",
  "https://evil.example/phish www.evil.example",
].join(" ~ ");

/** Leading text that would start a block if it began a line. */
const LEADING = ["# heading", "> quote", "- item", "+ item", "1. item", "    indented code", "---", "```js", "=== setext", "<div>"];

/**
 * Puts `text` into every free-text string of a resolved incident. Times, user
 * ids and suppression reasons are validated by the schema (ISO times, the
 * user id pattern, a closed set of reasons), so hostile text cannot reach them.
 */
function withText(text: (n: number) => string): Incident {
  const i = buildIncident({ status: "resolved", entries: 4 });
  const n = (() => {
    let k = 0;
    return () => text(k++);
  })();
  return Incident.parse({
    ...i,
    title: n().slice(0, 300),
    rule: n(),
    key: { [n()]: n() },
    keyString: n(),
    target: { userId: i.target.userId, pod: n(), control: n() },
    evidence: {
      total: 30,
      entries: i.evidence.entries.map((e) => ({ ...e, event: n(), message: n().slice(0, 500), insertId: n(), fields: { [n()]: n(), userId: n(), other: n() } })),
    },
    decisions: i.decisions.map((d) => ({ ...d, detail: n() })),
    rungs: i.rungs.map((r) => ({
      ...r,
      request: { method: n(), url: n(), body: { reason: n() } },
      response: { status: 500, body: { error: n() } },
      result: r.result === null ? null : { ...r.result, degradedUntil: n(), removed: [{ managerId: n(), reason: "evicted" }] },
      error: n(),
      verification: r.verification === null ? null : { ...r.verification, detail: n(), canary: { ok: false, detail: n() } },
    })),
    suppressed: { cooldown: { count: 2, lastAt: i.updatedAt } },
    followUps: [n(), n()],
  });
}

/** The shape of a document, line by line: what a renderer builds blocks from. */
function skeleton(md: string): string[] {
  return md.split("\n").map((line) => {
    if (line === "") return "blank";
    const heading = /^(#{1,6}) /.exec(line);
    if (heading) return `h${heading[1]!.length}`;
    if (line.startsWith("|")) return `row:${unescapedPipes(line)}`;
    if (line.startsWith("- [ ] ")) return "task";
    if (line.startsWith("> ")) return "quote";
    if (line === "---") return "hr";
    if (/^[ \t]|^[-+*>=#`~<]|^\d+[.)]/.test(line)) return `SUSPICIOUS: ${line}`;
    return "p";
  });
}

/**
 * Pipes that GFM reads as cell borders: those not right after a backslash.
 * (GFM splits cells before reading escapes: `\\|` is a backslash-pipe pair too.)
 */
function unescapedPipes(line: string): number {
  let count = 0;
  for (let k = 0; k < line.length; k++) if (line[k] === "|" && line[k - 1] !== "\\") count++;
  return count;
}

/**
 * A line without its backslash escapes and code spans, read left to right as
 * CommonMark does: what is left is text that a renderer would interpret.
 */
function bareProse(line: string): string {
  let out = "";
  for (let k = 0; k < line.length; ) {
    if (line[k] === "\\") {
      k += 2;
      continue;
    }
    const run = /^`+/.exec(line.slice(k));
    if (run) {
      const fence = run[0];
      // The closing run has exactly the same length.
      const close = new RegExp(`(?<!\`)${fence}(?!\`)`, "g");
      close.lastIndex = k + fence.length;
      const end = close.exec(line);
      if (end) {
        k = end.index + fence.length;
        continue;
      }
      out += fence;
      k += fence.length;
      continue;
    }
    out += line[k];
    k++;
  }
  return out;
}

/** GitHub's own renderer, when it is installed here (`apt-get install cmark-gfm`). */
const CMARK_MISSING = spawnSync("cmark-gfm", ["--version"]).status === 0 ? null : "cmark-gfm is not installed (apt-get install cmark-gfm; .ci/run does)";
function toHtml(md: string): string {
  const r = spawnSync("cmark-gfm", ["-e", "table", "-e", "autolink", "-e", "strikethrough", "-e", "tasklist", "--unsafe"], { input: md, encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout;
}

describe("renderMarkdown: a full incident", () => {
  const incident = buildIncident({ status: "resolved", entries: 25 });
  const md = renderMarkdown(incident);

  it("has the title, then every section in postmortem order", () => {
    const headings = md.split("\n").filter((l) => /^#{1,3} /.test(l));
    expect(headings).toEqual([
      `# ${mdText(incident.title)}`,
      "## Summary",
      "## Impact",
      "## Timeline",
      "## Evidence",
      "## Actions",
      "### 1. probe: ok",
      "### 2. force: ok",
      "## Verification",
      "## Suppressed triggers",
      "## Follow-ups",
    ]);
  });

  it.each([
    ["status", "| Status | resolved |"],
    ["severity", "| Severity | critical |"],
    ["rule", "| Rule | factory-hard-limit |"],
    ["user", "| User | 105945141827451681156 |"],
    ["pod", "| Pod | factory-7d9f8c6b5-x2k4q |"],
    ["key", "| Key | `userId=105945141827451681156,pod=factory-7d9f8c6b5-x2k4q` |"],
    ["detected", "| Detected | 2026-11-26T03:14:08.000Z |"],
    ["resolved", "| Resolved | 2026-11-26T03:14:22.320Z |"],
    ["time to detect", "| Time to detect | 850 ms |"],
    ["time to mitigate", "| Time to mitigate | 14.3 s |"],
    ["total", "| Total | 15.2 s |"],
    ["dry run", "| Dry run | no |"],
    ["rungs", "| Rungs run | 2 (probe → force) |"],
    ["before", "| Before | 2026-11-26T03:14:08.500Z | no | 20 | 20 | 0 |"],
    ["after", "| After | 2026-11-26T03:14:22.320Z | yes | 18 | 20 | 0 |"],
    ["a timeline entry with its time", "| 2026-11-26T03:14:22.320Z | verified | admission held for 3000 ms |"],
    ["evidence count", "25 matching log entries; 20 kept below, 5 more not kept."],
    ["an evidence entry", "| 1 | 2026-11-26T03:14:07.150Z | ERROR | factory.hard\\_limit | HARD LIMIT: User 105945141827451681156 still over limit after cleanup (20/20) |"],
    ["the request", "| Request | `POST http://127.0.0.1:8081/v1/users/105945141827451681156/rungs/force` |"],
    ["the response status", "| Response status | 200 |"],
    ["the removed managers", "| Removed | 2: `m-7f3a` (evicted), `m-91c2` (evicted) |"],
    ["the duration", "| Duration | 2.1 s |"],
    ["the attempts", "| Attempts | 1 |"],
    ["a check that failed", "| 1 | probe | 2026-11-26T03:14:11.200Z | no | not admitted | 20 / 20, 0 queued | 0 ms | 5.0 s | not run |"],
    ["a check that held", "| 2 | force | 2026-11-26T03:14:19.200Z | yes | admitted | 18 / 20, 0 queued | 3000 ms | 3.1 s | ok: canary connection admitted and echoed |"],
    ["suppressed triggers by reason", "| cooldown | 4 | 2026-11-26T03:14:48.000Z |"],
    ["a follow-up", "- [ ] Find why 20 managers looked alive to the probe: a client that pongs but never sends?"],
  ])("shows the %s", (_what, expected) => {
    expect(md).toContain(expected);
  });

  it("shows a failed rung's error, attempts and response", () => {
    const escalated = renderMarkdown(buildIncident({ status: "escalated" }));
    expect(escalated).toContain("### 2. force: error");
    expect(escalated).toContain("| Response status | 503 |");
    expect(escalated).toContain('| Response body | `{"error":{"code":"shutting_down","message":"factory is shutting down"}}` |');
    expect(escalated).toContain("| Attempts | 3 |");
    expect(escalated).toContain("| Error | HTTP 503 shutting\\_down: factory is shutting down |");
  });

  it("says what is missing rather than leaving a section out", () => {
    const open = renderMarkdown(buildIncident({ status: "open", entries: 0 }));
    expect(open).toContain("_No rung was run._");
    expect(open).toContain("_No verification was run._");
    expect(open).toContain("| Resolved | — |");
    expect(open).toContain("| Time to mitigate | — |");
    expect(open).toContain("0 matching log entries; 0 kept below.");
    expect(open.match(/^## Suppressed triggers\n\n_None._$/m)).not.toBeNull();
    const pending = renderMarkdown(buildIncident({ status: "remediating" }));
    expect(pending).toContain("### 1. probe: pending");
    expect(pending).toContain("| Response status | no response |");
  });

  it("flags a dry run and dropped decisions", () => {
    const dry = renderMarkdown(buildIncident({ dryRun: true }, { decisionsDropped: 7 }));
    expect(dry).toContain("> **Dry run:**");
    expect(dry).toContain("_7 earlier decisions were dropped; the record keeps the latest 9._");
  });

  it("lists at most 10 removed managers and counts the rest", () => {
    const i = buildIncident();
    const removed = Array.from({ length: 13 }, (_, n) => ({ managerId: `m-${n}`, reason: "no_pong" as const }));
    const md13 = renderMarkdown({ ...i, rungs: [{ ...i.rungs[0]!, result: { ...i.rungs[0]!.result!, removed } }] });
    expect(md13).toContain("| Removed | 13: `m-0` (no\\_pong),");
    expect(md13).toContain("`m-9` (no\\_pong), and 3 more |");
  });

  it("ends with a newline and has no trailing spaces", () => {
    expect(md.endsWith("\n")).toBe(true);
    expect(md).not.toMatch(/[ \t]$/m);
  });
});

describe("renderMarkdown: hostile text from logs", () => {
  const benign = renderMarkdown(withText((n) => `plain text ${n}`));

  it("keeps the structure of the document whatever the text", () => {
    expect(skeleton(renderMarkdown(withText(() => HOSTILE)))).toEqual(skeleton(benign));
  });

  it.each(LEADING)("keeps the structure when a value starts with %j", (lead) => {
    expect(skeleton(renderMarkdown(withText((n) => `${lead} ${n}`)))).toEqual(skeleton(benign));
  });

  it.each(["`", "``", "` `", " ", "|", "\\", "\n", "a`", "`a"])("keeps the structure when every value is %j", (value) => {
    expect(skeleton(renderMarkdown(withText(() => value)))).toEqual(skeleton(benign));
  });

  it("leaves no tag, link, image, entity or code span of the attacker's in the source", () => {
    const md = renderMarkdown(withText(() => HOSTILE));
    for (const line of md.split("\n")) {
      // Our own emphasis: the dry-run note and italic notes such as "_None._".
      if (/^_[^_]*_$/.test(line) || line.startsWith("> **Dry run:**")) continue;
      expect(bareProse(line.replace(/^- \[ \] /, "")), line).not.toMatch(/[<[`&~$*_]/);
    }
    // eslint-disable-next-line no-control-regex -- looking for control characters is the point
    expect(md).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f\u202e\u200b\u2028]/);
  });


  it("cuts long messages, and keeps each evidence entry on one row", () => {
    const i = buildIncident({ entries: 1 });
    const long = "x".repeat(5000) + "\n".repeat(100);
    const md = renderMarkdown({ ...i, evidence: { total: 1, entries: [{ ...i.evidence.entries[0]!, message: long }] } });
    const row = md.split("\n").find((l) => l.startsWith("| 1 |"))!;
    expect(row).toContain(`${"x".repeat(500)}…`);
    expect(row).not.toContain("x".repeat(501));
  });
});

describe("renderMarkdown: deterministic", () => {
  it("gives the same bytes for the same record, however its objects were built", () => {
    const i = buildIncident({ status: "resolved", entries: 5 });
    const reordered = JSON.parse(JSON.stringify(i), function (this: unknown, _k, v: unknown) {
      // The same record with every object's keys in reverse order.
      return v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).reverse()) : v;
    });
    const twice = [renderMarkdown(i), renderMarkdown(i), renderMarkdown(structuredClone(i)), renderMarkdown(Incident.parse(reordered))];
    expect(new Set(twice).size).toBe(1);
  });

  it("does not depend on the clock or the time zone", () => {
    const i = buildIncident();
    const before = renderMarkdown(i);
    const tz = process.env.TZ;
    process.env.TZ = "Pacific/Chatham";
    try {
      expect(renderMarkdown(i)).toBe(before);
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });
});

describe("escaping helpers", () => {
  it.each([
    ["plain text", "plain text"],
    ["a | b", "a \\| b"],
    ["<b>&amp;", "\\<b\\>\\&amp;"],
    ["[x](y)", "\\[x\\](y)"],
    ["`x`", "\\`x\\`"],
    ["*a* _b_ ~c~ $d$ #e !f", "\\*a\\* \\_b\\_ \\~c\\~ \\$d\\$ \\#e \\!f"],
    ["back\\slash", "back\\\\slash"],
    ["  - item", "\\- item"],
    ["+ item", "\\+ item"],
    ["== x", "\\== x"],
    ["12. item", "12\\. item"],
    ["3) item", "3\\) item"],
    ["a\nb\r\tc", "a␊b␍␉c"],
    ["\u001b[2J", "␛\\[2J"],
    ["x\u202ey\u200bz", "x⟨U+202E⟩y⟨U+200B⟩z"],
    ["lone \ud800 surrogate", "lone \ufffd surrogate"],
    ["pair 😀 kept", "pair 😀 kept"],
  ])("mdText(%j) is %j", (input, expected) => {
    expect(mdText(input)).toBe(expected);
  });

  it.each([
    ["x", {}, "`x`"],
    ["a`b", {}, "``a`b``"],
    ["``x", {}, "``` ``x ```"],
    [" padded ", {}, "`  padded  `"],
    ["a|b", {}, "`a|b`"],
    ["a|b", { inTable: true }, "`a\\|b`"],
    ["a\nb", {}, "`a␊b`"],
    ["", {}, "—"],
  ])("mdCode(%j, %j) is %j", (input, options, expected) => {
    expect(mdCode(input, options)).toBe(expected);
  });

  it("mdText cuts to max code points", () => {
    expect(mdText("😀😀😀", 2)).toBe("😀😀…");
    expect(mdText("abc", 3)).toBe("abc");
  });

  it("visible leaves printable text alone", () => {
    expect(visible("HARD LIMIT: User 1 (20/20) — ok ✓")).toBe("HARD LIMIT: User 1 (20/20) — ok ✓");
  });

  it.each([
    [null, "—"],
    [0, "0 ms"],
    [850, "850 ms"],
    [999.6, "1.0 s"],
    [1000, "1.0 s"],
    [14_320, "14.3 s"],
    [59_999, "1 min 0 s"], [3_599_600, "1 h 0 min"],
    [60_000, "1 min 0 s"],
    [245_000, "4 min 5 s"],
    [3_600_000, "1 h 0 min"],
    [7_380_000, "2 h 3 min"],
  ])("formatDuration(%j) is %j", (ms, expected) => {
    expect(formatDuration(ms)).toBe(expected);
  });
});

describeNeeding(CMARK_MISSING, "incident Markdown through GitHub's renderer", () => {
  const benign = renderMarkdown(withText((n) => `plain text ${n}`));
  it("renders with GitHub's cmark-gfm to the same elements as plain text, with the hostile text shown literally", () => {
    const tags = (html: string): string[] => Array.from(html.matchAll(/<(\/?[a-z0-9]+)/g), (m) => m[1]!);
    const hostileHtml = toHtml(renderMarkdown(withText(() => HOSTILE)));
    const benignTags = tags(toHtml(benign)).filter((t) => t !== "code" && t !== "/code");
    expect(tags(hostileHtml).filter((t) => t !== "code" && t !== "/code")).toEqual(benignTags);
    expect(hostileHtml).not.toMatch(/<script|<img|<a |<!--|<del|<strong>bold|<em>em/);
    expect(hostileHtml).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(hostileHtml).toContain("[click here](https://evil.example/reset)");
    for (const lead of LEADING) {
      expect(tags(toHtml(renderMarkdown(withText((n) => `${lead} ${n}`)))).filter((t) => t !== "code" && t !== "/code")).toEqual(benignTags);
    }
  });
});

describe("what a record carries for on-call, rendered", () => {
  const withLinks = (): Incident => {
    const incident = buildIncident({ status: "resolved" });
    incident.ruleInfo = { description: "Users locked out of chat.", runbook: "https://runbooks.example.com/lockout", revision: "0123456789ab" };
    incident.operatorVersion = "0.1.0";
    incident.evidence.entries[0]!.file = { path: "/var/log/fac|tory`.log", offset: 4096 };
    incident.evidence.entries[1]!.logsUrl = "https://console.cloud.google.com/logs/query;query=insertId%3D%22x%22?project=chat-prod";
    return Incident.parse(incident);
  };

  it("the rule's revision, description and runbook, the operator's version, and where each evidence entry is", () => {
    const md = renderMarkdown(withLinks());
    expect(md).toContain("| Rule revision | `0123456789ab` |");
    expect(md).toContain("| Rule description | Users locked out of chat. |");
    expect(md).toContain("| Runbook | `https://runbooks.example.com/lockout` |");
    expect(md).toContain("| Operator version | 0\\.1.0 |");
    expect(md).toContain("### Where each entry is");
    expect(md).toContain("byte offset 4096 (e.g. tail -c +4097 FILE \\| head -1)");
    expect(md).toContain("Logs Explorer, by its insert id");
  });

  it("a hostile path cannot end its table cell or its code span", () => {
    const line = renderMarkdown(withLinks()).split("\n").find((l) => l.includes(".log:4096"))!;
    expect(line).toContain(mdCode("/var/log/fac|tory`.log:4096", { inTable: true }));
    // Three cells: four unescaped pipes outside the code span.
    expect(line.replace(mdCode("/var/log/fac|tory`.log:4096", { inTable: true }), "X").split(/(?<!\\)\|/).length).toBe(5);
  });
});
