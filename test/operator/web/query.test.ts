/**
 * The list's query: every value validated (a bad one names its parameter),
 * the filter, newest-first order and pages that do not repeat or skip.
 */
import { describe, expect, it } from "vitest";
import { IncidentStatus, type Incident } from "../../../src/operator/incidents/model.js";
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, pageOf, parseCursor, parseListQuery, QueryError, queryString } from "../../../src/operator/web/query.js";
import { buildIncident } from "../../support/incidents.js";

const parse = (q: string): ReturnType<typeof parseListQuery> => parseListQuery(new URLSearchParams(q));

describe("parseListQuery", () => {
  it("no parameters: everything, the default page size", () => {
    expect(parse("")).toEqual({ status: [], rule: null, user: null, from: null, to: null, limit: DEFAULT_PAGE_SIZE, before: null });
  });

  it("reads repeated and comma-separated statuses, a rule, a user, times (with a zone, datetime-local as UTC, a date) and a limit", () => {
    expect(parse("status=resolved&status=failed,escalated&rule=factory-hard-limit&user=105945141827451681156&from=2026-11-26T03:00&to=2026-11-27&limit=10")).toEqual({
      status: ["resolved", "failed", "escalated"],
      rule: "factory-hard-limit",
      user: "105945141827451681156",
      from: Date.parse("2026-11-26T03:00:00Z"),
      to: Date.parse("2026-11-27T00:00:00Z"),
      limit: 10,
      before: null,
    });
    expect(parse("from=2026-11-26T03:00:00%2B01:00").from).toBe(Date.parse("2026-11-26T02:00:00Z"));
  });

  it("accepts every status of the schema (IncidentStatus.options), whatever it holds", () => {
    expect(parse(IncidentStatus.options.map((s) => `status=${s}`).join("&")).status).toEqual(IncidentStatus.options);
  });

  it("empty fields (what a form sends) are no filter", () => {
    expect(parse("rule=&user=&from=&to=&limit=&before=&status=")).toEqual(parse(""));
  });

  it.each([
    ["status=nope", "status"],
    ["status=resolved,<script>", "status"],
    ["rule=Bad_Rule", "rule"],
    ["rule=a,status%3Dresolved", "rule"],
    [`rule=${"a".repeat(64)}`, "rule"],
    ["rule=a&rule=b", "rule"],
    ["user=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "user"],
    ["user=..", "user"],
    ["from=yesterday", "from"],
    ["from=2026-13-45T99:99Z", "from"],
    ["to=2026-11-26T03:00Z&from=2026-11-26T04:00Z", "to"],
    ["limit=0", "limit"],
    [`limit=${MAX_PAGE_SIZE + 1}`, "limit"],
    ["limit=1e3", "limit"],
    ["limit=-5", "limit"],
    ["before=garbage", "before"],
    ["before=123.not-an-id", "before"],
    [`user=${"1".repeat(300)}`, "user"],
  ])("%s → QueryError naming %s", (q, parameter) => {
    let caught: unknown;
    try {
      parse(q);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(QueryError);
    expect(caught).toMatchObject({ code: "ERR_RECLAIM_WEB_QUERY", parameter });
  });
});

describe("pageOf", () => {
  const at = (n: number): string => new Date(Date.parse("2026-11-26T00:00:00Z") + n * 60_000).toISOString();
  const incidents: Incident[] = [
    buildIncident({ detectedAt: at(0), status: "resolved", userId: "alice", rule: "lockout" }),
    buildIncident({ detectedAt: at(1), status: "failed", userId: "bob", rule: "lockout" }),
    buildIncident({ detectedAt: at(2), status: "resolved", userId: "alice", rule: "sweep" }),
    buildIncident({ detectedAt: at(3), status: "escalated", userId: "carol", rule: "lockout" }),
    // Same detection time as the one before: the id decides, always the same way.
    buildIncident({ detectedAt: at(3), status: "resolved", userId: "dave", rule: "lockout", salt: "x" }),
  ];

  it("newest first, whatever order the store listed them in; counts by status over the other filters", () => {
    const page = pageOf([...incidents].reverse(), parse(""));
    const again = pageOf(incidents, parse(""));
    expect(page.items.map((i) => i.id)).toEqual(again.items.map((i) => i.id));
    expect(page.items.map((i) => i.detectedAt)).toEqual([at(3), at(3), at(2), at(1), at(0)]);
    expect(page.total).toBe(5);
    expect(page.next).toBeNull();
    const filtered = pageOf(incidents, parse("status=resolved&rule=lockout"));
    expect(filtered.items.map((i) => i.target.userId)).toEqual(["dave", "alice"]);
    // Counts ignore the status filter (each is what choosing that status would show) but keep the rule filter.
    expect(filtered.counts).toMatchObject({ resolved: 2, failed: 1, escalated: 1, open: 0 });
    expect(Object.keys(filtered.counts)).toEqual(IncidentStatus.options);
  });

  it("filters by user and by detection time [from, to)", () => {
    expect(pageOf(incidents, parse("user=alice")).items.map((i) => i.rule)).toEqual(["sweep", "lockout"]);
    expect(pageOf(incidents, parse(`from=${at(1)}&to=${at(3)}`)).items.map((i) => i.target.userId)).toEqual(["alice", "bob"]);
  });

  it("pages: each incident exactly once across pages, in order; `next` is null on the last", () => {
    const seen: string[] = [];
    let q = parse("limit=2");
    for (let n = 0; n < 10; n++) {
      const page = pageOf(incidents, q);
      seen.push(...page.items.map((i) => i.id));
      if (page.next === null) break;
      expect(page.items).toHaveLength(2);
      q = { ...q, before: parseCursor(page.next) };
    }
    expect(seen).toEqual(pageOf(incidents, parse("")).items.map((i) => i.id));
  });

  it("a page continues after its cursor even when the incident it names is gone", () => {
    const first = pageOf(incidents, parse("limit=2"));
    const rest = pageOf(
      incidents.filter((i) => i.id !== first.items[1]!.id),
      { ...parse("limit=2"), before: parseCursor(first.next!) },
    );
    expect(rest.items.map((i) => i.detectedAt)).toEqual([at(2), at(1)]);
  });

  it("queryString round-trips the filters", () => {
    const q = parse("status=failed&rule=lockout&user=bob&from=2026-11-26T00:00Z&limit=7");
    expect(parseListQuery(new URLSearchParams(queryString(q).slice(1)))).toEqual(q);
    expect(queryString(parse(""))).toBe("");
  });
});
