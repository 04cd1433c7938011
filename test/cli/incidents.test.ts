/**
 * `reclaim incidents list|show` as on-call runs them, against a folder of
 * records written by the real store.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileIncidentStore } from "../../src/operator/incidents/file-store.js";
import { renderMarkdown } from "../../src/operator/incidents/markdown.js";
import { IncidentStatus, type Incident } from "../../src/operator/incidents/model.js";
import { runCli } from "../support/cli.js";
import { buildIncident, incidentId } from "../support/incidents.js";

let dir: string;
let resolved: Incident;
let escalated: Incident;
let open: Incident;
let otherRule: Incident;
let marked: Incident;
const MARKED_TITLE = "A *starred* title, guards_passed | piped";
/** A folder of its own for `marked`, so that the list tests above keep their four records. */
let markedDir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-cli-incidents-"));
  const store = new FileIncidentStore({ dir });
  resolved = buildIncident({ detectedAt: "2026-11-26T03:14:08.000Z", status: "resolved" });
  escalated = buildIncident({ detectedAt: "2026-11-26T05:00:00.000Z", status: "escalated", userId: "alice" });
  open = buildIncident({ detectedAt: "2026-11-26T01:00:00.000Z", status: "open", pod: null });
  otherRule = buildIncident({ detectedAt: "2026-11-26T04:00:00.000Z", status: "resolved", rule: "factory-resource-limit", dryRun: true });
  marked = buildIncident({ detectedAt: "2026-11-26T02:00:00.000Z", status: "resolved", salt: "marked" }, { title: MARKED_TITLE });
  for (const i of [resolved, escalated, open, otherRule]) await store.save(i);
  markedDir = await mkdtemp(join(tmpdir(), "reclaim-cli-incidents-marked-"));
  await new FileIncidentStore({ dir: markedDir }).save(marked);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(markedDir, { recursive: true, force: true });
});

/** The id column of a `list` table, header excluded. */
function idsOf(table: string): string[] {
  return table
    .trim()
    .split("\n")
    .slice(1)
    .map((line) => line.split(/\s+/)[0]!);
}

describe("reclaim incidents list", () => {
  it("prints a table, oldest first: id, status, severity, rule, user, detected, rungs", async () => {
    const { code, stdout, stderr } = await runCli(["incidents", "list", "--dir", dir]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+STATUS\s+SEVERITY\s+RULE\s+USER\s+DETECTED\s+RUNGS$/);
    expect(idsOf(stdout)).toEqual([open.id, resolved.id, otherRule.id, escalated.id]);
    const row = (i: Incident): string => lines.find((l) => l.startsWith(i.id))!;
    expect(row(resolved).split(/\s{2,}/)).toEqual([
      resolved.id,
      "resolved",
      "critical",
      "factory-hard-limit",
      "105945141827451681156",
      "2026-11-26T03:14:08.000Z",
      "probe:ok,force:ok",
    ]);
    expect(row(open)).toMatch(/\bopen\b.*\s-$/);
    expect(row(escalated)).toMatch(/\balice\b.*probe:ok,force:error$/);
    expect(row(otherRule)).toContain("resolved (dry run)");
  });

  it.each([
    [["--status", "resolved"], () => [resolved.id, otherRule.id]],
    [["--status", "open,escalated"], () => [open.id, escalated.id]],
    [["--status", " escalated , open "], () => [open.id, escalated.id]],
    [["--rule", "factory-resource-limit"], () => [otherRule.id]],
    [["--status", "resolved", "--rule", "factory-hard-limit"], () => [resolved.id]],
  ])("filters with %j", async (args, expected) => {
    const { code, stdout } = await runCli(["incidents", "list", "--dir", dir, ...args]);
    expect(code).toBe(0);
    expect(idsOf(stdout)).toEqual(expected());
  });

  it("--json prints the summaries as a JSON array", async () => {
    const { code, stdout } = await runCli(["incidents", "list", "--dir", dir, "--json", "--status", "resolved,escalated"]);
    expect(code).toBe(0);
    const summaries = JSON.parse(stdout) as Record<string, unknown>[];
    expect(summaries.map((s) => s.id)).toEqual([resolved.id, otherRule.id, escalated.id]);
    expect(summaries[0]).toEqual({
      id: resolved.id,
      status: "resolved",
      severity: "critical",
      rule: "factory-hard-limit",
      title: resolved.title,
      key: resolved.keyString,
      userId: "105945141827451681156",
      pod: resolved.target.pod,
      dryRun: false,
      detectedAt: resolved.detectedAt,
      updatedAt: resolved.updatedAt,
      resolvedAt: resolved.resolvedAt,
      closedAt: resolved.closedAt,
      rungs: [
        { rung: "probe", outcome: "ok" },
        { rung: "force", outcome: "ok" },
      ],
      durations: resolved.durations,
      acknowledged: null,
    });
  });

  it("reads the folder from RECLAIM_INCIDENTS_DIR when --dir is not given", async () => {
    const { code, stdout } = await runCli(["incidents", "list", "--json"], { RECLAIM_INCIDENTS_DIR: dir });
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toHaveLength(4);
  });

  it("says so when an existing folder has nothing to list", async () => {
    const empty = await mkdtemp(join(tmpdir(), "reclaim-cli-incidents-empty-"));
    try {
      const table = await runCli(["incidents", "list", "--dir", empty]);
      expect(table.stderr).toBe("");
      expect(table.code).toBe(0);
      expect(table.stdout).toBe(`No incidents in ${empty}.\n`);
      const json = await runCli(["incidents", "list", "--dir", empty, "--json"]);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout)).toEqual([]);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
    const filtered = await runCli(["incidents", "list", "--dir", dir, "--status", "suppressed"]);
    expect(filtered.stdout).toMatch(/matching the filter\.\n$/);
  });

  it.each([
    ["list", []],
    ["list", ["--json"]],
    ["show", [incidentId("2026-11-26T03:14:08.000Z", "factory-hard-limit")]],
  ])("%s %j on a folder that does not exist is bad usage (exit 2), naming the folder", async (command, args) => {
    const missing = join(dir, "..", `${dir.split("/").pop()}-missing`);
    const { code, stdout, stderr } = await runCli(["incidents", command, ...args, "--dir", missing]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toBe(`reclaim incidents ${command}: the incidents folder ${missing} does not exist (--dir or RECLAIM_INCIDENTS_DIR)\n`);
  });

  it("a folder that does not exist is bad usage when it comes from RECLAIM_INCIDENTS_DIR too", async () => {
    const missing = join(dir, "..", `${dir.split("/").pop()}-missing`);
    const { code, stderr } = await runCli(["incidents", "list"], { RECLAIM_INCIDENTS_DIR: missing });
    expect(code).toBe(2);
    expect(stderr).toContain(`the incidents folder ${missing} does not exist`);
  });

  it("an unknown --status is bad usage (exit 2) and lists the valid ones", async () => {
    const { code, stderr, stdout } = await runCli(["incidents", "list", "--dir", dir, "--status", "resolved,fixed"]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain("--status");
    for (const status of IncidentStatus.options) expect(stderr).toContain(status);
  });

  it("lists the good records and names the unreadable ones on stderr", async () => {
    const bad = await mkdtemp(join(tmpdir(), "reclaim-cli-incidents-bad-"));
    try {
      await new FileIncidentStore({ dir: bad }).save(resolved);
      const truncated = incidentId("2026-11-26T06:00:00Z", "factory-hard-limit", "truncated");
      await writeFile(join(bad, `${truncated}.json`), '{"schemaVersion":1,"id":"');
      const { code, stdout, stderr } = await runCli(["incidents", "list", "--dir", bad]);
      expect(code).toBe(0);
      expect(idsOf(stdout)).toEqual([resolved.id]);
      expect(stderr).toMatch(new RegExp(`skipped .*${truncated}\\.json: not valid JSON`));
    } finally {
      await rm(bad, { recursive: true, force: true });
    }
  });

  it.each(["list", "show"])("%s on a --dir that is a file is bad usage (exit 2), naming it", async (command) => {
    const file = join(dir, `${resolved.id}.json`);
    const { code, stdout, stderr } = await runCli(["incidents", command, ...(command === "show" ? [resolved.id] : []), "--dir", file]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toBe(`reclaim incidents ${command}: the incidents folder ${file} is not a folder (--dir or RECLAIM_INCIDENTS_DIR)\n`);
  });

  it("keeps control characters of a record off the terminal", async () => {
    const hostile = await mkdtemp(join(tmpdir(), "reclaim-cli-incidents-hostile-"));
    try {
      await new FileIncidentStore({ dir: hostile }).save({ ...resolved, rule: "evil\u001b]0;pwned\u0007\u001b[2J", title: "a\nb" });
      const { code, stdout } = await runCli(["incidents", "list", "--dir", hostile]);
      expect(code).toBe(0);
      // eslint-disable-next-line no-control-regex -- looking for control characters is the point
      expect(stdout).not.toMatch(/\u001b|\u0007/);
      expect(stdout).toContain("evil␛]0;pwned␇␛[2J");
      expect(stdout.trimEnd().split("\n")).toHaveLength(2);
    } finally {
      await rm(hostile, { recursive: true, force: true });
    }
  });
});

describe("reclaim incidents show", () => {
  it("prints readable text by default: no Markdown escapes, emphasis or table pipes", async () => {
    const { code, stdout, stderr } = await runCli(["incidents", "show", marked.id, "--dir", markedDir]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).not.toContain("\\");
    expect(stdout).not.toContain("`");
    expect(stdout).not.toMatch(/^\|/m);
    expect(stdout).not.toMatch(/^#/m);
    const lines = stdout.split("\n");
    expect(lines[0]).toBe(MARKED_TITLE);
    expect(lines[1]).toMatch(/^=+$/);
    expect(stdout).toMatch(/^ {2}Status: +resolved$/m);
    expect(stdout).toMatch(/^ {2}Key: +userId=105945141827451681156,pod=factory-7d9f8c6b5-x2k4q$/m);
    expect(stdout).toMatch(/^ {2}2026-11-26T\S+ {2}guards_passed {2}leader, not dry run, rate limit 1\/10 per hour$/m);
    expect(stdout).toContain("Message:    HARD LIMIT: User 105945141827451681156 still over limit after cleanup (20/20)");
    expect(stdout).toContain("Removed:                  2: m-7f3a (evicted), m-91c2 (evicted)");
    expect(stdout).toContain("- Find why 20 managers looked alive to the probe: a client that pongs but never sends?");
    const explicit = await runCli(["incidents", "show", marked.id, "--dir", markedDir, "--format", "text"]);
    expect(explicit.code).toBe(0);
    expect(explicit.stdout).toBe(stdout);
  });

  it("text keeps control characters of a record off the terminal", async () => {
    const hostile = await mkdtemp(join(tmpdir(), "reclaim-cli-incidents-hostile-show-"));
    try {
      await new FileIncidentStore({ dir: hostile }).save({ ...resolved, title: "evil\u001b]0;pwned\u0007\u001b[2J\nnext" });
      const { code, stdout } = await runCli(["incidents", "show", resolved.id, "--dir", hostile]);
      expect(code).toBe(0);
      // eslint-disable-next-line no-control-regex -- looking for control characters is the point
      expect(stdout).not.toMatch(/\u001b|\u0007/);
      expect(stdout.split("\n")[0]).toBe("evil␛]0;pwned␇␛[2J␊next");
    } finally {
      await rm(hostile, { recursive: true, force: true });
    }
  });

  it("--format md prints the GitHub Markdown, escapes and all, as before", async () => {
    const { code, stdout, stderr } = await runCli(["incidents", "show", marked.id, "--dir", markedDir, "--format", "md"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toBe(renderMarkdown(marked));
    expect(stdout.split("\n")[0]).toBe("# A \\*starred\\* title, guards\\_passed \\| piped");
    expect(stdout).toContain("| Status | resolved |");
    expect(stdout).toContain("| 2026-11-26T02:00:00.005Z | guards\\_passed | leader, not dry run, rate limit 1/10 per hour |");
  });

  it("--format json prints the record itself", async () => {
    const { code, stdout } = await runCli(["incidents", "show", escalated.id, "--dir", dir, "--format", "json"], {});
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual(escalated);
  });

  it("reads the folder from RECLAIM_INCIDENTS_DIR", async () => {
    const { code, stdout } = await runCli(["incidents", "show", open.id, "--format", "json"], { RECLAIM_INCIDENTS_DIR: dir });
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual(open);
  });

  it("an unknown id fails (exit 1) and says so", async () => {
    const missing = incidentId("2026-11-26T09:00:00Z", "factory-hard-limit", "missing");
    const { code, stdout, stderr } = await runCli(["incidents", "show", missing, "--dir", dir]);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    expect(stderr).toContain(`no incident ${missing} in ${dir}`);
  });

  const valid = incidentId("2026-11-26T03:14:08.000Z", "factory-hard-limit");
  it.each(["../../etc/passwd", `${valid}/..`, `../${valid}`, "%2e%2e", "not-an-id"])("a malformed id %j is bad usage (exit 2)", async (id) => {
    const { code, stdout, stderr } = await runCli(["incidents", "show", id, "--dir", dir]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toMatch(/invalid incident id .*expected one such as 20261126T120000Z-factory-hard-limit-1a2b3c4d/);
  });

  it("an unknown --format is bad usage (exit 2)", async () => {
    const { code, stderr } = await runCli(["incidents", "show", resolved.id, "--dir", dir, "--format", "html"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/--format/);
  });

  it("a corrupt record fails (exit 1), naming the file", async () => {
    const bad = await mkdtemp(join(tmpdir(), "reclaim-cli-incidents-corrupt-"));
    try {
      await writeFile(join(bad, `${resolved.id}.json`), JSON.stringify({ ...resolved, status: "exploded" }));
      const { code, stderr } = await runCli(["incidents", "show", resolved.id, "--dir", bad]);
      expect(code).toBe(1);
      expect(stderr).toContain(`incident record ${join(bad, `${resolved.id}.json`)} is corrupt`);
    } finally {
      await rm(bad, { recursive: true, force: true });
    }
  });
});

describe("reclaim incidents --help", () => {
  it("lists list and show, and the flags of each", async () => {
    expect((await runCli(["incidents", "--help"])).stdout).toMatch(/list[\s\S]*show/);
    const list = (await runCli(["incidents", "list", "--help"])).stdout;
    for (const flag of ["--dir", "--status", "--rule", "--json", "RECLAIM_INCIDENTS_DIR"]) expect(list).toContain(flag);
    const show = (await runCli(["incidents", "show", "--help"])).stdout;
    for (const flag of ["--dir", "--format", "text", "md", "json"]) expect(show).toContain(flag);
  });
});
