/**
 * The notification outbox (issue 13, ADR 23): notices go in synchronously,
 * off the remediation path, and come out at each receiver at least once, the
 * latest state of each subject, however slow or dead a receiver is. Each
 * receiver is a lane of its own (attempts, backoff, pause): one that fails
 * delays nobody else.
 *
 * On disk, under `dir` (the operator's state folder):
 * - `<receiver>/<sha256 of subject>.json`: one pending notice per receiver and
 *   subject, `{ "notice": Notice }`, written atomically and removed once
 *   delivered (or dropped). A restart delivers what is there: at least once.
 * - `new/*.json`: notices other processes hand in (`reclaim incidents ack`,
 *   through `dropNotice`): `{ "notice": Notice, "receivers"?: string[] }`,
 *   receivers omitted = the outbox's `route`. Files whose name starts with a
 *   dot are ignored (they are being written). Picked up every `scanMs`,
 *   persisted as pending, then removed.
 * - `rejected/`: files that were not a valid notice, moved aside and counted.
 *
 * Names under `dir` are built from receiver names (RECEIVER_NAME_PATTERN),
 * hashes and times only, never from notice text; `new` and `rejected` are
 * therefore not valid receiver names here.
 */
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, open, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { z } from "zod";
import { deadline, systemTimers, type Timers } from "../../contract/clock.js";
import { MAX_TIMER_MS } from "../../contract/duration.js";
import { writeFileAtomic } from "../atomic-file.js";
import { errorText, OperatorEvent, type OperatorLog } from "../log.js";
import { RECEIVER_NAME_PATTERN, type Delivery, type Notice, type Receiver } from "./types.js";

/** Largest notice file read (1 MiB): anything bigger is rejected unread. */
export const MAX_NOTICE_FILE_BYTES = 1 << 20;
/** The folder other processes drop notices into, under the outbox's `dir`. */
export const NEW_DIR = "new";
/** Where files that were not a valid notice are moved, under the outbox's `dir`. */
export const REJECTED_DIR = "rejected";
/** Names RECEIVER_NAME_PATTERN allows that the outbox refuses for a receiver: its own folders. */
export const RESERVED_RECEIVER_NAMES: readonly string[] = [NEW_DIR, REJECTED_DIR];
/** Repeated problems (a failing receiver, the disk, drops) are logged at the first and then at most this often. */
const LOG_EVERY_MS = 60_000;
/** Files written at once: enough to keep up with a burst, few enough not to swamp a slow disk. */
const WRITERS = 4;
/** Subjects remembered per receiver after they left the outbox (about 100 bytes each). */
const FINISHED_MEMORY = 10_000;
/** Drop files handled per scan, so one scan of a flooded folder stays short. */
const SCAN_BATCH = 500;

/** Why an outbox option is unusable (a TypeError naming it). */
export class OutboxOptionError extends TypeError {
  readonly code = "ERR_RECLAIM_OUTBOX_OPTION";
}

/** A notice `dropNotice` refused to write (not a valid Notice, or a bad receiver name). */
export class InvalidNoticeError extends TypeError {
  readonly code = "ERR_RECLAIM_NOTICE_INVALID";
}

const IsoTime = z.string().refine((s) => !Number.isNaN(Date.parse(s)), "not a date");

/** A Notice as read from a file (types.ts is the type; this checks it at the boundary). */
const NoticeSchema = z.object({
  subject: z.string().min(1),
  kind: z.enum(["incident", "circuit"]),
  rule: z.string(),
  userId: z.string().nullable(),
  pod: z.string().nullable(),
  namespace: z.string().nullable(),
  severity: z.enum(["critical", "high", "warning", "info"]),
  status: z.string(),
  needsHuman: z.boolean(),
  firing: z.boolean(),
  acknowledged: z.object({ by: z.string(), at: z.string() }).nullable(),
  summary: z.string(),
  description: z.string(),
  runbookUrl: z.string().nullable(),
  link: z.string().nullable(),
  startsAt: z.string(),
  endsAt: z.string().nullable(),
  at: IsoTime,
}) satisfies z.ZodType<Notice>;
// A field added to Notice but not here would be stripped from every file read: fail the build instead.
const _noticeFieldsCovered: Notice extends z.infer<typeof NoticeSchema> ? true : never = true;

const NoticeFile = z.object({
  notice: NoticeSchema,
  receivers: z.array(z.string().regex(RECEIVER_NAME_PATTERN)).max(64).optional(),
});

/** How a notice left the outbox (or was tried): the `result` label. */
type Result = "delivered" | "retried" | "dropped_permanent" | "dropped_expired" | "dropped_overflow";
const RESULTS: readonly Result[] = ["delivered", "retried", "dropped_permanent", "dropped_expired", "dropped_overflow"];

/** What the outbox needs. */
export interface OutboxOptions {
  /** The outbox folder (created as needed), e.g. `<state>/outbox`. */
  dir: string;
  /** Where notices go; names unique, matching RECEIVER_NAME_PATTERN, not `new` or `rejected`. */
  receivers: readonly Receiver[];
  /** Where the outbox registers its metrics (reused if a previous outbox registered them). */
  registry: Registry;
  log: OperatorLog;
  /** Default `systemTimers`. */
  timers?: Timers;
  /** Jitter source in [0, 1). Default `Math.random`. */
  random?: () => number;
  /** Deadline of one delivery attempt, and of stop()'s final flush. Default 10 s. */
  attemptTimeoutMs?: number;
  /**
   * Retry backoff [first, largest], full jitter: doubles with each failed
   * attempt of a notice (its next attempt), and with each failure of its
   * receiver in a row (the whole receiver waits; a delivery resets it).
   * Default [1 s, 5 min].
   */
  backoffMs?: readonly [number, number];
  /** A notice older than this (by its `at`) is dropped, not delivered. Default 24 h. */
  maxAgeMs?: number;
  /** Pending notices kept per receiver; beyond it the oldest is dropped. Default 10,000. */
  maxPendingPerReceiver?: number;
  /** Attempts at once per receiver. Default 2. */
  concurrency?: number;
  /** How often `dir/new/` is read (and failed writes retried). Default 2 s. */
  scanMs?: number;
  /** Receivers of a dropped-in notice that names none. Default: every receiver. */
  route?: (notice: Notice) => readonly string[];
  /** How a pending file is written. Default `writeFileAtomic`; tests pass a disk that hangs. */
  writeFile?: (path: string, data: string) => Promise<void>;
  /**
   * Told when no receiver has a notice of a subject pending any more: with
   * the newest notice of it that left, and whether each receiver's last
   * notice of it was delivered (false when one was dropped). Kubernetes mode
   * records it on the incident (mark-writer.ts). Runs inside the outbox:
   * must be quick; what it throws is logged.
   */
  onSettled?: (notice: Notice, delivered: boolean) => void;
}

interface Entry {
  readonly hash: string;
  notice: Notice;
  atMs: number;
  /** Bumped when a newer notice replaces this one, so an attempt knows whether it delivered the latest. */
  version: number;
  attempts: number;
  nextAt: number;
  inFlight: boolean;
}

/** Logs a repeated problem at its first occurrence and then at most once a minute, with the count since the last line. */
class Every {
  private last = -Infinity;
  private count = 0;
  /** Notes one occurrence; returns how many to report if a line is due now, else null. */
  hit(now: number): number | null {
    this.count++;
    if (now - this.last < LOG_EVERY_MS) return null;
    const n = this.count;
    this.count = 0;
    this.last = now;
    return n;
  }
  reset(): void {
    this.last = -Infinity;
    this.count = 0;
  }
}

interface Lane {
  readonly receiver: Receiver;
  /** By subject hash; insertion order is age (a replaced notice moves to the end). */
  readonly pending: Map<string, Entry>;
  /**
   * The newest `at` per subject hash that left the outbox (delivered or
   * dropped), so that a late older state is not sent after it. Forgotten once
   * older than maxAge (an older notice would be expired anyway) or beyond
   * FINISHED_MEMORY subjects.
   */
  readonly finished: Map<string, number>;
  inFlight: number;
  pausedUntil: number;
  failedSinceDelivery: number;
  readonly failing: Every;
  readonly drops: Map<Result, Every>;
  cancelWake: (() => void) | null;
  pumpQueued: boolean;
}

interface Metrics {
  total: Counter<"receiver" | "result">;
  pending: Gauge<"receiver">;
  up: Gauge<"receiver">;
  seconds: Histogram<"receiver">;
  diskErrors: Counter;
  rejected: Counter;
}

/**
 * Delivers notices to receivers, at least once, never on the caller's path.
 * Started once and stopped once (a new term builds a new one on the same
 * folder). `enqueue` works before `start` (delivered from start) and after
 * `stop` (written to disk for the next process). Options and their defaults
 * are on `OutboxOptions`.
 */
export class Outbox {
  private readonly dir: string;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly log: OperatorLog;
  private readonly attemptTimeoutMs: number;
  private readonly backoffMs: readonly [number, number];
  private readonly maxAgeMs: number;
  private readonly maxPending: number;
  private readonly concurrency: number;
  private readonly scanMs: number;
  private readonly route: (notice: Notice) => readonly string[];
  private readonly writeFile: (path: string, data: string) => Promise<void>;
  private readonly lanes = new Map<string, Lane>();
  private readonly m: Metrics;

  private state: "new" | "loading" | "running" | "stopped" = "new";
  private cancelScan: (() => void) | null = null;
  private scanning = false;
  private readonly attempts = new Set<Promise<void>>();
  /** `<receiver>/<hash>` whose file must be brought in line with memory (written, or removed). */
  private readonly dirty = new Set<string>();
  private readonly writing = new Set<string>();
  private readonly failedWrites = new Set<string>();
  private readonly waiters = new Set<{ done: () => boolean; resolve: () => void }>();
  private readonly diskLog = new Every();
  private readonly problemLog = new Every();
  private readonly onSettled: ((notice: Notice, delivered: boolean) => void) | null;
  /**
   * Subjects that left some lane while another still has them pending, by
   * hash: the newest notice that left, and how each lane's last one left.
   * Bounded by what is pending.
   */
  private readonly leaving = new Map<string, { notice: Notice; atMs: number; delivered: Map<string, boolean> }>();

  constructor(options: OutboxOptions) {
    this.dir = options.dir;
    this.timers = options.timers ?? systemTimers;
    this.random = options.random ?? Math.random;
    this.log = options.log;
    this.attemptTimeoutMs = positive("attemptTimeoutMs", options.attemptTimeoutMs ?? 10_000);
    const [first, largest] = options.backoffMs ?? [1_000, 300_000];
    this.backoffMs = [positive("backoffMs[0]", first), positive("backoffMs[1]", largest)];
    if (largest < first) throw new OutboxOptionError(`Outbox: backoffMs must be [first, largest] with first <= largest, got [${first}, ${largest}]`);
    this.maxAgeMs = positive("maxAgeMs", options.maxAgeMs ?? 86_400_000);
    this.maxPending = positive("maxPendingPerReceiver", options.maxPendingPerReceiver ?? 10_000);
    this.concurrency = positive("concurrency", options.concurrency ?? 2);
    this.scanMs = positive("scanMs", options.scanMs ?? 2_000);
    this.route = options.route ?? (() => [...this.lanes.keys()]);
    this.writeFile = options.writeFile ?? writeFileAtomic;
    this.onSettled = options.onSettled ?? null;
    for (const receiver of options.receivers) {
      const name = receiver.name;
      if (!RECEIVER_NAME_PATTERN.test(name) || RESERVED_RECEIVER_NAMES.includes(name)) {
        throw new OutboxOptionError(`Outbox: receiver name ${JSON.stringify(name)} must match ${String(RECEIVER_NAME_PATTERN)} and not be "${NEW_DIR}" or "${REJECTED_DIR}"`);
      }
      if (this.lanes.has(name)) throw new OutboxOptionError(`Outbox: receiver name ${JSON.stringify(name)} is used twice`);
      this.lanes.set(name, {
        receiver,
        pending: new Map(),
        finished: new Map(),
        inFlight: 0,
        pausedUntil: -Infinity,
        failedSinceDelivery: 0,
        failing: new Every(),
        drops: new Map(RESULTS.map((r) => [r, new Every()])),
        cancelWake: null,
        pumpQueued: false,
      });
    }
    this.m = createMetrics(options.registry);
    for (const name of this.lanes.keys()) {
      this.m.pending.set({ receiver: name }, 0);
      for (const result of RESULTS) this.m.total.inc({ receiver: name, result }, 0);
    }
  }

  /**
   * Queues `notice` for the named receivers. Synchronous and never throws:
   * the file is written and the receivers are called later. A pending notice
   * of the same subject is replaced unless it is newer (by `at`). Unknown
   * receiver names are logged and skipped. The outbox keeps a copy.
   */
  enqueue(notice: Notice, receiverNames: readonly string[]): void {
    try {
      const atMs = Date.parse(notice.at);
      if (Number.isNaN(atMs)) {
        for (const name of receiverNames) {
          const lane = this.lanes.get(name);
          if (lane !== undefined) this.count(lane, "dropped_permanent", `its time ${JSON.stringify(notice.at)} is not a date`, notice.subject);
        }
        return;
      }
      const copy = structuredClone(notice);
      for (const name of receiverNames) {
        const lane = this.lanes.get(name);
        if (lane === undefined) this.problem(`A notice names receiver ${JSON.stringify(name)}, which is not configured; skipped for it`);
        else this.admit(lane, copy, atMs, false);
      }
    } catch (err) {
      // Enqueue runs on the ladder's path: a fault here must cost a notice (logged), never a rung.
      this.problem(`Could not queue notice ${JSON.stringify(short(String(notice?.subject)))}: ${errorText(err)}`);
    }
  }

  /** Loads the notices pending on disk (a previous process's), then delivers and watches `dir/new/`. */
  async start(): Promise<void> {
    if (this.state !== "new") return;
    this.state = "loading";
    try {
      await this.load();
    } finally {
      if (this.state === "loading") this.state = "running";
      this.changed();
    }
    if (this.state !== "running") return;
    this.cancelScan = this.timers.every(this.scanMs, () => this.scanSafely());
    for (const lane of this.lanes.values()) this.pump(lane);
    this.scanSafely();
  }

  /**
   * Stops delivering: no new attempt starts, attempts in flight end (each by
   * its deadline), and pending notices are written to disk (waiting at most
   * `attemptTimeoutMs` for a slow disk) for the next process.
   */
  async stop(): Promise<void> {
    this.state = "stopped";
    this.cancelScan?.();
    this.cancelScan = null;
    for (const lane of this.lanes.values()) {
      lane.cancelWake?.();
      lane.cancelWake = null;
    }
    await Promise.all([...this.attempts]);
    for (const key of this.failedWrites) this.markDirty(key);
    const flush = deadline(this.timers, this.attemptTimeoutMs);
    try {
      await Promise.race([this.until(() => this.writesIdle()), new Promise((resolve) => flush.signal.addEventListener("abort", resolve, { once: true }))]);
    } finally {
      flush.release();
    }
    if (!this.writesIdle() || this.failedWrites.size > 0) {
      this.log.error(
        OperatorEvent.notifyDiskError,
        { unwritten: this.dirty.size + this.writing.size + this.failedWrites.size },
        `Stopped with ${this.dirty.size + this.writing.size + this.failedWrites.size} notice file(s) not brought up to date; what is on disk is delivered at the next start`,
      );
    }
  }

  /** For tests: resolves when nothing is pending, in flight, being written, loaded or scanned. */
  idle(): Promise<void> {
    return this.until(() => this.quiet() && this.pendingTotal() === 0);
  }

  /** For tests: resolves when nothing is in flight, being written, loaded or scanned (notices may still wait to be retried). */
  settled(): Promise<void> {
    return this.until(() => this.quiet());
  }

  /** For tests: resolves when no notice file is queued for writing or being written. */
  flushed(): Promise<void> {
    return this.until(() => this.writesIdle());
  }

  /** Notices pending for `receiver` now (in memory; the disk follows). */
  pendingCount(receiver: string): number {
    return this.lanes.get(receiver)?.pending.size ?? 0;
  }

  // ---- queueing -------------------------------------------------------------

  private admit(lane: Lane, notice: Notice, atMs: number, onDisk: boolean): void {
    const hash = subjectHash(notice.subject);
    const finished = lane.finished.get(hash);
    if (finished !== undefined && atMs < finished) return; // a newer state of it was already delivered (or dropped)
    const current = lane.pending.get(hash);
    if (current !== undefined) {
      // From disk, the same time is the same state (what memory has was queued since): keep its place in line.
      if (atMs < current.atMs || (onDisk && atMs === current.atMs)) return;
      current.notice = notice;
      current.atMs = atMs;
      current.version++;
      lane.pending.delete(hash);
      lane.pending.set(hash, current);
    } else {
      if (lane.pending.size >= this.maxPending) this.overflow(lane);
      lane.pending.set(hash, { hash, notice, atMs, version: 0, attempts: 0, nextAt: -Infinity, inFlight: false });
      this.m.pending.set({ receiver: lane.receiver.name }, lane.pending.size);
    }
    if (!onDisk) this.markDirty(fileKey(lane, hash));
    if (this.state === "running" && !lane.pumpQueued) {
      // Not now: a receiver's send must not run inside the caller's enqueue.
      lane.pumpQueued = true;
      queueMicrotask(() => {
        lane.pumpQueued = false;
        this.pump(lane);
      });
    }
  }

  private overflow(lane: Lane): void {
    let victim: Entry | undefined;
    for (const entry of lane.pending.values()) {
      if (!entry.inFlight) {
        victim = entry;
        break;
      }
    }
    victim ??= lane.pending.values().next().value!;
    this.remove(lane, victim, false);
    this.count(lane, "dropped_overflow", `more than ${this.maxPending} notices pending`, victim.notice.subject);
  }

  private remove(lane: Lane, entry: Entry, delivered: boolean): void {
    lane.pending.delete(entry.hash);
    this.m.pending.set({ receiver: lane.receiver.name }, lane.pending.size);
    this.markDirty(fileKey(lane, entry.hash));
    this.finish(lane, entry.hash, entry.atMs);
    this.left(lane, entry, delivered);
  }

  /** An entry left its lane: once no lane has its subject pending, `onSettled` hears of it. */
  private left(lane: Lane, entry: Entry, delivered: boolean): void {
    if (this.onSettled === null) return;
    let leaving = this.leaving.get(entry.hash);
    if (leaving === undefined) {
      leaving = { notice: entry.notice, atMs: entry.atMs, delivered: new Map() };
      this.leaving.set(entry.hash, leaving);
    } else if (entry.atMs >= leaving.atMs) {
      leaving.notice = entry.notice;
      leaving.atMs = entry.atMs;
    }
    leaving.delivered.set(lane.receiver.name, delivered);
    for (const other of this.lanes.values()) if (other.pending.has(entry.hash)) return;
    this.leaving.delete(entry.hash);
    try {
      this.onSettled(leaving.notice, [...leaving.delivered.values()].every(Boolean));
    } catch (err) {
      this.problem(`Could not hand on the delivery of notice ${JSON.stringify(short(leaving.notice.subject))}: ${errorText(err)}`);
    }
  }

  private finish(lane: Lane, hash: string, atMs: number): void {
    const { finished } = lane;
    const before = finished.get(hash) ?? -Infinity;
    finished.delete(hash);
    finished.set(hash, Math.max(before, atMs));
    const now = this.timers.now();
    for (const [h, at] of finished) {
      if (finished.size <= FINISHED_MEMORY && at + this.maxAgeMs >= now) break;
      finished.delete(h);
    }
  }

  /** Counts a drop and logs it (the first, then once a minute per receiver and reason, with the count). */
  private count(lane: Lane, result: Result, why: string, subject: string): void {
    const name = lane.receiver.name;
    this.m.total.inc({ receiver: name, result });
    const n = lane.drops.get(result)!.hit(this.timers.now());
    if (n === null) return;
    this.log.error(
      OperatorEvent.notifyDropped,
      { receiver: name, result, dropped: n, subject: short(subject) },
      `Dropped ${n === 1 ? "a notice" : `${n} notices (since the last line)`} for receiver ${name}, not delivered: ${why} (latest: ${JSON.stringify(short(subject))})`,
    );
  }

  // ---- delivering -----------------------------------------------------------

  /** Starts what is due (up to `concurrency`), drops what expired, and sets the timer for what comes next. */
  private pump(lane: Lane): void {
    lane.cancelWake?.();
    lane.cancelWake = null;
    if (this.state !== "running") return;
    const now = this.timers.now();
    let wake = Infinity;
    for (const entry of lane.pending.values()) {
      if (entry.inFlight) continue;
      const expires = entry.atMs + this.maxAgeMs;
      if (now > expires) {
        this.remove(lane, entry, false);
        this.count(lane, "dropped_expired", `older than ${this.maxAgeMs} ms`, entry.notice.subject);
        continue;
      }
      const due = Math.max(entry.nextAt, lane.pausedUntil);
      if (due <= now) {
        // Full: the end of an attempt in flight (by its deadline at the latest) pumps again; no timer needed.
        if (lane.inFlight >= this.concurrency) return this.changed();
        this.attempt(lane, entry);
        continue;
      }
      wake = Math.min(wake, due, expires + 1);
    }
    if (wake !== Infinity) lane.cancelWake = this.timers.after(Math.min(MAX_TIMER_MS, wake - now), () => this.pump(lane));
    this.changed();
  }

  private attempt(lane: Lane, entry: Entry): void {
    entry.inFlight = true;
    lane.inFlight++;
    const { notice, version, atMs } = entry;
    const started = this.timers.now();
    const task = this.send(lane.receiver, notice).then((result) => this.settle(lane, entry, version, atMs, result, started));
    this.attempts.add(task);
    void task.finally(() => {
      this.attempts.delete(task);
      this.changed();
    });
  }

  /** One call, ended by the outbox's own deadline even if the receiver ignores its signal. */
  private async send(receiver: Receiver, notice: Notice): Promise<Delivery> {
    const call = deadline(this.timers, this.attemptTimeoutMs);
    const late = new Promise<Delivery>((resolve) =>
      call.signal.addEventListener(
        "abort",
        () => resolve({ ok: false, permanent: false, retryAfterMs: null, detail: `no answer within ${this.attemptTimeoutMs} ms` }),
        { once: true },
      ),
    );
    try {
      return await Promise.race([Promise.resolve().then(() => receiver.send(notice, call.signal)), late]);
    } catch (err) {
      return { ok: false, permanent: false, retryAfterMs: null, detail: `the receiver failed: ${errorText(err)}` };
    } finally {
      call.release();
    }
  }

  private settle(lane: Lane, entry: Entry, version: number, atMs: number, result: Delivery, started: number): void {
    entry.inFlight = false;
    lane.inFlight--;
    const name = lane.receiver.name;
    const now = this.timers.now();
    this.m.seconds.observe({ receiver: name }, Math.max(0, now - started) / 1000);
    const latest = lane.pending.get(entry.hash) === entry && entry.version === version;
    if (result.ok) {
      this.m.total.inc({ receiver: name, result: "delivered" });
      this.m.up.set({ receiver: name }, 1);
      if (lane.failedSinceDelivery > 0) {
        this.log.info(
          OperatorEvent.notifyRecovered,
          { receiver: name, failures: lane.failedSinceDelivery },
          `Receiver ${name} delivers again, after ${lane.failedSinceDelivery} failed attempt(s)`,
        );
        lane.failedSinceDelivery = 0;
        lane.failing.reset();
      }
      if (latest) this.remove(lane, entry, true);
      else this.finish(lane, entry.hash, atMs);
    } else if (result.permanent) {
      this.m.up.set({ receiver: name }, 0);
      if (latest) this.remove(lane, entry, false);
      this.count(lane, "dropped_permanent", `the receiver refused it: ${result.detail}`, entry.notice.subject);
    } else {
      this.m.up.set({ receiver: name }, 0);
      this.m.total.inc({ receiver: name, result: "retried" });
      entry.attempts++;
      lane.failedSinceDelivery++;
      const [first, largest] = this.backoffMs;
      const jitter = this.random();
      const backoff = (failures: number): number => Math.floor(jitter * Math.min(largest, first * 2 ** Math.min(failures - 1, 40)));
      entry.nextAt = now + backoff(entry.attempts);
      // The receiver backs off as a whole too: a dead one is asked about once per backoff, not once per pending
      // notice; and one that says when to come back (Retry-After) is asked nothing before then.
      lane.pausedUntil = Math.max(lane.pausedUntil, now + backoff(lane.failedSinceDelivery), now + (result.retryAfterMs ?? 0));
      const n = lane.failing.hit(now);
      if (n !== null) {
        this.log.warn(
          OperatorEvent.notifyFailing,
          { receiver: name, type: lane.receiver.type, failures: lane.failedSinceDelivery, pending: lane.pending.size },
          `Receiver ${name} is failing (${lane.failedSinceDelivery} failed attempt(s) since its last delivery, ${lane.pending.size} notice(s) pending); retrying with backoff: ${result.detail}`,
        );
      }
    }
    this.pump(lane);
  }

  // ---- disk -----------------------------------------------------------------

  private markDirty(key: string): void {
    this.failedWrites.delete(key);
    this.dirty.add(key);
    this.kickWriters();
  }

  private kickWriters(): void {
    while (this.writing.size < WRITERS) {
      let key: string | undefined;
      for (const k of this.dirty) {
        if (!this.writing.has(k)) {
          key = k;
          break;
        }
      }
      if (key === undefined) return;
      const taken = key;
      this.dirty.delete(taken);
      this.writing.add(taken);
      void this.persist(taken).finally(() => {
        this.writing.delete(taken);
        this.kickWriters();
        this.changed();
      });
    }
  }

  /** Brings one file in line with memory: the pending notice, or no file. */
  private async persist(key: string): Promise<void> {
    const [name, hash] = key.split("/") as [string, string];
    const entry = this.lanes.get(name)?.pending.get(hash);
    const path = join(this.dir, name, `${hash}.json`);
    try {
      if (entry !== undefined) await this.writeFile(path, `${JSON.stringify({ notice: entry.notice })}\n`);
      else await rm(path, { force: true });
    } catch (err) {
      // The notice stays pending in memory and is delivered; only a restart before the disk recovers could lose it.
      this.failedWrites.add(key);
      this.diskError(`Could not ${entry === undefined ? "remove" : "write"} a notice file of receiver ${name} (kept in memory, tried again every ${this.scanMs} ms): ${errorText(err)}`);
    }
  }

  private diskError(message: string): void {
    this.m.diskErrors.inc();
    const n = this.diskLog.hit(this.timers.now());
    if (n !== null) this.log.error(OperatorEvent.notifyDiskError, { errors: n }, n === 1 ? message : `${message} (${n} disk errors since the last line)`);
  }

  private problem(message: string): void {
    const n = this.problemLog.hit(this.timers.now());
    if (n !== null) this.log.error(OperatorEvent.notifyDropped, { occurrences: n }, n === 1 ? message : `${message} (${n} times since the last line)`);
  }

  private async load(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as { code?: unknown }).code !== "ENOENT") this.diskError(`Could not read the outbox ${this.dir}; notices left by the last process are not delivered: ${errorText(err)}`);
      return;
    }
    for (const name of names.sort()) {
      if (name === NEW_DIR || name === REJECTED_DIR || name.startsWith(".")) continue;
      const lane = this.lanes.get(name);
      let files: string[];
      try {
        files = await readdir(join(this.dir, name));
      } catch (err) {
        if ((err as { code?: unknown }).code !== "ENOTDIR") this.diskError(`Could not read the outbox folder of ${name}: ${errorText(err)}`);
        continue;
      }
      if (lane === undefined) {
        if (files.length > 0) {
          this.log.warn(OperatorEvent.notifyDropped, { receiver: name, files: files.length }, `${files.length} notice file(s) wait for receiver ${name}, which is not configured; left on disk`);
        }
        continue;
      }
      for (const file of files) {
        const path = join(this.dir, name, file);
        if (file.startsWith(".") && file.endsWith(".tmp")) {
          // A write the last process did not finish; not one of ours still running (notices queued before start).
          if (!this.writing.has(fileKey(lane, file.slice(1, 65)))) await rm(path, { force: true }).catch(() => undefined);
          continue;
        }
        const hash = /^([0-9a-f]{64})\.json$/.exec(file)?.[1];
        if (hash === undefined) continue;
        const read = await readNoticeFile(path);
        if (read === null) continue;
        if (typeof read === "string" || read.receivers !== undefined || subjectHash(read.notice.subject) !== hash) {
          await this.reject(path, typeof read === "string" ? read : "not a pending notice of this name");
          continue;
        }
        this.admit(lane, read.notice, Date.parse(read.notice.at), true);
      }
    }
  }

  private scanSafely(): void {
    this.scan().catch((err: unknown) => this.problem(`Could not read the outbox's new notices: ${errorText(err)}`));
  }

  /** Reads `dir/new/` and queues what other processes dropped there. */
  private async scan(): Promise<void> {
    if (this.scanning || this.state !== "running") return;
    this.scanning = true;
    try {
      for (const key of this.failedWrites) this.markDirty(key);
      let names: string[];
      try {
        names = await readdir(join(this.dir, NEW_DIR));
      } catch (err) {
        if ((err as { code?: unknown }).code !== "ENOENT") this.diskError(`Could not read ${join(this.dir, NEW_DIR)}: ${errorText(err)}`);
        return;
      }
      for (const name of names.filter((n) => !n.startsWith(".")).sort().slice(0, SCAN_BATCH)) {
        if (this.state !== "running") return;
        await this.take(join(this.dir, NEW_DIR, name));
      }
    } finally {
      this.scanning = false;
      this.changed();
    }
  }

  private async take(path: string): Promise<void> {
    const read = await readNoticeFile(path);
    if (read === null) return;
    if (typeof read === "string") return this.reject(path, read);
    let names: readonly string[];
    if (read.receivers !== undefined) names = read.receivers;
    else {
      try {
        names = this.route(read.notice);
      } catch (err) {
        this.problem(`Could not route a dropped notice (left in place, tried again): ${errorText(err)}`);
        return;
      }
    }
    const lanes = names.map((n) => this.lanes.get(n)).filter((l) => l !== undefined);
    if (read.receivers !== undefined && lanes.length < names.length) {
      const unknown = names.filter((n) => !this.lanes.has(n));
      if (lanes.length === 0) return this.reject(path, `names no configured receiver (${unknown.join(", ")})`);
      this.problem(`A dropped notice names receivers that are not configured (${unknown.join(", ")}); delivered to the others`);
    }
    const atMs = Date.parse(read.notice.at);
    for (const lane of lanes) this.admit(lane, read.notice, atMs, false);
    const keys = lanes.map((l) => fileKey(l, subjectHash(read.notice.subject)));
    await this.until(() => keys.every((k) => !this.dirty.has(k) && !this.writing.has(k)));
    // Removed only once its notice is pending on disk; if a write failed, the next scan takes it again.
    if (keys.some((k) => this.failedWrites.has(k))) return;
    try {
      await rm(path, { force: true });
    } catch (err) {
      this.diskError(`Could not remove ${path} after queueing it (it may be delivered twice): ${errorText(err)}`);
    }
  }

  private async reject(path: string, reason: string): Promise<void> {
    const target = join(this.dir, REJECTED_DIR, `${this.timers.now()}-${sha256(path).slice(0, 16)}.json`);
    try {
      await mkdir(join(this.dir, REJECTED_DIR), { recursive: true });
      await rename(path, target);
    } catch (err) {
      this.diskError(`Could not move the invalid notice file ${path} aside: ${errorText(err)}`);
      return;
    }
    this.m.rejected.inc();
    this.log.error(OperatorEvent.notifyRejected, { file: target }, `Not a valid notice file (${reason}); moved to ${target}`);
  }

  // ---- waiting --------------------------------------------------------------

  private writesIdle(): boolean {
    return this.dirty.size === 0 && this.writing.size === 0;
  }

  private quiet(): boolean {
    return this.attempts.size === 0 && this.writesIdle() && !this.scanning && this.state !== "loading";
  }

  private pendingTotal(): number {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.pending.size;
    return n;
  }

  private until(done: () => boolean): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.add({ done, resolve }));
  }

  private changed(): void {
    for (const waiter of this.waiters) {
      if (waiter.done()) {
        this.waiters.delete(waiter);
        waiter.resolve();
      }
    }
  }
}

/**
 * Hands a notice to a running outbox from another process (the CLI): writes
 * `dir/new/<time>-<random>.json` atomically; the outbox picks it up within
 * its `scanMs`. `receivers` omitted = the outbox routes it. Returns the
 * file's path. Throws an `InvalidNoticeError` for a notice the outbox would
 * reject, and the write's error (with its cause) when the disk fails.
 */
export async function dropNotice(dir: string, notice: Notice, receivers?: readonly string[]): Promise<string> {
  const parsed = NoticeFile.safeParse(receivers === undefined ? { notice } : { notice, receivers });
  if (!parsed.success) throw new InvalidNoticeError(`not a valid notice: ${issues(parsed.error)}`);
  const data = `${JSON.stringify(parsed.data)}\n`;
  if (Buffer.byteLength(data) > MAX_NOTICE_FILE_BYTES) throw new InvalidNoticeError(`notice is larger than ${MAX_NOTICE_FILE_BYTES} bytes`);
  const path = join(dir, NEW_DIR, `${Date.now()}-${randomBytes(8).toString("hex")}.json`);
  await writeFileAtomic(path, data);
  return path;
}

/** The notice in a file; a string saying why it is not one; null when the file is gone. */
async function readNoticeFile(path: string): Promise<z.infer<typeof NoticeFile> | string | null> {
  let text: string;
  try {
    const info = await lstat(path);
    if (!info.isFile()) return "not a regular file";
    if (info.size > MAX_NOTICE_FILE_BYTES) return `larger than ${MAX_NOTICE_FILE_BYTES} bytes`;
    // No FIFO or link gets opened (either could hang the scan or read elsewhere).
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      text = await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  } catch (err) {
    if ((err as { code?: unknown }).code === "ENOENT") return null;
    return `unreadable: ${(err as { code?: unknown }).code as string}`;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return "not JSON";
  }
  const parsed = NoticeFile.safeParse(json);
  return parsed.success ? parsed.data : issues(parsed.error);
}

/** Where a schema refused input, by path only: the values are untrusted text. */
function issues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.join(".") || "(root)"}: ${i.code}`)
    .join("; ");
}

function createMetrics(registry: Registry): Metrics {
  const reuse = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  const registers = [registry];
  return {
    total: reuse(
      "reclaim_operator_notifications_total",
      () =>
        new Counter({
          name: "reclaim_operator_notifications_total",
          help: "Notice delivery attempts and drops per receiver, by result: delivered, retried, dropped_permanent, dropped_expired, dropped_overflow.",
          labelNames: ["receiver", "result"],
          registers,
        }),
    ),
    pending: reuse(
      "reclaim_operator_notifications_pending",
      () => new Gauge({ name: "reclaim_operator_notifications_pending", help: "Notices waiting to be delivered, per receiver.", labelNames: ["receiver"], registers }),
    ),
    up: reuse(
      "reclaim_operator_notification_receiver_up",
      () =>
        new Gauge({
          name: "reclaim_operator_notification_receiver_up",
          help: "1 if the receiver's last delivery attempt succeeded, 0 if it failed (absent before the first attempt).",
          labelNames: ["receiver"],
          registers,
        }),
    ),
    seconds: reuse(
      "reclaim_operator_notification_delivery_seconds",
      () =>
        new Histogram({
          name: "reclaim_operator_notification_delivery_seconds",
          help: "Duration of one delivery attempt, per receiver.",
          labelNames: ["receiver"],
          buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
          registers,
        }),
    ),
    diskErrors: reuse(
      "reclaim_operator_notification_disk_errors_total",
      () =>
        new Counter({
          name: "reclaim_operator_notification_disk_errors_total",
          help: "Outbox files that could not be written, removed or read (the notices stay pending in memory).",
          registers,
        }),
    ),
    rejected: reuse(
      "reclaim_operator_notification_files_rejected_total",
      () =>
        new Counter({
          name: "reclaim_operator_notification_files_rejected_total",
          help: "Notice files that were not a valid notice, moved to the outbox's rejected/ folder.",
          registers,
        }),
    ),
  };
}

function positive(what: string, value: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) throw new OutboxOptionError(`Outbox: ${what} must be a positive number, got ${String(value)}`);
  return value;
}

/** A subject as logged: ids are short; a hostile one must not make a megabyte line. */
function short(text: string): string {
  return text.length <= 200 ? text : `${text.slice(0, 200)}…`;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function subjectHash(subject: string): string {
  return sha256(subject);
}

function fileKey(lane: Lane, hash: string): string {
  return `${lane.receiver.name}/${hash}`;
}
