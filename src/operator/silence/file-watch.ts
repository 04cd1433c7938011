/**
 * File mode: the operator polls `<state>/silences/` (ADR 22). Each poll is a
 * listing and a `stat` of each record (cheap); the records are read again
 * only when that fingerprint changed. Every poll also re-evaluates the holds,
 * so one that reaches its end stops holding within a poll.
 *
 * A poll that fails (each file system call has a deadline) keeps the last
 * records read; polls then back off (doubling, up to 30 s) so that a stuck
 * filesystem does not gather a pile of calls that never return.
 */
import { systemTimers, type Timers } from "../../contract/clock.js";
import type { SilenceBook } from "./book.js";
import type { FileSilenceStore } from "./file-store.js";
import { SilencesUnreadable } from "./store.js";

/** Default poll interval: 1 s. */
export const DEFAULT_SILENCE_POLL_MS = 1000;
/** Longest poll interval allowed: 2 s, so a new silence or pause holds within 2 s (plus one read). */
export const MAX_SILENCE_POLL_MS = 2000;
/** Longest wait between polls after failures. */
const MAX_BACKOFF_MS = 30_000;

/** Options of FileSilenceWatch; `timers` and `pollMs` have defaults. */
export interface FileSilenceWatchOptions {
  store: FileSilenceStore;
  book: SilenceBook;
  /** Where the polls are timed (default the real timers). */
  timers?: Timers;
  /** Between polls (default 1000 ms, at most 2000 ms). */
  pollMs?: number;
}

/** Polls a FileSilenceStore and hands what it reads to a SilenceBook (file mode). */
export class FileSilenceWatch {
  private readonly timers: Timers;
  private readonly pollMs: number;
  private fingerprint: string | null = null;
  private polling: Promise<void> | null = null;
  private cancel: (() => void) | null = null;
  private failures = 0;
  private nextPollAt = 0;

  constructor(private readonly options: FileSilenceWatchOptions) {
    this.timers = options.timers ?? systemTimers;
    this.pollMs = options.pollMs ?? DEFAULT_SILENCE_POLL_MS;
    if (!Number.isInteger(this.pollMs) || this.pollMs < 1 || this.pollMs > MAX_SILENCE_POLL_MS) {
      throw new TypeError(`silence pollMs must be an integer from 1 to ${MAX_SILENCE_POLL_MS}, got ${String(options.pollMs)}`);
    }
  }

  /** Reads the records once (throws SilencesUnreadable when it cannot), then polls until `stop`. */
  async start(): Promise<void> {
    try {
      await this.poll();
    } catch (err) {
      throw new SilencesUnreadable(`cannot read the silences and the pause in ${this.options.store.where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    this.cancel = this.timers.every(this.pollMs, () => this.tick());
  }

  /** Stops polling; waits for a poll in progress. */
  async stop(): Promise<void> {
    this.cancel?.();
    this.cancel = null;
    await this.idle();
  }

  /** Resolves when no poll is in progress (at once when none is). */
  async idle(): Promise<void> {
    while (this.polling !== null) await this.polling;
  }

  /** One timer tick: a poll, unless one is still running or the watch backs off after failures. */
  private tick(): void {
    const { book } = this.options;
    if (this.polling !== null || this.timers.now() < this.nextPollAt) {
      book.evaluate();
      return;
    }
    this.polling = this.poll()
      .then(
        () => {
          this.failures = 0;
          this.nextPollAt = 0;
        },
        (err: unknown) => {
          this.failures++;
          this.nextPollAt = this.timers.now() + Math.min(MAX_BACKOFF_MS, this.pollMs * 2 ** this.failures);
          book.failed(err);
          book.evaluate();
        },
      )
      .finally(() => {
        this.polling = null;
      });
  }

  private async poll(): Promise<void> {
    const { store, book } = this.options;
    const fingerprint = await store.fingerprint();
    // After failed reads the book is handed a whole read again, unchanged or not: it then says the records can be read.
    if (fingerprint === this.fingerprint && this.failures === 0) {
      book.evaluate();
      return;
    }
    const scan = await store.scan();
    this.fingerprint = fingerprint; // taken before the scan: a change during it is read again at the next poll
    book.replace(scan);
  }
}
