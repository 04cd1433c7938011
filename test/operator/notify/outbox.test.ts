/**
 * The notification outbox (issue 13): coalescing, at least once across
 * restarts and crashes, backoff with jitter and Retry-After, drops (permanent,
 * expired, overflow), isolation of a dead receiver and a slow disk, dropped-in
 * files from other processes, hostile subjects, metrics, and a model-based
 * test of random interleavings. Real files in a temp folder; receivers are the
 * project's own interface (fakes here) and, once, a real HTTP server through
 * postJson. All time is a ManualClock.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative, sep } from "node:path";
import { Writable } from "node:stream";
import fc from "fast-check";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { Clock } from "../../../src/contract/clock.js";
import { postJson } from "../../../src/operator/notify/http.js";
import { dropNotice, InvalidNoticeError, Outbox, OutboxOptionError, type OutboxOptions } from "../../../src/operator/notify/outbox.js";
import type { Delivery, Notice, Receiver } from "../../../src/operator/notify/types.js";
import { createOperatorLog } from "../../../src/operator/log.js";
import { ManualClock } from "../../support/clock.js";
import { notice, NOTICE_T0 } from "../../support/notice.js";
import { eventually } from "../../support/factory.js";
import { describeNeeding } from "../../support/needs.js";

const T0 = NOTICE_T0;

type Mode = "up" | "down" | "reject" | "hang" | "deaf" | { retryAfterMs: number };

/** A receiver whose answer the test sets; it records what it got and when it was called. */
class FakeReceiver implements Receiver {
  readonly type = "webhook" as const;
  mode: Mode = "up";
  readonly got: Notice[] = [];
  readonly calls: number[] = [];
  constructor(
    readonly name: string,
    private readonly clock: Clock,
  ) {}

  send(n: Notice, signal: AbortSignal): Promise<Delivery> {
    this.calls.push(this.clock.now());
    const mode = this.mode;
    if (mode === "up") {
      this.got.push(n);
      return Promise.resolve({ ok: true });
    }
    if (mode === "down") return Promise.resolve({ ok: false, permanent: false, retryAfterMs: null, detail: "http://127.0.0.1:1: HTTP 503" });
    if (mode === "reject") return Promise.resolve({ ok: false, permanent: true, retryAfterMs: null, detail: "http://127.0.0.1:1: HTTP 400 unknown field" });
    if (mode === "hang") {
      return new Promise((resolve) =>
        signal.addEventListener("abort", () => resolve({ ok: false, permanent: false, retryAfterMs: null, detail: "no answer" }), { once: true }),
      );
    }
    if (mode === "deaf") return new Promise(() => undefined);
    return Promise.resolve({ ok: false, permanent: false, retryAfterMs: mode.retryAfterMs, detail: "http://127.0.0.1:1: HTTP 429" });
  }
}

interface Harness {
  outbox: Outbox;
  registry: Registry;
  lines: Record<string, unknown>[];
  clock: ManualClock;
  dir: string;
}

const temps: string[] = [];
const live: Harness[] = [];
/** Outboxes whose disk never answers (their stop waits for the flush deadline). */
const hungDisks = new Set<Harness>();

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "reclaim-outbox-"));
  temps.push(d);
  return d;
}

function make(dir: string, receivers: Receiver[], clock: ManualClock, options: Partial<OutboxOptions> = {}): Harness {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const l of chunk.toString().split("\n")) if (l.trim() !== "") lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const registry = new Registry();
  const outbox = new Outbox({ dir, receivers, registry, log: createOperatorLog({ pod: "test", streams: [sink], level: "debug" }), timers: clock, random: () => 0.5, ...options });
  const h = { outbox, registry, lines, clock, dir };
  live.push(h);
  return h;
}

/**
 * Stops an outbox, moving its clock on so that attempt deadlines (and, with
 * a disk that hangs, the flush deadline) can pass. The clock moves only once
 * real writes are done, so a deadline never passes because a real disk was
 * slower than a loop; unless `diskHangs`, where that is the point.
 */
async function stopDriven(h: Harness, diskHangs = false): Promise<void> {
  let done = false;
  const stopping = h.outbox.stop().then(() => (done = true));
  for (let i = 0; !done; i++) {
    if (i > 1000) throw new Error("stop() did not finish");
    if (!diskHangs) await Promise.race([h.outbox.flushed(), stopping]);
    if (!done) await h.clock.run(1_000);
  }
  await stopping;
  live.splice(live.indexOf(h), 1);
}

afterEach(async () => {
  for (const h of [...live]) await stopDriven(h, hungDisks.has(h));
  hungDisks.clear();
  for (const d of temps.splice(0)) await rm(d, { recursive: true, force: true });
});

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const base = name.replace(/_(count|sum)$/, "");
  const m = registry.getSingleMetric(base) ?? registry.getSingleMetric(name);
  if (m === undefined) throw new Error(`no metric ${name}`);
  const { values } = await m.get();
  return values
    .filter((v) => ((v as { metricName?: string }).metricName ?? base) === name && Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    .reduce((sum, v) => sum + v.value, 0);
}

/** Every file under `root`, relative to it. */
async function filesUnder(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile() || e.isFIFO())
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

/** The pending files of one receiver: subject → notice. */
async function pendingOnDisk(dir: string, receiver: string): Promise<Map<string, Notice>> {
  const out = new Map<string, Notice>();
  let names: string[] = [];
  try {
    names = await readdir(join(dir, receiver));
  } catch {
    return out;
  }
  for (const name of names) {
    if (name.startsWith(".")) continue; // a write in progress (writeFileAtomic's temp file)
    expect(name).toMatch(/^[0-9a-f]{64}\.json$/);
    const { notice: n } = JSON.parse(await readFile(join(dir, receiver, name), "utf8")) as { notice: Notice };
    expect(createHash("sha256").update(n.subject).digest("hex")).toBe(name.slice(0, 64));
    expect(out.has(n.subject)).toBe(false);
    out.set(n.subject, n);
  }
  return out;
}

const events = (h: Harness, event: string): Record<string, unknown>[] => h.lines.filter((l) => l.event === event);

describe("Outbox", () => {
  it("coalesces per receiver and subject: a newer notice replaces a pending one, an older one never replaces a newer one", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    const h = make(dir, [a], clock);
    h.outbox.enqueue(notice("inc-1", T0 + 1000, { status: "open" }), ["a"]);
    h.outbox.enqueue(notice("inc-1", T0 + 3000, { status: "resolved" }), ["a"]);
    h.outbox.enqueue(notice("inc-1", T0 + 2000, { status: "remediating" }), ["a"]); // late, older
    h.outbox.enqueue(notice("inc-2", T0 + 1000), ["a"]);
    expect(h.outbox.pendingCount("a")).toBe(2);
    await h.outbox.settled();
    const disk = await pendingOnDisk(dir, "a");
    expect([...disk.keys()].sort()).toEqual(["inc-1", "inc-2"]);
    expect(disk.get("inc-1")?.status).toBe("resolved");
    expect(await metric(h.registry, "reclaim_operator_notifications_pending", { receiver: "a" })).toBe(2);

    await h.outbox.start();
    await h.outbox.idle();
    expect(a.got.map((n) => `${n.subject}:${n.status}`).sort()).toEqual(["inc-1:resolved", "inc-2:open"]);
    // Once the newer state was delivered, a late older one is not delivered after it.
    h.outbox.enqueue(notice("inc-1", T0 + 2500, { status: "remediating" }), ["a"]);
    await h.outbox.idle();
    expect(a.got).toHaveLength(2);
    expect(await filesUnder(dir)).toEqual([]);
  });

  it("delivers at least once across a restart: stopped before delivery, the next outbox on the folder delivers", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const first = new FakeReceiver("a", clock);
    first.mode = "down";
    const h1 = make(dir, [first], clock);
    await h1.outbox.start();
    h1.outbox.enqueue(notice("inc-1", T0), ["a"]);
    await eventually(() => first.calls.length === 1, 5000, "the first attempt");
    await stopDriven(h1);
    expect([...(await pendingOnDisk(dir, "a")).keys()]).toEqual(["inc-1"]);

    const second = new FakeReceiver("a", clock);
    const h2 = make(dir, [second], clock);
    await h2.outbox.start();
    await h2.outbox.idle();
    expect(second.got.map((n) => n.subject)).toEqual(["inc-1"]);
    expect(await filesUnder(dir)).toEqual([]);
  });

  it("after a crash (files left, no stop), the next outbox delivers them; a half-written temp file is cleaned and a corrupt one set aside", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const crashed = make(dir, [new FakeReceiver("a", clock), new FakeReceiver("b", clock)], clock);
    crashed.outbox.enqueue(notice("inc-1", T0), ["a", "b"]);
    crashed.outbox.enqueue(notice("inc-2", T0), ["b"]);
    await crashed.outbox.settled();
    live.splice(live.indexOf(crashed), 1); // never stopped: the process died
    await writeFile(join(dir, "a", `.${"0".repeat(64)}.json.123.abc.tmp`), '{"notice":');
    await writeFile(join(dir, "b", `${"f".repeat(64)}.json`), '{"notice": {"subj');

    const a = new FakeReceiver("a", clock);
    const b = new FakeReceiver("b", clock);
    const h = make(dir, [a, b], clock);
    await h.outbox.start();
    await h.outbox.idle();
    expect(a.got.map((n) => n.subject)).toEqual(["inc-1"]);
    expect(b.got.map((n) => n.subject).sort()).toEqual(["inc-1", "inc-2"]);
    const left = await filesUnder(dir);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^rejected\//);
    expect(await metric(h.registry, "reclaim_operator_notification_files_rejected_total")).toBe(1);
  });

  it("start() cleans up temp files of writes the last process left, never those of its own writes still running", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started = false;
    const h = make(dir, [new FakeReceiver("a", clock)], clock, {
      // writeFileAtomic's steps, with the rename held back until the test lets go.
      writeFile: async (path, data) => {
        const temp = join(dirname(path), `.${basename(path)}.${process.pid}.held.tmp`);
        await mkdir(dirname(path), { recursive: true });
        await writeFile(temp, data);
        started = true;
        await gate;
        await rename(temp, path);
      },
    });
    h.outbox.enqueue(notice("inc-1", T0), ["a"]); // queued before start: written while start() loads
    await eventually(() => started, 5000, "the write to start");
    await h.outbox.start();
    release();
    await h.outbox.idle();
    expect(await metric(h.registry, "reclaim_operator_notification_disk_errors_total")).toBe(0);
  });

  it("retries with a backoff that doubles to its cap, with full jitter from the injected random", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    a.mode = "down";
    const randoms = [0.5, 0.25, 0.9, 0.5, 0.1, 0.99];
    let i = 0;
    const h = make(dir, [a], clock, { backoffMs: [1000, 8000], random: () => randoms[i++ % randoms.length]!, maxAgeMs: 3_600_000 });
    await h.outbox.start();
    h.outbox.enqueue(notice("inc-1", T0), ["a"]);
    await eventually(() => a.calls.length === 1, 5000, "the first attempt");
    await clock.run(30_000);
    const gaps = a.calls.slice(1).map((t, k) => t - a.calls[k]!);
    // floor(random × min(8000, 1000 × 2^(n-1)))
    expect(gaps.slice(0, 6)).toEqual([500, 500, 3600, 4000, 800, 7920]);
    expect(await metric(h.registry, "reclaim_operator_notifications_total", { receiver: "a", result: "retried" })).toBe(a.calls.length);
    a.mode = "up";
    await clock.run(8000);
    await h.outbox.idle();
    expect(a.got).toHaveLength(1);
  });

  it("backs off a failing receiver as a whole: asked about once per backoff, not once per pending notice; all delivered once it recovers", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    a.mode = "down";
    const h = make(dir, [a], clock, { backoffMs: [1000, 8000] }); // random 0.5: waits of at most 4 s
    await h.outbox.start();
    for (let k = 0; k < 20; k++) h.outbox.enqueue(notice(`inc-${k}`, T0), ["a"]);
    for (let s = 0; s < 60; s++) await clock.run(10_000);
    // Two at a time (concurrency) every 4 s for 600 s, against 20 notices × every 4 s if each backed off alone.
    expect(a.calls.length).toBeLessThanOrEqual(2 * (600 / 4 + 1));
    a.mode = "up";
    await clock.run(8_000);
    await h.outbox.idle();
    expect(new Set(a.got.map((n) => n.subject)).size).toBe(20);
  });

  it("backs off a notice the receiver keeps failing on its own, while the receiver delivers the others", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const poisonCalls: number[] = [];
    const delivered: string[] = [];
    const picky: Receiver = {
      name: "picky",
      type: "webhook",
      send: (n) => {
        if (n.subject !== "poison") {
          delivered.push(n.subject);
          return Promise.resolve({ ok: true });
        }
        poisonCalls.push(clock.now());
        return Promise.resolve({ ok: false, permanent: false, retryAfterMs: null, detail: "HTTP 500" });
      },
    };
    const h = make(dir, [picky], clock, { backoffMs: [1000, 64_000] });
    await h.outbox.start();
    h.outbox.enqueue(notice("poison", T0), ["picky"]);
    for (let s = 1; s <= 60; s++) {
      h.outbox.enqueue(notice(`ok-${s}`, clock.now()), ["picky"]);
      await clock.run(1000);
    }
    expect(delivered).toHaveLength(60);
    // 0.5 × 1, 2, 4, 8, 16 and 32 s apart: 7 attempts in a minute, not one a second.
    expect(poisonCalls.slice(1).map((t, k) => t - poisonCalls[k]!)).toEqual([500, 1000, 2000, 4000, 8000, 16000]);
  });

  it("honours Retry-After over a shorter backoff, and pauses the whole receiver until then", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    a.mode = { retryAfterMs: 30_000 };
    const h = make(dir, [a], clock, { concurrency: 1 });
    await h.outbox.start();
    h.outbox.enqueue(notice("inc-1", T0), ["a"]);
    h.outbox.enqueue(notice("inc-2", T0), ["a"]);
    await eventually(() => a.calls.length === 1, 5000, "the first attempt");
    await h.outbox.settled();
    a.mode = "up";
    await clock.run(10_000);
    h.outbox.enqueue(notice("inc-3", T0 + 10_000), ["a"]);
    await clock.run(19_999);
    await h.outbox.settled();
    expect(a.calls).toEqual([T0]); // neither inc-2 nor the new inc-3 was tried while paused
    await clock.run(1);
    await h.outbox.idle();
    expect(a.got.map((n) => n.subject)).toEqual(["inc-1", "inc-2", "inc-3"]);
    expect(a.calls.slice(1).every((t) => t === T0 + 30_000)).toBe(true);
  });

  it("drops a notice the receiver refuses for good: counted, logged ERROR with the detail, never retried", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    a.mode = "reject";
    const h = make(dir, [a], clock);
    await h.outbox.start();
    h.outbox.enqueue(notice("inc-1", T0), ["a"]);
    await h.outbox.idle();
    await clock.run(600_000);
    expect(a.calls).toHaveLength(1);
    expect(await metric(h.registry, "reclaim_operator_notifications_total", { receiver: "a", result: "dropped_permanent" })).toBe(1);
    expect(await metric(h.registry, "reclaim_operator_notifications_pending", { receiver: "a" })).toBe(0);
    const [line] = events(h, "operator.notify_dropped");
    expect(line).toMatchObject({ severity: "ERROR", receiver: "a", result: "dropped_permanent", subject: "inc-1" });
    expect(line?.message).toContain("HTTP 400 unknown field");
    expect(await filesUnder(dir)).toEqual([]);
  });

  it("says when a subject has left every receiver: once, with its newest notice, and whether each receiver's last one was delivered", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    const b = new FakeReceiver("b", clock);
    b.mode = "down";
    const settled: { subject: string; status: string; delivered: boolean }[] = [];
    const h = make(dir, [a, b], clock, { backoffMs: [1000, 1000], onSettled: (n, delivered) => settled.push({ subject: n.subject, status: n.status, delivered }) });
    await h.outbox.start();
    h.outbox.enqueue(notice("inc-1", T0, { status: "open" }), ["a", "b"]);
    await eventually(() => a.got.length === 1 && b.calls.length === 1, 5000, "an attempt at each");
    await h.outbox.settled();
    // `a` has it, `b` does not yet: not settled. A newer state replaces it at `b` only.
    expect(settled).toEqual([]);
    h.outbox.enqueue(notice("inc-1", T0 + 500, { status: "escalated" }), ["b"]);
    b.mode = "up";
    await clock.run(1000);
    await h.outbox.idle();
    expect(settled).toEqual([{ subject: "inc-1", status: "escalated", delivered: true }]);

    // A receiver that refuses it for good: settled, not delivered.
    b.mode = "reject";
    h.outbox.enqueue(notice("inc-2", clock.now()), ["a", "b"]);
    await h.outbox.idle();
    expect(settled.slice(1)).toEqual([{ subject: "inc-2", status: "open", delivered: false }]);
  });

  it("drops notices older than maxAge, without trying a stale one", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    a.mode = "down";
    const h = make(dir, [a], clock, { maxAgeMs: 60_000, backoffMs: [1000, 5000] });
    await h.outbox.start();
    h.outbox.enqueue(notice("stale", T0 - 120_000), ["a"]);
    h.outbox.enqueue(notice("fresh", T0), ["a"]);
    await h.outbox.settled();
    expect(a.calls).toHaveLength(1); // only "fresh"
    await clock.run(59_000);
    expect(h.outbox.pendingCount("a")).toBe(1);
    await clock.run(2_000);
    await h.outbox.idle();
    expect(await metric(h.registry, "reclaim_operator_notifications_total", { receiver: "a", result: "dropped_expired" })).toBe(2);
    expect(h.outbox.pendingCount("a")).toBe(0);
    expect(await filesUnder(dir)).toEqual([]);
  });

  it("keeps at most maxPendingPerReceiver: the oldest is dropped, counted and logged (not once per drop)", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    const h = make(dir, [a], clock, { maxPendingPerReceiver: 3 });
    for (let k = 0; k < 6; k++) h.outbox.enqueue(notice(`inc-${k}`, T0 + k), ["a"]);
    expect(h.outbox.pendingCount("a")).toBe(3);
    await h.outbox.settled();
    expect([...(await pendingOnDisk(dir, "a")).keys()].sort()).toEqual(["inc-3", "inc-4", "inc-5"]);
    expect(await metric(h.registry, "reclaim_operator_notifications_total", { receiver: "a", result: "dropped_overflow" })).toBe(3);
    expect(events(h, "operator.notify_dropped")).toHaveLength(1);
    await h.outbox.start();
    await h.outbox.idle();
    expect(a.got.map((n) => n.subject)).toEqual(["inc-3", "inc-4", "inc-5"]);
  });

  it("a dead receiver never delays another, and is logged at its first failure then once a minute with the count", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const dead = new FakeReceiver("dead", clock);
    const deaf = new FakeReceiver("deaf", clock);
    const ok = new FakeReceiver("ok", clock);
    dead.mode = "down";
    deaf.mode = "deaf"; // ignores its signal: only the outbox's own deadline ends the attempt
    const h = make(dir, [dead, deaf, ok], clock, { backoffMs: [1000, 1000], random: () => 0.999 });
    await h.outbox.start();
    for (let k = 0; k < 20; k++) h.outbox.enqueue(notice(`inc-${k}`, T0), ["dead", "deaf", "ok"]);
    await eventually(() => ok.got.length === 20, 5000, "the live receiver to get all 20");
    expect(h.outbox.pendingCount("dead")).toBe(20);
    expect(h.outbox.pendingCount("deaf")).toBe(20);
    // 150 s of failing every second: three lines, not hundreds.
    for (let s = 0; s < 150; s++) await clock.run(1000);
    expect(await metric(h.registry, "reclaim_operator_notifications_total", { receiver: "deaf", result: "retried" })).toBeGreaterThan(0);
    const failing = events(h, "operator.notify_failing").filter((l) => l.receiver === "dead");
    expect(dead.calls.length).toBeGreaterThan(100);
    expect(failing).toHaveLength(3);
    expect(failing[0]).toMatchObject({ severity: "WARNING", failures: 1 });
    expect(Number(failing[1]?.failures)).toBeGreaterThan(failing.length);
    dead.mode = "up";
    await clock.run(1000);
    await eventually(() => dead.got.length === 20, 5000, "the dead receiver to recover");
    expect(events(h, "operator.notify_recovered")).toHaveLength(1);
  });

  it("enqueue returns at once with a hanging receiver and a disk that never answers; delivery goes on; stop() is bounded", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const hung = new FakeReceiver("hung", clock);
    hung.mode = "deaf";
    const ok = new FakeReceiver("ok", clock);
    const writes: string[] = [];
    const h = make(dir, [hung, ok], clock, {
      writeFile: (path) => {
        writes.push(path);
        return new Promise(() => undefined);
      },
    });
    hungDisks.add(h);
    await h.outbox.start();
    for (let k = 0; k < 500; k++) h.outbox.enqueue(notice(`inc-${k}`, T0), ["hung", "ok"]);
    expect(h.outbox.pendingCount("hung")).toBe(500);
    await eventually(() => ok.got.length === 500, 5000, "delivery with the disk hung");
    expect(writes.length).toBeGreaterThan(0);
    await stopDriven(h, true);
    expect(h.lines.some((l) => l.event === "operator.notify_disk_error" && String(l.message).startsWith("Stopped with"))).toBe(true);
  });

  it("keeps notices in memory when the disk fails; counts and logs it once a minute; keeps a dropped-in file; writes again once it works", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    a.mode = "down";
    await writeFile(join(dir, "a"), "not a folder"); // the receiver's folder cannot be made: every write fails
    const dropped = await dropNotice(dir, notice("ack-1", T0), ["a"]);
    const h = make(dir, [a], clock, { backoffMs: [60_000, 60_000], random: () => 0.999 });
    await h.outbox.start();
    for (let k = 0; k < 5; k++) h.outbox.enqueue(notice(`inc-${k}`, T0), ["a"]);
    await h.outbox.settled();
    expect(await metric(h.registry, "reclaim_operator_notification_disk_errors_total")).toBe(6);
    expect(events(h, "operator.notify_disk_error")).toHaveLength(1);
    expect(h.outbox.pendingCount("a")).toBe(6);
    expect(existsSync(dropped)).toBe(true); // not on disk as pending yet: the drop file is what survives a crash
    await rm(join(dir, "a"));
    await clock.run(2_000); // the next scan writes them again
    await eventually(async () => (await pendingOnDisk(dir, "a")).size === 6 && !existsSync(dropped), 5000, "the files to be written");
    a.mode = "up";
    await clock.run(60_000);
    await h.outbox.idle();
    expect(a.got).toHaveLength(6);
  });

  it("picks up notices other processes drop into new/, and moves malformed files to rejected/, counted, never crashing", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    const b = new FakeReceiver("b", clock);
    const h = make(dir, [a, b], clock, { route: (n) => (n.severity === "critical" ? ["a", "b"] : ["b"]) });
    await dropNotice(dir, notice("ack-1", T0, { acknowledged: { by: "alice", at: new Date(T0).toISOString() } }), ["a"]);
    await dropNotice(dir, notice("routed", T0, { severity: "critical" }));
    const incoming = join(dir, "new");
    const bad: Array<[string, string]> = [
      ["1-not-json.json", "{"],
      ["2-no-notice.json", '{"receivers":["a"]}'],
      ["3-bad-at.json", JSON.stringify({ notice: notice("x", T0, { at: "yesterday" }) })],
      ["4-bad-receiver.json", JSON.stringify({ notice: notice("x", T0), receivers: ["../../etc"] })],
      ["5-unknown-receiver.json", JSON.stringify({ notice: notice("x", T0), receivers: ["zzz"] })],
      ["6-too-large.json", JSON.stringify({ notice: notice("x", T0, { description: "d".repeat(1_100_000) }) })],
      ["7-null.json", "null"],
    ];
    for (const [name, text] of bad) await writeFile(join(incoming, name), text);
    await mkdir(join(incoming, "8-a-folder.json"));
    expect(spawnSync("mkfifo", [join(incoming, "9-a-fifo.json")]).status).toBe(0);
    await writeFile(join(incoming, ".being-written.json.tmp"), "{");
    await h.outbox.start();
    await h.outbox.idle();
    expect(a.got.map((n) => n.subject).sort()).toEqual(["ack-1", "routed"]);
    expect(a.got.find((n) => n.subject === "ack-1")?.acknowledged?.by).toBe("alice");
    expect(b.got.map((n) => n.subject)).toEqual(["routed"]);
    expect(await metric(h.registry, "reclaim_operator_notification_files_rejected_total")).toBe(9);
    expect(await readdir(incoming)).toEqual([".being-written.json.tmp"]);
    expect(await readdir(join(dir, "rejected"))).toHaveLength(9);
    expect(events(h, "operator.notify_rejected")).toHaveLength(9);
    // Still working: a later drop is delivered.
    await dropNotice(dir, notice("later", T0), ["b"]);
    await clock.run(2_000);
    await h.outbox.idle();
    expect(b.got.map((n) => n.subject)).toEqual(["routed", "later"]);
  });

  it("removes a dropped-in file only once its notice is pending on disk: a crash in between loses nothing", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const writes: string[] = [];
    const crashed = make(dir, [new FakeReceiver("a", clock)], clock, {
      writeFile: (path) => {
        writes.push(path);
        return new Promise(() => undefined); // the disk stalls, then the process dies
      },
    });
    const dropped = await dropNotice(dir, notice("ack-1", T0), ["a"]);
    await crashed.outbox.start();
    await eventually(() => writes.some((p) => p.endsWith(`${createHash("sha256").update("ack-1").digest("hex")}.json`)), 5000, "the pending write");
    await clock.run(10_000); // scans come and go while the write hangs
    expect(existsSync(dropped)).toBe(true);
    live.splice(live.indexOf(crashed), 1);

    const clock2 = new ManualClock(T0);
    const a = new FakeReceiver("a", clock2);
    const h = make(dir, [a], clock2);
    await h.outbox.start();
    await h.outbox.idle();
    expect(a.got.map((n) => n.subject)).toEqual(["ack-1"]);
    expect(existsSync(dropped)).toBe(false);
  });

  it("dropNotice refuses what the outbox would reject, with a code", async () => {
    const dir = await tempDir();
    await expect(dropNotice(dir, notice("x", T0, { at: "soon" }))).rejects.toMatchObject({ code: "ERR_RECLAIM_NOTICE_INVALID" });
    await expect(dropNotice(dir, notice("x", T0), ["Bad Name"])).rejects.toBeInstanceOf(InvalidNoticeError);
    expect(await filesUnder(dir)).toEqual([]);
  });

  it("a hostile subject never names a file: everything stays under dir, named by hashes", async () => {
    const parent = await tempDir();
    const dir = join(parent, "outbox");
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    a.mode = "down";
    const h = make(dir, [a], clock);
    const subjects = ["../../etc/passwd", "/etc/passwd", `..${sep}..${sep}x`, "x".repeat(100_000), "ü💥\u0000\n../", "new", "rejected", "."];
    for (const s of subjects) h.outbox.enqueue(notice(s, T0), ["a"]);
    await dropNotice(dir, notice("../../../dropped", T0), ["a"]);
    await h.outbox.start();
    await eventually(() => h.outbox.pendingCount("a") === subjects.length + 1, 5000, "the dropped notice to be queued");
    await h.outbox.settled();
    const files = await filesUnder(parent);
    expect(files).toHaveLength(subjects.length + 1);
    for (const f of files) expect(f).toMatch(/^outbox\/a\/[0-9a-f]{64}\.json$/);
    expect([...(await pendingOnDisk(dir, "a")).keys()].sort()).toEqual([...subjects, "../../../dropped"].sort());
    a.mode = "up";
    await clock.run(1000);
    await h.outbox.idle();
    expect(a.got.map((n) => n.subject).sort()).toEqual([...subjects, "../../../dropped"].sort());
    expect(await filesUnder(parent)).toEqual([]);
  });

  it("refuses unusable options with a code: reserved, invalid or duplicate receiver names, bad numbers", () => {
    const clock = new ManualClock(T0);
    const base = { dir: "/nonexistent", registry: new Registry(), log: createOperatorLog({ streams: [] }) };
    for (const names of [["new"], ["rejected"], ["../x"], ["a", "a"]]) {
      expect(() => new Outbox({ ...base, receivers: names.map((n) => new FakeReceiver(n, clock)) })).toThrow(OutboxOptionError);
    }
    expect(() => new Outbox({ ...base, receivers: [], backoffMs: [5000, 1000] })).toThrow(expect.objectContaining({ code: "ERR_RECLAIM_OUTBOX_OPTION" }));
    expect(() => new Outbox({ ...base, receivers: [], concurrency: 0 })).toThrow(OutboxOptionError);
  });

  it("exposes delivered, retried, pending, receiver_up and the delivery histogram per receiver", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    const b = new FakeReceiver("b", clock);
    b.mode = "hang";
    const h = make(dir, [a, b], clock, { attemptTimeoutMs: 4000, backoffMs: [10_000, 10_000], random: () => 0.999 });
    await h.outbox.start();
    h.outbox.enqueue(notice("inc-1", T0), ["a", "b"]);
    h.outbox.enqueue(notice("inc-2", T0), ["a", "b"]);
    await eventually(() => a.got.length === 2, 5000, "delivery to a");
    expect(await metric(h.registry, "reclaim_operator_notification_receiver_up", { receiver: "a" })).toBe(1);
    expect(await metric(h.registry, "reclaim_operator_notifications_pending", { receiver: "b" })).toBe(2);
    await clock.run(4000); // b's attempts reach their deadline
    await h.outbox.settled();
    expect(await metric(h.registry, "reclaim_operator_notification_receiver_up", { receiver: "b" })).toBe(0);
    expect(await metric(h.registry, "reclaim_operator_notifications_total", { receiver: "a", result: "delivered" })).toBe(2);
    expect(await metric(h.registry, "reclaim_operator_notifications_total", { receiver: "b", result: "retried" })).toBe(2);
    expect(await metric(h.registry, "reclaim_operator_notifications_total", { receiver: "b", result: "delivered" })).toBe(0);
    expect(await metric(h.registry, "reclaim_operator_notification_delivery_seconds_count", { receiver: "b" })).toBe(2);
    expect(await metric(h.registry, "reclaim_operator_notification_delivery_seconds_sum", { receiver: "b" })).toBe(8);
    expect(await metric(h.registry, "reclaim_operator_notification_delivery_seconds_count", { receiver: "a" })).toBe(2);
    b.mode = "up";
    await clock.run(10_000);
    await h.outbox.idle();
    expect(await metric(h.registry, "reclaim_operator_notification_receiver_up", { receiver: "b" })).toBe(1);
    expect(await metric(h.registry, "reclaim_operator_notifications_pending", { receiver: "b" })).toBe(0);
    expect(await metric(h.registry, "reclaim_operator_notifications_total", { receiver: "b", result: "delivered" })).toBe(2);
  });

  it("delivers through a real HTTP server with postJson: a 429 with Retry-After pauses the receiver, then the body arrives", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const bodies: unknown[] = [];
    let answers = [429, 200];
    const server: Server = createServer((req: IncomingMessage, res) => {
      let text = "";
      req.setEncoding("utf8").on("data", (c: string) => (text += c));
      req.on("end", () => {
        bodies.push(JSON.parse(text));
        const status = answers[0] ?? 200;
        answers = answers.slice(1);
        res.writeHead(status, status === 429 ? { "retry-after": "120" } : {}).end(status === 429 ? "slow down" : "ok");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const hook: Receiver = { name: "hook", type: "webhook", send: (n, signal) => postJson(url, { notice: n }, { signal, now: () => clock.now() }) };
      const h = make(dir, [hook], clock, { backoffMs: [1000, 1000] });
      await h.outbox.start();
      h.outbox.enqueue(notice("inc-1", T0), ["hook"]);
      await eventually(async () => (await metric(h.registry, "reclaim_operator_notifications_total", { receiver: "hook", result: "retried" })) === 1, 5000, "the 429");
      await clock.run(119_999);
      await h.outbox.settled();
      expect(bodies).toHaveLength(1);
      await clock.run(1);
      await eventually(async () => (await metric(h.registry, "reclaim_operator_notifications_total", { receiver: "hook", result: "delivered" })) === 1, 5000, "the delivery");
      expect(bodies).toEqual([{ notice: notice("inc-1", T0) }, { notice: notice("inc-1", T0) }]);
      await h.outbox.idle();
      expect(await filesUnder(dir)).toEqual([]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

const PROMTOOL = "/usr/bin/promtool";
describeNeeding(existsSync(PROMTOOL) ? null : `${PROMTOOL} is missing (apt-get install -y prometheus)`, "Outbox metrics and promtool", () => {
  it("pass promtool check metrics", async () => {
    const dir = await tempDir();
    const clock = new ManualClock(T0);
    const a = new FakeReceiver("a", clock);
    const h = make(dir, [a], clock);
    await h.outbox.start();
    h.outbox.enqueue(notice("inc-1", T0), ["a"]);
    await h.outbox.idle();
    const text = await h.registry.metrics();
    const result = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
      const child = spawn(PROMTOOL, ["check", "metrics"], { timeout: 10_000 });
      let out = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr.on("data", (c: Buffer) => (out += c.toString()));
      child.once("error", reject);
      child.once("close", (code) => resolve({ code, out }));
      child.stdin.end(text);
    });
    expect(result.out).toBe("");
    expect(result.code).toBe(0);
  });
});

// ---- the model ----------------------------------------------------------------

const MODEL_RUNS = Number(process.env.RECLAIM_MODEL_RUNS ?? 200);
const MODEL_SEED = Number(process.env.RECLAIM_MODEL_SEED ?? 20261213);
const RECEIVERS = ["a", "b", "c"] as const;
const SUBJECTS = ["inc-1", "inc-2", "circuit:lockout", "../../etc/passwd", "ü💥"];
const MODES = ["up", "down", "reject", "throttle"] as const;
const MODEL_MAX_PENDING = 2;

type Step =
  | { op: "enqueue"; subject: number; to: boolean[]; late: boolean }
  | { op: "drop"; subject: number; to: boolean[] }
  | { op: "mode"; receiver: number; mode: (typeof MODES)[number] }
  | { op: "advance"; ms: number }
  | { op: "restart" };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant("enqueue" as const), subject: fc.nat(SUBJECTS.length - 1), to: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }), late: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("drop" as const), subject: fc.nat(SUBJECTS.length - 1), to: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("mode" as const), receiver: fc.nat(RECEIVERS.length - 1), mode: fc.constantFrom(...MODES) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("advance" as const), ms: fc.constantFrom(0, 500, 2_000, 30_000, 70_000, 400_000) }) },
  { weight: 1, arbitrary: fc.constant({ op: "restart" as const }) },
);

/** A receiver the model drives: up, down (retryable), reject (permanent) or throttle (429, Retry-After 30 s). */
class ModelReceiver implements Receiver {
  readonly type = "webhook" as const;
  mode: (typeof MODES)[number] = "up";
  /** Per process generation: what it got, in order. */
  got: Notice[] = [];
  readonly everGot = new Set<string>();
  constructor(readonly name: string) {}
  send(n: Notice): Promise<Delivery> {
    if (this.mode === "up") {
      this.got.push(n);
      this.everGot.add(n.summary);
      return Promise.resolve({ ok: true });
    }
    if (this.mode === "reject") return Promise.resolve({ ok: false, permanent: true, retryAfterMs: null, detail: "HTTP 400" });
    return Promise.resolve({ ok: false, permanent: false, retryAfterMs: this.mode === "throttle" ? 30_000 : null, detail: "HTTP 503" });
  }
}

describe("Outbox model", () => {
  it("keeps its invariants under random interleavings of enqueue, receivers up and down, time and restarts", async () => {
    const modesArb = fc.array(fc.constantFrom(...MODES), { minLength: RECEIVERS.length, maxLength: RECEIVERS.length });
    const property = fc.asyncProperty(modesArb, fc.array(stepArb, { minLength: 1, maxLength: 30 }), async (modes, steps) => {
      const dir = await mkdtemp(join(tmpdir(), "reclaim-outbox-model-"));
      const clock = new ManualClock(T0);
      const receivers = RECEIVERS.map((n) => new ModelReceiver(n));
      receivers.forEach((r, i) => (r.mode = modes[i]!));
      const options: Partial<OutboxOptions> = { maxPendingPerReceiver: MODEL_MAX_PENDING, backoffMs: [1000, 60_000], maxAgeMs: 600_000, scanMs: 2_000, random: () => 0.5 };
      let h = make(dir, receivers, clock, options);
      await h.outbox.start();
      /** Per receiver|subject: the newest notice enqueued (by `at`). */
      const newest = new Map<string, Notice>();
      const dropsBefore = new Map<string, number>(RECEIVERS.map((r) => [r, 0]));
      let seq = 0;
      const drops = async (r: string): Promise<number> => {
        let n = dropsBefore.get(r)!;
        for (const result of ["dropped_permanent", "dropped_expired", "dropped_overflow"]) n += await metric(h.registry, "reclaim_operator_notifications_total", { receiver: r, result });
        return n;
      };
      const build = (subject: string, late: boolean, to: string[]): Notice => {
        seq++;
        const latest = Math.max(0, ...to.map((r) => Date.parse(newest.get(`${r}|${subject}`)?.at ?? "1970-01-01T00:00:00Z")));
        const at = late && latest > 0 ? latest - 1 - (seq % 5) : clock.now() + seq;
        const n = notice(subject, at, { summary: `n${seq}` });
        for (const r of to) {
          const prev = newest.get(`${r}|${subject}`);
          if (prev === undefined || Date.parse(prev.at) <= at) newest.set(`${r}|${subject}`, n);
        }
        return n;
      };
      const check = async (): Promise<void> => {
        await h.outbox.settled();
        // Dropped-in notices not picked up yet (the next scan takes them).
        const waiting = new Set<string>();
        for (const name of await readdir(join(dir, "new")).catch(() => [])) {
          if (!name.startsWith(".")) waiting.add((JSON.parse(await readFile(join(dir, "new", name), "utf8")) as { notice: Notice }).notice.summary);
        }
        for (const r of receivers) {
          const disk = await pendingOnDisk(dir, r.name);
          // One pending per (receiver, subject) — the map above refuses a second — and the gauge says the real count.
          expect(disk.size).toBe(h.outbox.pendingCount(r.name));
          expect(disk.size).toBeLessThanOrEqual(MODEL_MAX_PENDING);
          expect(await metric(h.registry, "reclaim_operator_notifications_pending", { receiver: r.name })).toBe(disk.size);
          for (const [subject, n] of disk) {
            const latest = newest.get(`${r.name}|${subject}`)!;
            // Pending is the newest state, unless the newest is still in new/, or already left (delivered, or dropped and counted) before a late older one came.
            if (n.summary !== latest.summary) {
              expect(Date.parse(n.at)).toBeLessThan(Date.parse(latest.at));
              expect(waiting.has(latest.summary) || r.everGot.has(latest.summary) || (await drops(r.name)) > 0).toBe(true);
            }
          }
          // Within one process, a receiver never gets an older state of a subject after a newer one.
          const seen = new Map<string, number>();
          for (const n of r.got) {
            expect(Date.parse(n.at)).toBeGreaterThanOrEqual(seen.get(n.subject) ?? -Infinity);
            seen.set(n.subject, Date.parse(n.at));
          }
        }
      };
      try {
        for (const step of steps) {
          const to = "to" in step ? RECEIVERS.filter((_, i) => step.to[i]) : [];
          if (step.op === "enqueue") h.outbox.enqueue(build(SUBJECTS[step.subject]!, step.late, to), to);
          else if (step.op === "drop" && to.length > 0) await dropNotice(dir, build(SUBJECTS[step.subject]!, false, to), to);
          else if (step.op === "mode") receivers[step.receiver]!.mode = step.mode;
          else if (step.op === "advance") await clock.run(step.ms);
          else if (step.op === "restart") {
            await stopDriven(h);
            for (const r of RECEIVERS) dropsBefore.set(r, await drops(r));
            for (const r of receivers) r.got = [];
            h = make(dir, receivers, clock, options);
            await h.outbox.start();
          }
          await check();
        }
        // Heal everything and give it time: every newest state is delivered, or counted as dropped.
        for (const r of receivers) r.mode = "up";
        for (let i = 0; i < 20 && (RECEIVERS.some((r) => h.outbox.pendingCount(r) > 0) || (await readdir(join(dir, "new")).catch(() => [])).length > 0); i++) {
          await clock.run(30_000);
          await h.outbox.settled();
        }
        await h.outbox.idle();
        await check();
        for (const r of receivers) {
          let undelivered = 0;
          for (const [key, n] of newest) if (key.startsWith(`${r.name}|`) && !r.everGot.has(n.summary)) undelivered++;
          expect(undelivered).toBeLessThanOrEqual(await drops(r.name));
        }
        expect(await filesUnder(dir)).toEqual([]);
      } finally {
        await stopDriven(h);
        await rm(dir, { recursive: true, force: true });
      }
    });
    await fc.assert(property, { numRuns: MODEL_RUNS, seed: MODEL_SEED, ...(process.env.RECLAIM_MODEL_PATH === undefined ? {} : { path: process.env.RECLAIM_MODEL_PATH }) });
  }, 600_000);
});
