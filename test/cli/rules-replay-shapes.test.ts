/**
 * `reclaim rules replay` reads every log shape users really have: the
 * factory's JSON lines, Cloud Logging LogEntry NDJSON (a log sink's export),
 * and `gcloud logging read --format=json` output (one pretty-printed JSON
 * array, newest first), from a file or from stdin (`--logs -`); it counts
 * lines by shape, and a file in which no line is understood is an error, not
 * a quiet day. The command runs in this process (its sources, not dist/).
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { rulesReplayCommand } from "../../src/cli/rules-replay.js";

const RULES = fileURLToPath(new URL("../../rules", import.meta.url));
const GCLOUD = fileURLToPath(new URL("../fixtures/gcloud-read-hard-limit.json", import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "reclaim-replay-shapes-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Run {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
}

/** Runs `rules replay ARGS` in this process, with `stdin` as process.stdin when given. */
async function replay(args: string[], stdin?: Buffer): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const before = process.exitCode;
  process.exitCode = undefined;
  const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(console, "error").mockImplementation((...parts: unknown[]) => {
    stderr += `${parts.map(String).join(" ")}\n`;
  });
  const input = stdin === undefined ? undefined : vi.spyOn(process, "stdin", "get").mockReturnValue(Readable.from([stdin], { objectMode: false }) as never);
  try {
    await rulesReplayCommand().parseAsync(args, { from: "user" });
  } finally {
    out.mockRestore();
    err.mockRestore();
    input?.mockRestore();
  }
  const exitCode = process.exitCode as number | undefined;
  process.exitCode = before;
  return { stdout, stderr, exitCode };
}

interface JsonReport {
  incidents: { rule: string; key: Record<string, string>; action: string; firstEntryAt: string }[];
  lines: { read: number; malformed: number; shapes: Record<string, number> };
  entries: number;
}

const json = (run: Run): JsonReport => JSON.parse(run.stdout) as JsonReport;

/** The fixture's entries as NDJSON, one LogEntry a line, oldest first: what a log sink to Cloud Storage writes. */
async function sinkLines(): Promise<string> {
  const entries = JSON.parse(await readFile(GCLOUD, "utf8")) as unknown[];
  return `${entries.reverse().map((e) => JSON.stringify(e)).join("\n")}\n`;
}

describe("rules replay: a gcloud logging read --format=json export", () => {
  it("opens the incidents its HARD LIMIT entries call for (it used to report 0 and exit 0)", async () => {
    const run = await replay(["--rules", RULES, "--logs", GCLOUD, "--json"]);
    expect(run.exitCode).toBeUndefined();
    const report = json(run);
    expect(report.incidents.map((i) => [i.rule, i.key.userId, i.action])).toEqual([
      ["factory-lockout", "105945141827451681156", "act"],
      ["factory-lockout", "117230958812345678901", "act"],
    ]);
    // Handed on oldest first: the first entry of each incident is its HARD LIMIT, not the later factory.error.
    expect(report.incidents.map((i) => i.firstEntryAt)).toEqual(["2026-11-26T09:14:03.120Z", "2026-11-26T09:21:47.505Z"]);
    expect(report.lines.shapes).toMatchObject({ gcloud_array: 7 });
    expect(report.lines.malformed).toBe(0);
  });

  it("reads the same export from stdin (--logs -)", async () => {
    const run = await replay(["--rules", RULES, "--logs", "-", "--json"], await readFile(GCLOUD));
    expect(run.exitCode).toBeUndefined();
    expect(json(run).incidents.map((i) => i.key.userId)).toEqual(["105945141827451681156", "117230958812345678901"]);
    expect(json(run).lines.shapes).toMatchObject({ gcloud_array: 7 });
  });

  it("gives the same incidents for the sink's NDJSON, and counts its lines as log_entry", async () => {
    const logs = join(dir, "sink.ndjson");
    await writeFile(logs, await sinkLines());
    const run = await replay(["--rules", RULES, "--logs", logs, "--json"]);
    expect(run.exitCode).toBeUndefined();
    const report = json(run);
    expect(report.incidents.map((i) => i.key.userId)).toEqual(["105945141827451681156", "117230958812345678901"]);
    expect(report.lines.shapes).toEqual({ log_entry: 7 });
  });

  it("says the shapes in the text report", async () => {
    const run = await replay(["--rules", RULES, "--logs", GCLOUD]);
    expect(run.stdout.split("\n")[1]).toBe("Shapes: 7 gcloud_array (entries of a gcloud logging read --format=json array)");
    expect(run.stdout.trimEnd().split("\n").at(-1)).toMatch(/^2 incident\(s\) would have opened \(2 acting\)/);
  });
});

describe("rules replay: a log in which no line is understood", () => {
  it.each([
    { name: "plain text", content: "INFO:root:started\nERROR:chat:HARD LIMIT: User 1 still over limit after cleanup (20/20)\n", seen: "2 text (plain text)" },
    {
      name: "JSON but not a log entry (zap's ts)",
      content: `${JSON.stringify({ level: "error", ts: 1764148443.117, msg: "HARD LIMIT", event: "factory.hard_limit" })}\n`,
      seen: "1 json_not_entry (JSON but not a log entry: no time, no payload)",
    },
  ])("exits 1 saying which shapes it expected and what it saw: $name", async ({ content, seen }) => {
    const logs = join(dir, "wrong.log");
    await writeFile(logs, content);
    const run = await replay(["--rules", RULES, "--logs", logs]);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain(`reclaim rules replay: ${logs}: no line is a log entry it can read. Expected the factory's JSON lines`);
    expect(run.stderr).toContain("or the JSON array that `gcloud logging read --format=json` prints");
    expect(run.stderr).toContain(`; saw ${seen}`);
    // The report is still printed, with the counts.
    expect(run.stdout).toContain(`Shapes: ${seen}`);
  });

  it("exits 1 for text piped to stdin as well, and 0 for an empty log", async () => {
    const text = await replay(["--rules", RULES, "--logs", "-"], Buffer.from("just some text\n"));
    expect(text.exitCode).toBe(1);
    expect(text.stderr).toContain("reclaim rules replay: stdin: no line is a log entry it can read");
    const empty = join(dir, "empty.log");
    await writeFile(empty, "\n\n");
    expect((await replay(["--rules", RULES, "--logs", empty])).exitCode).toBeUndefined();
  });

  it("exits 1 for a gcloud array cut short, saying where", async () => {
    const whole = await readFile(GCLOUD, "utf8");
    const logs = join(dir, "cut.json");
    await writeFile(logs, whole.slice(0, whole.lastIndexOf('"insertId"')));
    const run = await replay(["--rules", RULES, "--logs", logs, "--json"]);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/cannot read .*cut\.json: file:.*the JSON array ends early at byte \d+, inside an entry/);
  });

  it("counts every shape of a mixed log; one understood line is enough", async () => {
    const logs = join(dir, "mixed.log");
    const entry = JSON.stringify({ severity: "INFO", time: "2026-11-26T12:00:00Z", event: "factory.connection_opened", userId: "u1" });
    await writeFile(logs, [entry, "plain", "", '{"a":1}', "  },", (await sinkLines()).split("\n")[0]].join("\n"));
    const run = await replay(["--rules", RULES, "--logs", logs, "--json"]);
    expect(run.exitCode).toBeUndefined();
    expect(json(run).lines.shapes).toEqual({ json: 1, text: 1, blank: 1, json_not_entry: 1, json_fragment: 1, log_entry: 1 });
  });
});
