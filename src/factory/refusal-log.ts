/**
 * The per-user rate limit on the lines of the refusal path, so that one user
 * who retries a refused upgrade in a loop cannot flood the log (1,000 refused
 * attempts used to write over 4,000 lines in a second and a half).
 *
 * Per user, a window opens with the first refusal-path line and lasts
 * `windowMs` (default 60 s). In it the factory writes, word for word:
 * - the first at-limit attempt's lines: `factory.resource_limit` and the
 *   `factory.cleanup` lines of the in-process cleanup it ran;
 * - the first refusal's lines: `factory.hard_limit`, `factory.error` (the
 *   lines the operator's rule matches: it needs one per user per minute) and
 *   `factory.refused`.
 * Later ones in the window are left out (so is the `factory.degraded` line
 * of an in-process degrade rung run again), except a cleanup line that
 * removed something: an action, bounded by the connections the user was
 * admitted with. When the window ends, one `factory.refusals_suppressed` line says
 * how many refusals and lines were left out, if any; the next line opens a
 * new window. Lines left out are also counted in
 * `reclaim_factory_log_lines_suppressed_total{event}`.
 *
 * Why one timer rather than writing the count lazily with the next line: a
 * user who gives up writes no next line, and on a quiet factory nothing else
 * would either, so the count would never be written. Windows all last
 * `windowMs` and open in time order, so the map's insertion order is their
 * end order: one timer, armed for the head, is enough for every user. It is
 * unref'd (`Timers.after`) and `close()` cancels it after writing what is
 * left.
 *
 * Memory is bounded: a user has state only while their window is open, and
 * at most `maxUsers` (default 10,000) windows are open; opening one more ends
 * the oldest early (its count written with the time it really covered).
 */
import type { Timers } from "../contract/clock.js";
import { FactoryEvent } from "../contract/events.js";
import type { EventFields, EventLog } from "./log.js";

/** Bounds of the limiter; every field has a default. */
export interface RefusalLogOptions {
  /** How long one user's window lasts, in ms (default 60000): at least one HARD LIMIT per user per window is written. */
  windowMs?: number;
  /** Most users with an open window (default 10000); beyond it the oldest window ends early. */
  maxUsers?: number;
}

/** Default of `RefusalLogOptions.windowMs`. */
export const DEFAULT_REFUSAL_LOG_WINDOW_MS = 60_000;
/** Default of `RefusalLogOptions.maxUsers`. */
export const DEFAULT_REFUSAL_LOG_MAX_USERS = 10_000;

/** Where left-out lines are counted, by event (the factory's `logLinesSuppressed` counter). */
export interface SuppressedLineCounter {
  inc(labels: { event: string }, value?: number): void;
}

/** The events whose lines may be left out: a closed set, so the counter's labels stay bounded. */
const LIMITED_EVENTS: readonly FactoryEvent[] = [
  FactoryEvent.resourceLimit,
  FactoryEvent.cleanup,
  FactoryEvent.degraded, // an in-process degrade rung repeated within the minute
  FactoryEvent.hardLimit,
  FactoryEvent.error,
  FactoryEvent.refused,
];

interface Window {
  start: number;
  /** The first at-limit attempt's lines were written. */
  atLimitWritten: boolean;
  /** The first refusal's lines were written. */
  refusalWritten: boolean;
  /** Refusals whose lines were left out. */
  refusals: number;
  /** Lines left out, of every event. */
  lines: number;
}

type Level = "debug" | "info" | "warn" | "error";

export class RefusalLog {
  /** Open windows, oldest first (so also in the order they end). */
  private readonly windows = new Map<string, Window>();
  private readonly windowMs: number;
  private readonly maxUsers: number;
  private cancelTimer: (() => void) | null = null;
  private closed = false;

  /**
   * @param log the factory's log: lines that are kept and the counts go here
   * @param timers time for the windows, and the timer that ends them
   * @param counter where left-out lines are counted, or null
   */
  constructor(
    private readonly log: EventLog,
    private readonly timers: Timers,
    private readonly counter: SuppressedLineCounter | null,
    options: RefusalLogOptions = {},
  ) {
    this.windowMs = options.windowMs ?? DEFAULT_REFUSAL_LOG_WINDOW_MS;
    this.maxUsers = options.maxUsers ?? DEFAULT_REFUSAL_LOG_MAX_USERS;
    if (!Number.isInteger(this.windowMs) || this.windowMs < 1000 || this.windowMs > 3_600_000) {
      throw new TypeError(`RefusalLog: windowMs must be an integer of ms from 1000 to 3600000, got ${String(options.windowMs)}`);
    }
    if (!Number.isInteger(this.maxUsers) || this.maxUsers < 1) {
      throw new TypeError(`RefusalLog: maxUsers must be a positive integer, got ${String(options.maxUsers)}`);
    }
    // Every series from zero, so that rate() sees the first left-out line.
    for (const event of LIMITED_EVENTS) counter?.inc({ event }, 0);
  }

  /**
   * A user at the limit asks for another connection: the log for this
   * attempt's `factory.resource_limit` line and its in-process cleanup. The
   * factory's log for the first attempt in the window; otherwise one that
   * leaves out (and counts) every line but a cleanup that removed something.
   */
  atLimit(userId: string): EventLog {
    if (this.closed) return this.log;
    const window = this.open(userId);
    if (!window.atLimitWritten) {
      window.atLimitWritten = true;
      return this.log;
    }
    return this.leaving(userId, (event, fields) => event === FactoryEvent.cleanup && (fields.removed ?? 0) > 0);
  }

  /**
   * This user is refused: the log for the refusal's lines (`factory.hard_limit`,
   * `factory.error`, `factory.refused`). The factory's log for the first
   * refusal in the window; otherwise one that leaves them out, counted.
   */
  refused(userId: string): EventLog {
    if (this.closed) return this.log;
    const window = this.open(userId);
    if (!window.refusalWritten) {
      window.refusalWritten = true;
      return this.log;
    }
    window.refusals++;
    return this.leaving(userId, () => false);
  }

  /** Users with an open window. */
  get size(): number {
    return this.windows.size;
  }

  /**
   * Ends every window now, writing what each left out, and cancels the
   * timer; afterwards lines are written as they come (nothing would write the
   * counts). Call before the log closes. Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelTimer?.();
    this.cancelTimer = null;
    const now = this.timers.now();
    for (const [userId, window] of this.windows) this.end(userId, window, now);
    this.windows.clear();
  }

  /** This user's open window, opened now if there is none. */
  private open(userId: string): Window {
    const now = this.timers.now();
    const open = this.windows.get(userId);
    if (open !== undefined) {
      if (!this.over(open, now)) return open;
      // Over, though the timer has not ended it yet (it fires a little late, or the clock jumped): end it now.
      this.windows.delete(userId);
      this.end(userId, open, now);
    }
    for (const [oldest, window] of this.windows) {
      if (this.windows.size < this.maxUsers) break;
      this.windows.delete(oldest);
      this.end(oldest, window, now);
    }
    const window: Window = { start: now, atLimitWritten: false, refusalWritten: false, refusals: 0, lines: 0 };
    this.windows.set(userId, window);
    this.arm();
    return window;
  }

  /** A log that writes only the lines `keep` accepts and counts the rest against this user's window. */
  private leaving(userId: string, keep: (event: FactoryEvent, fields: EventFields) => boolean): EventLog {
    const write =
      (level: Level) =>
      (event: FactoryEvent, fields: EventFields, message: string): void => {
        // An event outside the closed set is never left out: nothing would count it under a bounded label.
        if (this.closed || !LIMITED_EVENTS.includes(event) || keep(event, fields)) return this.log[level](event, fields, message);
        // Counted in the window open now: one that ended meanwhile has had its count written.
        this.open(userId).lines++;
        this.counter?.inc({ event });
      };
    return {
      debug: write("debug"),
      info: write("info"),
      warn: write("warn"),
      error: write("error"),
      debugEnabled: this.log.debugEnabled,
      close: () => Promise.resolve(),
    };
  }

  /** Writes what the window left out, if anything. The caller has removed it from the map. */
  private end(userId: string, window: Window, now: number): void {
    if (window.lines === 0) return;
    const seconds = Math.max(1, Math.ceil(Math.min(now - window.start, this.windowMs) / 1000));
    this.log.warn(
      FactoryEvent.refusalsSuppressed,
      { userId, suppressed: window.refusals, suppressedLines: window.lines },
      `${window.refusals} more refusal${window.refusals === 1 ? "" : "s"} for user ${userId} in the last ${seconds} s (${window.lines} log line${window.lines === 1 ? "" : "s"} left out)`,
    );
  }

  /**
   * Its time is up. A window that starts after `now` is over too: the clock
   * went back, and keeping it would hold the user's HARD LIMIT lines back by
   * as long as the clock jumped.
   */
  private over(window: Window, now: number): boolean {
    return now < window.start || now - window.start >= this.windowMs;
  }

  /** Arms the timer for the oldest window's end, unless it is armed. */
  private arm(): void {
    if (this.cancelTimer !== null || this.closed) return;
    const head = this.windows.values().next();
    if (head.done === true) return;
    // Clamped: a clock moved back must not make a delay Node's timer overflows (it would fire at once, again and again).
    const delay = Math.min(this.windowMs, Math.max(1, head.value.start + this.windowMs - this.timers.now()));
    this.cancelTimer = this.timers.after(delay, () => {
      this.cancelTimer = null;
      this.sweep();
    });
  }

  /** Ends every window whose time is up, oldest first, and re-arms for the next. */
  private sweep(): void {
    const now = this.timers.now();
    for (const [userId, window] of this.windows) {
      if (!this.over(window, now)) break;
      this.windows.delete(userId);
      this.end(userId, window, now);
    }
    this.arm();
  }
}
