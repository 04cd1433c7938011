/**
 * The operator's view of on-call's holds (ADR 22): the silences and the
 * pause last read from their store, which of them hold now, and what changed.
 *
 * A watcher (file-watch.ts, k8s-watch.ts) hands it every complete read
 * (`replace`) and every failed one (`failed`). The book arms one timer for
 * the next start or end of a record it holds, so the log and the gauges say
 * so on time, even while the store cannot be read; the guards and ladders
 * compare times themselves whenever they ask. Each hold that starts or ends as the
 * operator sees it is a WARN line; the gauges follow. Guards and ladders ask
 * it (`paused`, `silenced`) at the moment they decide, so a hold applies from
 * the read that brought it.
 */
import type { Timers } from "../../contract/clock.js";
import type { HoldSubject, Holds } from "../decide/guards.js";
import { errorText, OperatorEvent, type OperatorLog } from "../log.js";
import type { OperatorMetrics } from "../metrics.js";
import { describeHold, describeMatchers, matches, PAUSE_ID, type Silence } from "./model.js";
import type { SilenceScan } from "./store.js";

const HOUR_MS = 3_600_000;

/** What `/readyz` says of the pause. */
export interface PauseState {
  by: string;
  comment: string;
  /** When it ends by itself (ISO 8601). */
  until: string;
}

/** What a SilenceBook needs; no defaults (the operator passes its own). */
export interface SilenceBookOptions {
  /** Where the records come from, for log lines (`the folder …`). */
  where: string;
  /** Now, and the timer for the next start or end. */
  clock: Timers;
  log: OperatorLog;
  metrics: OperatorMetrics;
}

/** A record with its times parsed once. */
interface Entry {
  silence: Silence;
  start: number;
  end: number;
}

/** The silences and the pause the operator knows of: the `Holds` its guards and ladders ask. */
export class SilenceBook implements Holds {
  /** Silences (not the pause), oldest first: the first that matches names the hold. */
  private silences: Entry[] = [];
  private pauseEntry: Entry | null = null;
  /** Holds in force at the last evaluation, by id. */
  private announced = new Map<string, Silence>();
  /** Records skipped, and why: each version of a bad record is counted and logged once, not at every read. */
  private skipped = new Map<string, string>();
  private failures = 0;
  private wasRead = false;
  private resolveFirstRead!: () => void;
  private cancelTimer: (() => void) | null = null;
  /** Resolves at the first complete read: no term acts before it (it could not know whether on-call paused). */
  readonly firstRead = new Promise<void>((resolve) => (this.resolveFirstRead = resolve));

  constructor(private readonly options: SilenceBookOptions) {}

  /** A complete read of the store: it replaces everything known before. */
  replace(scan: SilenceScan): void {
    const { log, metrics } = this.options;
    const entries = scan.silences
      .map((silence) => ({ silence, start: Date.parse(silence.startsAt), end: Date.parse(silence.endsAt) }))
      .sort((a, b) => Date.parse(a.silence.createdAt) - Date.parse(b.silence.createdAt) || a.silence.id.localeCompare(b.silence.id));
    this.silences = entries.filter((e) => e.silence.id !== PAUSE_ID);
    this.pauseEntry = entries.find((e) => e.silence.id === PAUSE_ID) ?? null;
    const skipped = new Map<string, string>();
    for (const { name, reason } of scan.skipped) {
      skipped.set(name, reason);
      if (this.skipped.get(name) === reason) continue;
      metrics.silencesSkipped.inc();
      log.error(OperatorEvent.silenceSkipped, { file: name }, `Skipped silence record ${name} in ${this.options.where}: ${reason}; it holds nothing back`);
    }
    this.skipped = skipped;
    if (this.failures > 0) {
      log.warn(OperatorEvent.silenceError, { failures: this.failures }, `The silences in ${this.options.where} can be read again after ${this.failures} failed read(s)`);
    }
    this.failures = 0;
    this.wasRead = true;
    this.resolveFirstRead();
    this.evaluate();
  }

  /** A read failed: what was read last stays in force (its ends still apply). Logged at the first failure and once a minute. */
  failed(err: unknown): void {
    this.failures++;
    this.options.metrics.silenceErrors.inc();
    if (this.failures === 1 || this.failures % 60 === 0) {
      const meanwhile = this.wasRead ? "the ones read last stay in force until they end" : "NOT acting until they have been read once";
      this.options.log.error(
        OperatorEvent.silenceError,
        { failures: this.failures },
        `Cannot read the silences and the pause in ${this.options.where}; ${meanwhile}: ${errorText(err)}`,
      );
    }
  }

  /** Logs the holds that started or ended since the last evaluation, and sets the gauges. */
  evaluate(): void {
    const { log, metrics, clock } = this.options;
    const now = clock.now();
    const active = new Map<string, Silence>();
    const pause = this.activePause(now);
    if (pause !== null) active.set(pause.id, pause);
    for (const e of this.silences) if (e.start <= now && now < e.end) active.set(e.silence.id, e.silence);
    for (const [id, silence] of active) {
      const before = this.announced.get(id);
      if (before !== undefined && describeHold(before) === describeHold(silence)) continue;
      const fields = { silence: id, by: silence.createdBy, until: silence.endsAt, ...silence.matchers };
      if (id === PAUSE_ID) {
        log.warn(OperatorEvent.pauseStarted, fields, `Automation PAUSED by ${silence.createdBy} until ${silence.endsAt}: ${JSON.stringify(silence.comment)}; nothing is acted on`);
      } else {
        log.warn(
          OperatorEvent.silenceStarted,
          fields,
          `Silence ${id} in force (${describeMatchers(silence.matchers)}) by ${silence.createdBy} until ${silence.endsAt}: ${JSON.stringify(silence.comment)}`,
        );
      }
    }
    for (const [id, silence] of this.announced) {
      if (active.has(id)) continue;
      const latest = this.record(id);
      const how =
        latest === null
          ? "its record was removed"
          : latest.expiredBy !== null && Date.parse(latest.endsAt) <= now
            ? `ended early by ${latest.expiredBy}`
            : `reached its end (${latest.endsAt})`;
      if (id === PAUSE_ID) log.warn(OperatorEvent.pauseEnded, { silence: id, by: silence.createdBy }, `Automation RESUMED: the pause by ${silence.createdBy} ${how}`);
      else log.warn(OperatorEvent.silenceEnded, { silence: id, by: silence.createdBy, ...silence.matchers }, `Silence ${id} (${describeMatchers(silence.matchers)}) ${how}`);
    }
    this.announced = active;
    metrics.paused.set(pause === null ? 0 : 1);
    metrics.silencesActive.set(active.size - (pause === null ? 0 : 1));
    this.arm(now);
  }

  /** Stops the timer (the operator stops). */
  close(): void {
    this.cancelTimer?.();
    this.cancelTimer = null;
  }

  /** One timer, at the next start or end of a record (at most an hour ahead: then it looks again). */
  private arm(now: number): void {
    this.close();
    let next = Number.POSITIVE_INFINITY;
    for (const e of this.pauseEntry === null ? this.silences : [this.pauseEntry, ...this.silences]) {
      if (e.start > now) next = Math.min(next, e.start);
      if (e.end > now) next = Math.min(next, e.end);
    }
    if (next === Number.POSITIVE_INFINITY) return;
    this.cancelTimer = this.options.clock.after(Math.min(next - now, HOUR_MS), () => {
      this.cancelTimer = null;
      this.evaluate();
    });
  }

  paused(now: number): string | null {
    const pause = this.activePause(now);
    return pause === null ? null : describeHold(pause);
  }

  silenced(subject: HoldSubject, now: number): string | null {
    for (const e of this.silences) {
      if (e.start <= now && now < e.end && matches(e.silence, subject)) return describeHold(e.silence);
    }
    return null;
  }

  /** The pause in force, for `/readyz`; null when not paused. */
  pauseState(now: number): PauseState | null {
    const pause = this.activePause(now);
    return pause === null ? null : { by: pause.createdBy, comment: pause.comment, until: pause.endsAt };
  }

  private activePause(now: number): Silence | null {
    const p = this.pauseEntry;
    return p !== null && p.start <= now && now < p.end ? p.silence : null;
  }

  private record(id: string): Silence | null {
    if (id === PAUSE_ID) return this.pauseEntry?.silence ?? null;
    return this.silences.find((e) => e.silence.id === id)?.silence ?? null;
  }
}
