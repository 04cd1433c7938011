/**
 * Human entries (acks and notes): what a valid one is, the bounds, the
 * derived acknowledgement, how they render in the timeline, and how the
 * file store keeps them beside the operator's record so that neither an
 * operator save nor a person's append loses the other's write.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FileIncidentStore, IncidentStoreErrorCode } from "../../../src/operator/incidents/file-store.js";
import {
  ackBy,
  acknowledgement,
  addHumanEntry,
  appendHumanFile,
  boundHuman,
  HumanEntryError,
  HumanEntryErrorCode,
  humanEntry,
  humanFilePath,
  type HumanEntry,
} from "../../../src/operator/incidents/human.js";
import { renderMarkdown, renderText } from "../../../src/operator/incidents/markdown.js";
import { HumanEntry as HumanEntrySchema, type Incident, MAX_HUMAN_ENTRIES, MAX_HUMAN_NAME, MAX_HUMAN_TEXT } from "../../../src/operator/incidents/model.js";
import { incidentCrd } from "../../../src/operator/k8s/crds.js";
import { toIncidentObject } from "../../../src/operator/k8s/resources.js";
import { resourceProblems } from "../../support/crd-values.js";
import { buildIncident } from "../../support/incidents.js";

/** The resolved outage incident's detection time: its decisions run from here to +14.32 s. */
const DETECTED = Date.parse("2026-11-26T03:14:08.000Z");
const at = (ms: number): number => DETECTED + ms;

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "reclaim-human-"));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function thrown(fn: () => unknown): HumanEntryError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HumanEntryError);
    return err as HumanEntryError;
  }
  throw new Error("expected a HumanEntryError");
}

describe("humanEntry: what may be recorded", () => {
  it("builds an ack (comment optional) and a note, trimmed, CRLF as LF, stamped in UTC", () => {
    expect(humanEntry({ kind: "ack", by: "  alice ", at: at(20_000) })).toEqual({ at: "2026-11-26T03:14:28.000Z", kind: "ack", by: "alice", text: "" });
    expect(humanEntry({ kind: "note", by: "Bob Smith", text: " pod drained\r\nwill watch it \n", at: at(0) })).toEqual({
      at: "2026-11-26T03:14:08.000Z",
      kind: "note",
      by: "Bob Smith",
      text: "pod drained\nwill watch it",
    });
    expect(humanEntry({ kind: "note", by: "a".repeat(MAX_HUMAN_NAME), text: "x".repeat(MAX_HUMAN_TEXT), at: at(0) }).text).toHaveLength(MAX_HUMAN_TEXT);
  });

  it.each([
    ["an empty name", { by: "" }, HumanEntryErrorCode.name, /a name is required/],
    ["a blank name", { by: " \t " }, HumanEntryErrorCode.name, /a name is required/],
    ["a name too long", { by: "a".repeat(MAX_HUMAN_NAME + 1) }, HumanEntryErrorCode.name, /65 characters long; at most 64/],
    ["a bell in the name", { by: "ali\u0007ce" }, HumanEntryErrorCode.name, /U\+0007/],
    ["a newline in the name", { by: "ali\nce" }, HumanEntryErrorCode.name, /U\+000A/],
    ["an escape sequence in the name", { by: "\u001b[2Jalice" }, HumanEntryErrorCode.name, /U\+001B/],
    ["a bidi override in the name", { by: "al\u202eice" }, HumanEntryErrorCode.name, /U\+202E/],
    ["a zero-width space in the name", { by: "al\u200bice" }, HumanEntryErrorCode.name, /U\+200B/],
    ["a note without text", { kind: "note", text: "" }, HumanEntryErrorCode.text, /a note needs text/],
    ["a note of blanks", { kind: "note", text: " \n \n" }, HumanEntryErrorCode.text, /a note needs text/],
    ["a note too long", { kind: "note", text: "x".repeat(MAX_HUMAN_TEXT + 1) }, HumanEntryErrorCode.text, /2001 characters long; at most 2000/],
    ["an ack comment too long", { kind: "ack", text: "x".repeat(MAX_HUMAN_TEXT + 1) }, HumanEntryErrorCode.text, /at most 2000/],
    ["a tab in the text", { kind: "note", text: "a\tb" }, HumanEntryErrorCode.text, /U\+0009/],
    ["an escape sequence in the text", { kind: "note", text: "ok \u001b[31mred" }, HumanEntryErrorCode.text, /U\+001B/],
    ["a lone CR in the text", { kind: "note", text: "a\rb" }, HumanEntryErrorCode.text, /U\+000D/],
    ["a line separator in the text", { kind: "ack", text: "a\u2028b" }, HumanEntryErrorCode.text, /U\+2028/],
    ["a bidi isolate in the text", { kind: "note", text: "a\u2066b" }, HumanEntryErrorCode.text, /U\+2066/],
  ] as const)("refuses %s", (_name, change, code, message) => {
    const err = thrown(() => humanEntry({ kind: "note", by: "alice", text: "fine", at: at(0), ...change }));
    expect(err.code).toBe(code);
    expect(err.message).toMatch(message);
  });

  it("the record's schema refuses the same entries when they are read back (a hand edit cannot slip one in)", () => {
    const good = humanEntry({ kind: "note", by: "alice", text: "fine", at: at(0) });
    expect(HumanEntrySchema.safeParse(good).success).toBe(true);
    for (const bad of [
      { ...good, by: "" },
      { ...good, by: " alice" },
      { ...good, by: "al\u0007ice" },
      { ...good, text: "" },
      { ...good, text: "a\u001bb" },
      { ...good, text: "x".repeat(MAX_HUMAN_TEXT + 1) },
      { ...good, kind: "page" },
    ]) {
      expect(HumanEntrySchema.safeParse(bad).success, JSON.stringify(bad).slice(0, 80)).toBe(false);
    }
    expect(HumanEntrySchema.safeParse({ ...good, kind: "ack", text: "" }).success).toBe(true);
  });
});

describe("acknowledgement and the bounds", () => {
  const note = (n: number, by = "bob"): HumanEntry => humanEntry({ kind: "note", by, text: `note ${n}`, at: at(n) });
  const ack = (n: number, by: string): HumanEntry => humanEntry({ kind: "ack", by, at: at(n) });

  it("is null for an older record without human entries, and for one with notes only", () => {
    const old = buildIncident();
    expect("human" in old).toBe(false);
    expect(acknowledgement(old)).toBeNull();
    expect(acknowledgement({ human: [note(1)] })).toBeNull();
  });

  it("is the earliest ack, whoever added theirs first to the list", () => {
    expect(acknowledgement({ human: [note(1), ack(30, "carol"), ack(20, "alice")] })).toEqual({ by: "alice", at: new Date(at(20)).toISOString() });
  });

  it("records one ack per person: a second ack by the same person adds nothing", () => {
    const incident = buildIncident();
    expect(addHumanEntry(incident, ack(10, "alice"))).toBe(true);
    expect(addHumanEntry(incident, ack(20, "alice"))).toBe(false);
    expect(addHumanEntry(incident, ack(30, "bob"))).toBe(true);
    expect(incident.human!.map((e) => `${e.kind}:${e.by}`)).toEqual(["ack:alice", "ack:bob"]);
    expect(ackBy(incident, "alice")!.at).toBe(new Date(at(10)).toISOString());
    expect(incident.humanDropped).toBe(0);
    // Two acks by one person that both reached the record (two runs at once): read as one, the first.
    expect(boundHuman([ack(20, "alice"), note(15), ack(10, "alice")])).toEqual({ human: [ack(10, "alice"), note(15)], humanDropped: 0 });
  });

  it(`keeps at most ${MAX_HUMAN_ENTRIES}: the oldest notes are dropped and counted, the acks stay`, () => {
    const entries = [ack(5, "alice"), ...Array.from({ length: 60 }, (_, n) => note(10 + n)), ack(100, "bob")];
    const { human, humanDropped } = boundHuman(entries, 3);
    expect(human).toHaveLength(MAX_HUMAN_ENTRIES);
    expect(humanDropped).toBe(3 + 12);
    expect(human.filter((e) => e.kind === "ack").map((e) => e.by)).toEqual(["alice", "bob"]);
    expect(human.filter((e) => e.kind === "note")[0]!.text).toBe("note 22");
    // Time order, whatever order they came in.
    expect(boundHuman([note(3), note(1), note(2)]).human.map((e) => e.text)).toEqual(["note 1", "note 2", "note 3"]);
  });

  it("when more people acked than there is room, the first ack stays and the latest go", () => {
    const acks = Array.from({ length: MAX_HUMAN_ENTRIES + 2 }, (_, n) => ack(n, `person-${n}`));
    const { human, humanDropped } = boundHuman([...acks].reverse());
    expect(human).toHaveLength(MAX_HUMAN_ENTRIES);
    expect(humanDropped).toBe(2);
    expect(human[0]!.by).toBe("person-0");
    expect(human.at(-1)!.by).toBe(`person-${MAX_HUMAN_ENTRIES - 1}`);
  });
});

describe("rendering human entries", () => {
  /** The resolved outage with an ack between two decisions, a note at the same time as one, and a note after the last. */
  function annotated(): Incident {
    const incident = buildIncident({ status: "resolved" });
    addHumanEntry(incident, humanEntry({ kind: "note", by: "bob", text: "pod drained too | see *runbook*\nsecond line", at: at(14_320) }));
    addHumanEntry(incident, humanEntry({ kind: "ack", by: "alice", text: "on it", at: at(9_500) }));
    addHumanEntry(incident, humanEntry({ kind: "note", by: "alice", text: "closing: user confirmed", at: at(60_000) }));
    addHumanEntry(incident, humanEntry({ kind: "ack", by: "bob", at: at(12_000) }));
    return incident;
  }

  /** The rows of the timeline of a text rendering (without its heading and column headers). */
  function textTimeline(text: string): string[] {
    const start = text.indexOf("Timeline\n--------\n");
    const end = text.indexOf("\nEvidence\n");
    const lines = text.slice(start, end).split("\n").slice(3).filter(Boolean);
    expect(lines[0]).toMatch(/^\s+Time\s+Decision\s+Detail$/);
    return lines.slice(1);
  }

  it("text: the first acknowledgement under the title, and every entry in the timeline in time order with the decisions", () => {
    const text = renderText(annotated());
    const lines = text.split("\n");
    expect(lines.slice(0, 6)).toEqual([
      "User 105945141827451681156 locked out of chat (20/20 managers)",
      "=".repeat(Array.from("User 105945141827451681156 locked out of chat (20/20 managers)").length),
      "",
      expect.stringMatching(/^Incident \S+ · critical · resolved$/),
      "",
      "Acknowledged by alice at 2026-11-26T03:14:17.500Z.",
    ]);
    const rows = textTimeline(text).map((l) => l.trim().split(/\s{2,}/));
    expect(rows.map((r) => r[1])).toEqual([
      "triggered",
      "guards_passed",
      "rung_started",
      "rung_finished",
      "not_verified",
      "rung_started",
      "acknowledged",
      "rung_finished",
      "acknowledged",
      "verified",
      "resolved",
      "note",
      "note",
    ]);
    expect(rows[6]).toEqual(["2026-11-26T03:14:17.500Z", "acknowledged", "by alice: on it"]);
    expect(rows[8]).toEqual(["2026-11-26T03:14:20.000Z", "acknowledged", "by bob"]);
    // Shown as written (a newline made visible, so the row stays one line), with no Markdown escapes.
    expect(rows[11]).toEqual(["2026-11-26T03:14:22.320Z", "note", "by bob: pod drained too | see *runbook*␊second line"]);
    expect(rows[12]).toEqual(["2026-11-26T03:15:08.000Z", "note", "by alice: closing: user confirmed"]);
  });

  it("Markdown: the same, with the people's text escaped so it cannot break the table", () => {
    const md = renderMarkdown(annotated());
    expect(md).toContain("\n**Acknowledged** by alice at 2026-11-26T03:14:17.500Z.\n");
    const rows = md.split("\n").filter((l) => /^\| 2026-11-26T03:1[45]:\S+ \| (acknowledged|note) \|/.test(l));
    expect(rows).toEqual([
      "| 2026-11-26T03:14:17.500Z | acknowledged | by alice: on it |",
      "| 2026-11-26T03:14:20.000Z | acknowledged | by bob |",
      "| 2026-11-26T03:14:22.320Z | note | by bob: pod drained too \\| see \\*runbook\\*␊second line |",
      "| 2026-11-26T03:15:08.000Z | note | by alice: closing: user confirmed |",
    ]);
  });

  it("says how many entries were dropped", () => {
    const incident = { ...annotated(), humanDropped: 7 };
    expect(renderText(incident)).toContain("7 human entries were dropped (beyond the limit, oldest notes first, or unreadable).");
    expect(renderText(annotated())).not.toContain("human entries were dropped");
  });

  it("an older record without human entries renders as before: no acknowledgement, only decisions", () => {
    const old = buildIncident({ status: "resolved" });
    const text = renderText(old);
    expect(text).not.toContain("Acknowledged");
    expect(textTimeline(text)).toHaveLength(old.decisions.length);
    // The same bytes as a record whose list of human entries is empty.
    expect(renderText({ ...old, human: [], humanDropped: 0 })).toBe(text);
    expect(renderMarkdown({ ...old, human: [], humanDropped: 0 })).toBe(renderMarkdown(old));
  });
});

describe("the Incident CRD", () => {
  it("declares status.human, so the API server keeps people's entries instead of pruning them", () => {
    const incident = buildIncident();
    addHumanEntry(incident, humanEntry({ kind: "ack", by: "alice", text: "on it", at: at(1) }));
    const object = JSON.parse(JSON.stringify(toIncidentObject(incident, "reclaim"))) as { status: Record<string, unknown> };
    object.status.human = incident.human;
    object.status.humanDropped = incident.humanDropped;
    expect(resourceProblems(object, incidentCrd().spec.versions[0]!.schema.openAPIV3Schema, "incident")).toEqual([]);
  });
});

describe("FileIncidentStore: human entries beside the record", () => {
  const ackBy_ = (by: string, ms: number, text?: string): HumanEntry => humanEntry({ kind: "ack", by, at: at(ms), ...(text === undefined ? {} : { text }) });
  const noteBy = (by: string, ms: number, text: string): HumanEntry => humanEntry({ kind: "note", by, text, at: at(ms) });

  it("reads an older record (no human entries, no file for them) as it was written", async () => {
    const store = new FileIncidentStore({ dir: root });
    const old = buildIncident({ status: "escalated" });
    await writeFile(join(root, `${old.id}.json`), `${JSON.stringify(old, null, 2)}\n`);
    expect(await store.get(old.id)).toEqual(old);
    expect(await store.list()).toEqual([old]);
    expect(acknowledgement((await store.get(old.id))!)).toBeNull();
  });

  it("appends entries to <id>.human.jsonl, leaves the operator's <id>.json as it was, and renders them into the .md", async () => {
    const store = new FileIncidentStore({ dir: root });
    const incident = buildIncident({ status: "escalated" });
    await store.save(incident);
    const json = await readFile(join(root, `${incident.id}.json`), "utf8");

    const first = await store.appendHuman(incident.id, ackBy_("alice", 30_000, "paging the factory owners"));
    expect(first!.recorded).toBe(true);
    const second = await store.appendHuman(incident.id, noteBy("bob", 31_000, "restarted the pod by hand"));
    expect(second!.recorded).toBe(true);

    expect(await readFile(join(root, `${incident.id}.json`), "utf8")).toBe(json);
    const read = (await store.get(incident.id))!;
    expect(read.human!.map((e) => [e.kind, e.by, e.text])).toEqual([
      ["ack", "alice", "paging the factory owners"],
      ["note", "bob", "restarted the pod by hand"],
    ]);
    expect(read.humanDropped).toBe(0);
    expect(second!.incident).toEqual(read);
    const { human: _human, humanDropped: _dropped, ...rest } = read;
    expect(rest).toEqual(incident);
    expect(await readFile(join(root, `${incident.id}.md`), "utf8")).toBe(renderMarkdown(read));
    expect((await store.list())[0]!.human).toHaveLength(2);
    expect((await readdir(root)).sort()).toEqual([`${incident.id}.human.jsonl`, `${incident.id}.json`, `${incident.id}.md`]);
  });

  it("an ack by someone who has acknowledged already writes nothing", async () => {
    const store = new FileIncidentStore({ dir: root });
    const incident = buildIncident();
    await store.save(incident);
    await store.appendHuman(incident.id, ackBy_("alice", 30_000));
    const file = await readFile(humanFilePath(root, incident.id), "utf8");
    const again = await store.appendHuman(incident.id, ackBy_("alice", 40_000, "again"));
    expect(again!.recorded).toBe(false);
    expect(ackBy(again!.incident, "alice")!.at).toBe(new Date(at(30_000)).toISOString());
    expect(await readFile(humanFilePath(root, incident.id), "utf8")).toBe(file);
  });

  it("resolves null for an incident that is not there, and leaves nothing behind", async () => {
    const store = new FileIncidentStore({ dir: root });
    expect(await store.appendHuman(buildIncident().id, ackBy_("alice", 1))).toBeNull();
    expect(await readdir(root)).toEqual([]);
  });

  it("an operator save from a stale copy (read before the ack) keeps the ack, and the operator's rung is on record too", async () => {
    const operator = new FileIncidentStore({ dir: root });
    const person = new FileIncidentStore({ dir: root });
    const remediating = buildIncident({ status: "remediating" });
    await operator.save(remediating);
    const held = (await operator.get(remediating.id))!; // what the ladder holds

    await person.appendHuman(remediating.id, ackBy_("alice", 2_000, "watching"));
    // The ladder moves on from its own copy, which has never seen the ack.
    const resolved = { ...buildIncident({ status: "resolved" }), human: held.human, humanDropped: held.humanDropped };
    await operator.save(resolved);

    const after = (await person.get(remediating.id))!;
    expect(after.status).toBe("resolved");
    expect(after.rungs.map((r) => r.rung)).toEqual(["probe", "force"]);
    expect(acknowledgement(after)).toEqual({ by: "alice", at: new Date(at(2_000)).toISOString() });
    expect(await readFile(join(root, `${remediating.id}.md`), "utf8")).toContain("by alice: watching");

    // A copy read after the ack, saved again: the entries stay in their own file, never in the operator's .json.
    await operator.save(after);
    expect(JSON.parse(await readFile(join(root, `${remediating.id}.json`), "utf8"))).not.toHaveProperty("human");
    expect((await operator.get(remediating.id))!.human).toEqual(after.human);
  });

  it("two acks by one person that both reached the file (two runs at once) read as one", async () => {
    const store = new FileIncidentStore({ dir: root });
    const incident = buildIncident();
    await store.save(incident);
    await appendHumanFile(humanFilePath(root, incident.id), ackBy_("alice", 2_000, "second"));
    await appendHumanFile(humanFilePath(root, incident.id), ackBy_("alice", 1_000, "first"));
    expect((await store.get(incident.id))!.human).toEqual([ackBy_("alice", 1_000, "first")]);
  });

  it("an operator save landing between a person's read and their write loses neither", async () => {
    const operator = new FileIncidentStore({ dir: root });
    const remediating = buildIncident({ status: "remediating" });
    await operator.save(remediating);
    /** A person's store whose first read is followed, before its write, by the operator's next save. */
    class Interleaved extends FileIncidentStore {
      private reads = 0;
      override async get(id: string): Promise<Incident | null> {
        const read = await super.get(id);
        if (this.reads++ === 0) await operator.save(buildIncident({ status: "resolved" }));
        return read;
      }
    }
    const person = new Interleaved({ dir: root });
    expect((await person.appendHuman(remediating.id, noteBy("bob", 2_500, "user says chat is back")))!.recorded).toBe(true);

    const after = (await operator.get(remediating.id))!;
    expect(after.status).toBe("resolved");
    expect(after.rungs.map((r) => `${r.rung}:${r.outcome}`)).toEqual(["probe:ok", "force:ok"]);
    expect(after.human!.map((e) => e.text)).toEqual(["user says chat is back"]);
  });

  it("many people and the operator at once: every entry and the operator's last save survive", async () => {
    const operator = new FileIncidentStore({ dir: root });
    const incident = buildIncident({ status: "remediating" });
    await operator.save(incident);
    const saves = Array.from({ length: 20 }, (_, n) => ({ ...incident, decisions: [...incident.decisions, { at: new Date(at(2_000 + n)).toISOString(), kind: "retry" as const, detail: `save ${n}` }] }));
    const people = Array.from({ length: 20 }, (_, n) => new FileIncidentStore({ dir: root }).appendHuman(incident.id, noteBy(`person-${n}`, 3_000 + n, `note ${n}`)));
    // The operator's saves are ordered (OrderedStore); the people's appends are not, and run beside them.
    const operatorDone = saves.reduce((p, s) => p.then(() => operator.save(s)), Promise.resolve());
    const [, ...appended] = await Promise.all([operatorDone, ...people]);
    expect(appended.map((r) => r?.recorded)).toEqual(Array.from({ length: 20 }, () => true));
    // The last write is the operator's, from its copy that has seen none of them.
    await operator.save(saves.at(-1)!);

    const after = (await operator.get(incident.id))!;
    expect(after.decisions.at(-1)!.detail).toBe("save 19");
    expect(after.human!.map((e) => e.text).sort()).toEqual(Array.from({ length: 20 }, (_, n) => `note ${n}`).sort());
  });

  it("skips (and counts) a line torn by a crash, and the next entry is read whole", async () => {
    const store = new FileIncidentStore({ dir: root });
    const incident = buildIncident();
    await store.save(incident);
    await store.appendHuman(incident.id, ackBy_("alice", 1_000));
    // A crash in the middle of an append: half a line, no newline.
    const half = JSON.stringify(noteBy("bob", 2_000, "half written")).slice(0, 30);
    await writeFile(humanFilePath(root, incident.id), half, { flag: "a" });
    await store.appendHuman(incident.id, noteBy("carol", 3_000, "after the crash"));
    const read = (await store.get(incident.id))!;
    expect(read.human!.map((e) => e.by)).toEqual(["alice", "carol"]);
    expect(read.humanDropped).toBe(1);
  });

  it("refuses an append once the file reached its size limit, writing nothing", async () => {
    const path = humanFilePath(root, buildIncident().id);
    const entry = noteBy("bob", 1, "x".repeat(500));
    await appendHumanFile(path, entry, 1200);
    await appendHumanFile(path, entry, 1200);
    const before = await readFile(path, "utf8");
    const err = await appendHumanFile(path, entry, 1200).then(
      () => null,
      (e: unknown) => e as HumanEntryError,
    );
    expect(err?.code).toBe(HumanEntryErrorCode.full);
    expect(await readFile(path, "utf8")).toBe(before);
  });

  it("remove() takes the human entries with the record", async () => {
    const store = new FileIncidentStore({ dir: root });
    const incident = buildIncident();
    await store.save(incident);
    await store.appendHuman(incident.id, ackBy_("alice", 1_000));
    expect(await store.remove(incident.id)).toBe(true);
    expect(await readdir(root)).toEqual([]);
  });

  it("entries that cannot be read: get() fails naming the file; list() still lists the incident, and says what it skipped", async () => {
    const store = new FileIncidentStore({ dir: root });
    const incident = buildIncident();
    await store.save(incident);
    // A folder where the file should be: it exists but cannot be read as one (as root, permissions would not stop a read).
    await mkdir(humanFilePath(root, incident.id));
    const err = await store.get(incident.id).then(
      () => null,
      (e: unknown) => e as Error & { code: string },
    );
    expect(err?.code).toBe(IncidentStoreErrorCode.read);
    expect(err?.message).toContain(humanFilePath(root, incident.id));
    const scan = await store.scan();
    expect(scan.incidents).toEqual([incident]);
    expect(scan.skipped).toEqual([{ file: humanFilePath(root, incident.id), reason: expect.stringMatching(/^its human entries are unreadable \(the incident is listed without them\)/) }]);
  });
});
