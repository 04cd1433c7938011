/**
 * A model-based test of the notification outbox's lifecycle: real files in a
 * temp folder, two receivers whose answers the test sets (up, slow but
 * inside the deadline, down with 503, refusing with 400, hanging until the
 * attempt's deadline, or never answering at all), and one
 * ManualClock that runs the outbox's timers (backoff, deadlines, scans).
 *
 * fast-check draws up to 30 steps: notices for three subjects, each newer
 * than the last of its subject, queued for one receiver or both (also while
 * an older state of it is being sent to a slow receiver); receivers changing
 * how they answer; time passing; and restarts (stop, then a new
 * outbox on the same folder, as a new leader term builds one). A small model
 * keeps what was queued for whom.
 *
 * After every step, once the outbox's files are written:
 * - every call a receiver got is a notice queued for that receiver;
 * - per receiver and subject, the notices sent never go back to an older
 *   state, across restarts too;
 * - nothing is delivered twice;
 * - on disk, each receiver has one file per notice pending in memory, and
 *   each holds the newest state queued for its subject.
 * At the end, with every receiver up and time passing: nothing is pending
 * and no file is left, and each receiver's last call for each subject was
 * the newest state queued for it (delivered, or refused by the receiver).
 *
 * RECLAIM_OUTBOX_MODEL_RUNS (default 60) sequences from
 * RECLAIM_OUTBOX_MODEL_SEED (default fixed); a failure prints the seed and
 * path to replay it.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import fc from "fast-check";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { createOperatorLog } from "../../../src/operator/log.js";
import { Outbox } from "../../../src/operator/notify/outbox.js";
import type { Delivery, Notice, Receiver } from "../../../src/operator/notify/types.js";
import { ManualClock } from "../../support/clock.js";
import { notice } from "../../support/notice.js";

const T0 = Date.parse("2026-12-05T09:00:00Z");
const SUBJECTS = ["inc-a", "inc-b", "inc-c"] as const;
const RECEIVERS = ["am", "hook"] as const;
const BACKOFF: [number, number] = [1_000, 8_000];
const ATTEMPT_MS = 2_000;
/** A slow receiver's answer: inside the attempt's deadline. */
const SLOW_MS = 1_500;
const RUNS = Number(process.env.RECLAIM_OUTBOX_MODEL_RUNS ?? 60);
const SEED = Number(process.env.RECLAIM_OUTBOX_MODEL_SEED ?? 20261205);

type Mode = "up" | "slow" | "down" | "reject" | "hang" | "deaf";
type Step =
  | { kind: "enqueue"; subject: number; to: 0 | 1 | 2 }
  /** Two states of one subject, the second queued once the first is being sent (to a slow receiver: still in flight). */
  | { kind: "update"; subject: number; to: 0 | 1 | 2 }
  | { kind: "mode"; receiver: 0 | 1; mode: Mode }
  | { kind: "time"; ms: number }
  | { kind: "restart" };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("enqueue" as const), subject: fc.integer({ min: 0, max: 2 }), to: fc.constantFrom(0 as const, 1 as const, 2 as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("update" as const), subject: fc.integer({ min: 0, max: 2 }), to: fc.constantFrom(0 as const, 1 as const, 2 as const) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("mode" as const), receiver: fc.constantFrom(0 as const, 1 as const), mode: fc.constantFrom<Mode>("up", "slow", "slow", "down", "reject", "hang", "deaf") }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("time" as const), ms: fc.constantFrom(100, 1_000, 2_500, 9_000) }) },
  { weight: 1, arbitrary: fc.constant({ kind: "restart" as const }) },
);

interface Call {
  subject: string;
  at: number;
  result: "delivered" | "down" | "refused" | "hang";
  /** An answer that takes SLOW_MS on the clock (so newer states can be queued meanwhile). */
  slow: boolean;
}

/** A receiver the test steers: each call recorded with what it answered. */
class Steered implements Receiver {
  readonly type = "webhook" as const;
  mode: Mode = "up";
  readonly calls: Call[] = [];
  constructor(
    readonly name: string,
    private readonly clock: ManualClock,
  ) {}

  send(n: Notice, signal: AbortSignal): Promise<Delivery> {
    const mode = this.mode;
    const result = mode === "up" || mode === "slow" ? "delivered" : mode === "reject" ? "refused" : mode === "deaf" ? "hang" : mode;
    this.calls.push({ subject: n.subject, at: Date.parse(n.at), result, slow: mode === "slow" });
    if (mode === "up") return Promise.resolve({ ok: true });
    if (mode === "slow") return new Promise((resolve) => this.clock.after(SLOW_MS, () => resolve({ ok: true })));
    if (this.mode === "down") return Promise.resolve({ ok: false, permanent: false, retryAfterMs: null, detail: "HTTP 503" });
    if (this.mode === "reject") return Promise.resolve({ ok: false, permanent: true, retryAfterMs: null, detail: "HTTP 400" });
    if (mode === "deaf") return new Promise(() => undefined); // not even the abort: the outbox's own deadline ends it
    return new Promise((resolve) => signal.addEventListener("abort", () => resolve({ ok: false, permanent: false, retryAfterMs: null, detail: "no answer" }), { once: true }));
  }
}

const silentLog = (): ReturnType<typeof createOperatorLog> =>
  createOperatorLog({ pod: "model", level: "debug", streams: [new Writable({ write: (_c, _e, done) => done() })] });

/** The pending files of one receiver: subject → the notice's time. */
async function onDisk(dir: string, receiver: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let names: string[];
  try {
    names = await readdir(join(dir, receiver));
  } catch {
    return out;
  }
  for (const name of names) {
    if (name.startsWith(".")) continue; // a write under way (flushed() waited for ours)
    const { notice: n } = JSON.parse(await readFile(join(dir, receiver, name), "utf8")) as { notice: Notice };
    expect(name).toBe(`${createHash("sha256").update(n.subject).digest("hex")}.json`);
    out.set(n.subject, Date.parse(n.at));
  }
  return out;
}

class World {
  readonly clock = new ManualClock(T0);
  readonly receivers = RECEIVERS.map((name) => new Steered(name, this.clock));
  /** Per receiver and subject: the times queued, in order (each newer than the last). */
  readonly queued = new Map<string, Map<string, number[]>>(RECEIVERS.map((r) => [r, new Map()]));
  outbox!: Outbox;
  private seq = 0;

  constructor(readonly dir: string) {}

  async open(): Promise<void> {
    this.outbox = new Outbox({
      dir: this.dir,
      receivers: this.receivers,
      registry: new Registry(),
      log: silentLog(),
      timers: this.clock,
      random: () => 0.5,
      backoffMs: BACKOFF,
      attemptTimeoutMs: ATTEMPT_MS,
      scanMs: 2_000,
    });
    await this.outbox.start();
  }

  /** Stops the outbox, moving the clock only while real writes are done, so hanging attempts end by their deadline. */
  async close(): Promise<void> {
    let done = false;
    const stopping = this.outbox.stop().then(() => (done = true));
    for (let i = 0; !done; i++) {
      if (i > 100) throw new Error("stop() did not finish");
      await Promise.race([this.outbox.flushed(), stopping]);
      if (!done) await this.clock.run(1_000);
    }
    await stopping;
  }

  /** Queues the next state of a subject for one receiver or both, and lets the outbox start sending it. */
  private async enqueue(subjectIndex: number, toIndex: 0 | 1 | 2): Promise<void> {
    const subject = SUBJECTS[subjectIndex]!;
    const at = T0 + ++this.seq * 1_000;
    const to = toIndex === 2 ? [...RECEIVERS] : [RECEIVERS[toIndex]];
    for (const r of to) {
      const times = this.queued.get(r)!;
      times.set(subject, [...(times.get(subject) ?? []), at]);
    }
    this.outbox.enqueue(notice(subject, at), to);
    await this.clock.run(0);
  }

  async apply(s: Step): Promise<void> {
    if (s.kind === "enqueue") {
      await this.enqueue(s.subject, s.to);
    } else if (s.kind === "update") {
      await this.enqueue(s.subject, s.to);
      await this.enqueue(s.subject, s.to);
    } else if (s.kind === "mode") {
      this.receivers[s.receiver]!.mode = s.mode;
    } else if (s.kind === "time") {
      await this.clock.run(s.ms);
    } else {
      await this.close();
      await this.open();
      await this.clock.run(0);
    }
    await this.outbox.flushed();
  }

  /** What must hold at any moment, once the files are written. */
  async check(): Promise<void> {
    for (const receiver of this.receivers) {
      const queued = this.queued.get(receiver.name)!;
      const last = new Map<string, number>();
      const delivered = new Set<string>();
      for (const call of receiver.calls) {
        expect(queued.get(call.subject) ?? [], `${receiver.name} got ${call.subject} @${call.at}, never queued for it`).toContain(call.at);
        expect(call.at, `${receiver.name}: ${call.subject} went back to an older state`).toBeGreaterThanOrEqual(last.get(call.subject) ?? -Infinity);
        last.set(call.subject, call.at);
        if (call.result === "delivered") {
          const id = `${call.subject}@${call.at}`;
          expect(delivered.has(id), `${receiver.name}: ${id} delivered twice`).toBe(false);
          delivered.add(id);
        }
      }
      const files = await onDisk(this.dir, receiver.name);
      expect(files.size, `${receiver.name}: files on disk against notices pending`).toBe(this.outbox.pendingCount(receiver.name));
      for (const [subject, at] of files) expect(at, `${receiver.name}: the file of ${subject} is not its newest state`).toBe(queued.get(subject)!.at(-1));
    }
  }

  /** Every receiver up and time passing: everything leaves, each subject's newest state last. */
  async drain(): Promise<void> {
    for (const receiver of this.receivers) receiver.mode = "up";
    for (let i = 0; i < 20 && RECEIVERS.some((r) => this.outbox.pendingCount(r) > 0); i++) await this.clock.run(BACKOFF[1] + ATTEMPT_MS);
    await this.outbox.flushed();
    await this.check();
    for (const receiver of this.receivers) {
      expect(this.outbox.pendingCount(receiver.name), `${receiver.name}: still pending with the receiver up`).toBe(0);
      for (const [subject, times] of this.queued.get(receiver.name)!) {
        const calls = receiver.calls.filter((c) => c.subject === subject);
        const final = calls.at(-1);
        expect(final?.at, `${receiver.name}: the last call for ${subject} is not its newest state`).toBe(times.at(-1));
        expect(["delivered", "refused"], `${receiver.name}: ${subject} left without an answer`).toContain(final?.result);
      }
    }
  }
}

/** What the sequences exercised (printed with RECLAIM_OUTBOX_MODEL_STATS=1). */
const tally = { sequences: 0, restarts: 0, delivered: 0, slow: 0, down: 0, refused: 0, hang: 0 };

describe("the notification outbox, over random interleavings", () => {
  it(
    "sends each receiver only what was queued for it, never an older state after a newer one, nothing twice, the newest state at last",
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 30 }), async (steps) => {
          const dir = await mkdtemp(join(tmpdir(), "reclaim-outbox-model-"));
          const world = new World(dir);
          try {
            await world.open();
            for (const s of steps) {
              await world.apply(s);
              await world.check();
            }
            await world.drain();
            for (const r of world.receivers) for (const c of r.calls) tally[c.slow ? "slow" : c.result]++;
            tally.restarts += steps.filter((x) => x.kind === "restart").length;
            tally.sequences++;
          } finally {
            await world.close().catch(() => undefined);
            await rm(dir, { recursive: true, force: true });
          }
        }),
        { numRuns: RUNS, seed: SEED, endOnFailure: process.env.RECLAIM_OUTBOX_MODEL_SHRINK === "0" },
      );
      if (process.env.RECLAIM_OUTBOX_MODEL_STATS === "1") console.log(`outbox model: ${JSON.stringify(tally)}`);
    },
    120_000,
  );
});
