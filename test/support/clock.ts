import type { Timers } from "../../src/contract/clock.js";

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  every: number | null;
}

/**
 * A clock the test moves by hand: "10 s later" is instant, and orderings are
 * exact rather than races between milliseconds. Its timers (sleep, timeout,
 * after, every) fire only when the test moves time past them, in time order.
 */
export class ManualClock implements Timers {
  private readonly pending = new Set<Pending>();
  private seq = 0;

  constructor(private t = Date.parse("2026-11-26T12:00:00Z")) {}

  now(): number {
    return this.t;
  }

  /** Moves time on, firing (synchronously, in order) every timer due by then. */
  advance(ms: number): void {
    const target = this.t + ms;
    for (let next = this.nextDue(target); next !== null; next = this.nextDue(target)) this.fire(next);
    this.t = target;
  }

  /**
   * Moves time on like `advance`, but lets promises and I/O settle after
   * each timer fires (and once at the end), so that code woken by one timer
   * can set the next before time moves past it.
   */
  async run(ms: number): Promise<void> {
    const target = this.t + ms;
    await settle();
    for (let next = this.nextDue(target); next !== null; next = this.nextDue(target)) {
      this.fire(next);
      await settle();
    }
    this.t = target;
    await settle();
  }

  /** Timers waiting to fire. */
  get timers(): number {
    return this.pending.size;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted === true) return resolve();
      const cancel = this.after(ms, () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
      const onAbort = (): void => {
        cancel();
        resolve();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  timeout(ms: number): AbortSignal {
    const controller = new AbortController();
    this.after(ms, () => controller.abort(new DOMException("The operation timed out.", "TimeoutError")));
    return controller.signal;
  }

  after(ms: number, fn: () => void): () => void {
    const entry: Pending = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, every: null };
    this.pending.add(entry);
    return () => this.pending.delete(entry);
  }

  every(ms: number, fn: () => void): () => void {
    const period = Math.max(1, ms);
    const entry: Pending = { at: this.t + period, seq: this.seq++, fn, every: period };
    this.pending.add(entry);
    return () => this.pending.delete(entry);
  }

  private nextDue(target: number): Pending | null {
    let best: Pending | null = null;
    for (const p of this.pending) if (p.at <= target && (best === null || p.at < best.at || (p.at === best.at && p.seq < best.seq))) best = p;
    return best;
  }

  private fire(entry: Pending): void {
    this.t = Math.max(this.t, entry.at);
    if (entry.every === null) this.pending.delete(entry);
    else {
      entry.at += entry.every;
      entry.seq = this.seq++;
    }
    entry.fn();
  }
}

/** Lets pending promise callbacks and ready I/O callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
