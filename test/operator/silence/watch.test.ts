/**
 * File mode, as the operator sees it: a real folder written by the real
 * store (what `reclaim silence` and `reclaim pause` use), polled on a
 * ManualClock, so "within one poll interval" is exact rather than a race.
 */
import { execFileSync } from "node:child_process";
import { mkdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { OperatorEvent, OperatorFields, OperatorLog } from "../../../src/operator/log.js";
import { OperatorMetrics } from "../../../src/operator/metrics.js";
import { SilenceBook } from "../../../src/operator/silence/book.js";
import { FileSilenceStore, silenceDir } from "../../../src/operator/silence/file-store.js";
import { FileSilenceWatch } from "../../../src/operator/silence/file-watch.js";
import { expired, newPause, newSilence, newSilenceId } from "../../../src/operator/silence/model.js";
import { ManualClock } from "../../support/clock.js";
import { tempDir } from "../../support/operator.js";

interface Line {
  level: "debug" | "info" | "warn" | "error";
  event: OperatorEvent;
  fields: OperatorFields;
  message: string;
}

function capture(): { log: OperatorLog; lines: Line[] } {
  const lines: Line[] = [];
  const at =
    (level: Line["level"]) =>
    (event: OperatorEvent, fields: OperatorFields, message: string): void =>
      void lines.push({ level, event, fields, message });
  return { lines, log: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error"), close: () => Promise.resolve() } };
}

const HOUR = 3_600_000;
const POLL = 1000;
const SUBJECT = { userId: "u1", pod: "p0", rule: "lockout" };

const watches: FileSilenceWatch[] = [];
afterEach(async () => {
  for (const w of watches.splice(0)) await w.stop();
});

async function setUp(pollMs = POLL) {
  const state = await tempDir("reclaim-silence-watch-");
  const dir = silenceDir(state);
  const clock = new ManualClock();
  const { log, lines } = capture();
  const metrics = new OperatorMetrics({ defaultMetrics: false });
  const store = new FileSilenceStore({ dir });
  const book = new SilenceBook({ where: `the folder ${dir}`, clock, log, metrics });
  // The polls run on the ManualClock; each file system call's deadline on the real timers (the manual clock jumps
  // seconds ahead while a real read is in flight, which would look like a stuck filesystem).
  const watch = new FileSilenceWatch({ store: new FileSilenceStore({ dir }), book, timers: clock, pollMs });
  watches.push(watch);
  const value = async (name: string): Promise<number> => (await metrics.registry.getSingleMetric(name)!.get()).values[0]?.value ?? 0;
  /** Moves the clock on and waits for the poll that started (if one did): the folder has then been read. */
  const run = async (ms: number): Promise<void> => {
    await watch.idle();
    await clock.run(ms);
    await watch.idle();
  };
  const saw = (event: OperatorEvent): boolean => lines.some((l) => l.event === event);
  return { state, dir, clock, lines, metrics, store, book, watch, value, saw, run };
}

describe("the operator's view of the silence folder", () => {
  it("no folder yet is no silence, not an error", async () => {
    const { watch, book, clock, lines } = await setUp();
    await watch.start();
    expect(book.paused(clock.now())).toBeNull();
    expect(book.silenced(SUBJECT, clock.now())).toBeNull();
    expect(lines).toEqual([]);
  });

  it("a silence written after it started holds from the next poll: not before, and without a restart", async () => {
    const { watch, book, clock, store, lines, value, saw, run } = await setUp();
    await watch.start();
    const silence = newSilence({ matchers: { userId: "u1" }, forMs: 2 * HOUR, by: "alice", comment: "looking into it", now: clock.now() });
    await store.put(silence);
    await run(POLL - 1);
    expect(book.silenced(SUBJECT, clock.now())).toBeNull(); // not read yet: the poll has not come
    await run(1);
    expect(saw("operator.silence_started")).toBe(true);
    expect(book.silenced(SUBJECT, clock.now())).toBe(`silenced by ${silence.id} (user=u1) of alice until ${silence.endsAt}: "looking into it"`);
    expect(book.silenced({ ...SUBJECT, userId: "u2" }, clock.now())).toBeNull();
    expect(lines.find((l) => l.event === "operator.silence_started")).toMatchObject({ level: "warn", fields: { silence: silence.id, by: "alice", userId: "u1" } });
    expect(await value("reclaim_operator_silences_active")).toBe(1);
    expect(await value("reclaim_operator_paused")).toBe(0);
  });

  it("a silence that reaches its end stops holding at that poll, and says so; one expired early says by whom", async () => {
    const { watch, book, clock, store, lines, value, saw, run } = await setUp();
    const short = newSilence({ matchers: { pod: "p0" }, forMs: 60_000, by: "alice", comment: "short", now: clock.now() });
    const long = newSilence({ matchers: { rule: "lockout" }, forMs: HOUR, by: "bob", comment: "long", now: clock.now() });
    await store.put(short);
    await store.put(long);
    await watch.start();
    expect(lines.filter((l) => l.event === "operator.silence_started")).toHaveLength(2);
    await run(60_000);
    expect(saw("operator.silence_ended")).toBe(true);
    expect(lines.find((l) => l.event === "operator.silence_ended")?.message).toBe(`Silence ${short.id} (pod=p0) reached its end (${short.endsAt})`);
    expect(book.silenced({ ...SUBJECT, rule: "other" }, clock.now())).toBeNull();
    expect(await value("reclaim_operator_silences_active")).toBe(1);

    await store.put(expired(long, "carol", clock.now()));
    await run(POLL);
    expect(lines.filter((l) => l.event === "operator.silence_ended")[1]).toMatchObject({ level: "warn", message: `Silence ${long.id} (rule=lockout) ended early by carol` });
    expect(book.silenced(SUBJECT, clock.now())).toBeNull();
    expect(await value("reclaim_operator_silences_active")).toBe(0);
  });

  it("a pause starts and ends as WARN lines (once each) and sets the gauge", async () => {
    const { watch, book, clock, store, lines, value, saw, run } = await setUp();
    await watch.start();
    const pause = newPause({ forMs: HOUR, by: "bob", comment: "deploying the factory", now: clock.now() });
    await store.put(pause);
    await run(POLL);
    expect(saw("operator.pause_started")).toBe(true);
    expect(book.paused(clock.now())).toBe(`automation paused by bob until ${pause.endsAt}: "deploying the factory"`);
    expect(book.pauseState(clock.now())).toEqual({ by: "bob", comment: "deploying the factory", until: pause.endsAt });
    expect(lines.find((l) => l.event === "operator.pause_started")).toMatchObject({ level: "warn" });
    expect(await value("reclaim_operator_paused")).toBe(1);
    await run(POLL); // nothing changed: not said again
    expect(lines.filter((l) => l.event === "operator.pause_started")).toHaveLength(1);

    await store.put(expired(pause, "bob", clock.now()));
    await run(POLL);
    expect(saw("operator.pause_ended")).toBe(true);
    expect(lines.find((l) => l.event === "operator.pause_ended")).toMatchObject({ level: "warn", message: "Automation RESUMED: the pause by bob ended early by bob" });
    expect(book.pauseState(clock.now())).toBeNull();
    expect(await value("reclaim_operator_paused")).toBe(0);
  });

  it("skips unreadable and malformed records, counts each once, logs it, and keeps reading the others", async () => {
    const { watch, book, clock, store, dir, lines, value, run } = await setUp();
    const good = newSilence({ matchers: { userId: "u1" }, forMs: HOUR, by: "alice", comment: "ok", now: clock.now() });
    await store.put(good);
    const other = newSilence({ matchers: { userId: "u2" }, forMs: HOUR, by: "alice", comment: "copied", now: clock.now() });
    await writeFile(join(dir, `${newSilenceId()}.json`), "{ not json");
    await writeFile(join(dir, `${newSilenceId()}.json`), JSON.stringify(other)); // a record under another id's name
    await writeFile(join(dir, `${newSilenceId()}.json`), JSON.stringify({ ...other, comment: "" }));
    await writeFile(join(dir, "notes.json"), "{}");
    await symlink(join(dir, `${good.id}.json`), join(dir, `${newSilenceId()}.json`));
    execFileSync("mkfifo", [join(dir, `${newSilenceId()}.json`)]); // a read of it would block for good
    await watch.start();
    expect(book.silenced(SUBJECT, clock.now())).not.toBeNull();
    expect(book.silenced({ ...SUBJECT, userId: "u2" }, clock.now())).toBeNull();
    const skipped = lines.filter((l) => l.event === "operator.silence_skipped");
    expect(skipped).toHaveLength(6);
    expect(skipped.every((l) => l.level === "error")).toBe(true);
    expect(skipped.map((l) => l.message).join("\n")).toMatch(/not JSON[\s\S]*holds the record of[\s\S]*must not be empty|must not be empty[\s\S]*/);
    expect(skipped.map((l) => l.message).join("\n")).toContain("notes.json");
    expect(skipped.filter((l) => l.message.includes("not a regular file"))).toHaveLength(2);
    expect(await value("reclaim_operator_silences_skipped_total")).toBe(6);

    // Another change makes the folder be read again: the same bad records are not counted again.
    await store.put(newSilence({ matchers: { rule: "lockout" }, forMs: HOUR, by: "bob", comment: "more", now: clock.now() }));
    await run(POLL);
    expect(lines.filter((l) => l.event === "operator.silence_started")).toHaveLength(2);
    expect(await value("reclaim_operator_silences_skipped_total")).toBe(6);
  });

  it("when the folder cannot be read, keeps what it read last (ends still apply), says so, and reads again once it can", async () => {
    const { watch, book, clock, store, dir, lines, value, saw, run } = await setUp();
    const silence = newSilence({ matchers: { userId: "u1" }, forMs: 10 * 60_000, by: "alice", comment: "held", now: clock.now() });
    await store.put(silence);
    await watch.start();
    await rename(dir, `${dir}.away`);
    await writeFile(dir, "a file where the folder was");
    await run(POLL);
    expect(saw("operator.silence_error")).toBe(true);
    expect(lines.find((l) => l.event === "operator.silence_error")).toMatchObject({ level: "error" });
    expect(book.silenced(SUBJECT, clock.now())).not.toBeNull(); // kept
    expect(await value("reclaim_operator_silence_errors_total")).toBe(1);
    await run(POLL); // backing off: no second read yet
    expect(await value("reclaim_operator_silence_errors_total")).toBe(1);
    await run(10 * 60_000); // its end passes while the folder is still unreadable
    expect(saw("operator.silence_ended")).toBe(true);
    expect(book.silenced(SUBJECT, clock.now())).toBeNull();

    await rm(dir);
    await rename(`${dir}.away`, dir);
    await run(30_000);
    expect(lines.some((l) => l.event === "operator.silence_error" && l.message.includes("can be read again"))).toBe(true);
  });

  it("does not start when the folder cannot be read at all: no acting without knowing whether on-call paused", async () => {
    const { watch, state } = await setUp();
    await mkdir(state, { recursive: true });
    await writeFile(silenceDir(state), "not a folder");
    await expect(watch.start()).rejects.toMatchObject({ code: "ERR_RECLAIM_SILENCES_UNREADABLE" });
  });

  it("refuses a poll interval above 2 s: a new silence must hold within seconds", async () => {
    const { store, book } = await setUp();
    expect(() => new FileSilenceWatch({ store, book, pollMs: 2001 })).toThrow(/at most|from 1 to 2000/);
  });
});
