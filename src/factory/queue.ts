/**
 * The bounded per-user admission queue: upgrades that arrive while a user is
 * at their limit wait here (when queueing is on for that user) until a slot
 * frees or their timeout passes. First come, first served.
 */
import { systemTimers, type Timers } from "../contract/clock.js";

/** How a wait ended. `admitted` means a slot was reserved for the waiter. */
export type WaitOutcome = "admitted" | "timeout" | "full" | "aborted";

interface Waiter {
  resolve(outcome: WaitOutcome): void;
  /** Cancels the wait's timeout. */
  cancel: () => void;
}

/** Asks the registry whether it can reserve a slot for this user, and does so if it can. */
export type TryReserve = (userId: string) => boolean;

export class AdmissionQueue {
  private readonly queues = new Map<string, Waiter[]>();
  private total = 0;

  /**
   * @param timers where the waits' timeouts run (default: the real timers; the
   *   factory passes its clock's, so a test's clock ends them: timersOf)
   */
  constructor(
    private readonly tryReserve: TryReserve,
    private readonly timers: Timers = systemTimers,
  ) {}

  /** Waiters across all users. */
  get size(): number {
    return this.total;
  }

  /** Waiters for one user. */
  length(userId: string): number {
    return this.queues.get(userId)?.length ?? 0;
  }

  /**
   * Waits for a slot. Resolves `full` at once when `max` waiters are already
   * queued for this user; `timeout` after `timeoutMs`; `aborted` if `signal`
   * fires (the client went away) or on shutdown.
   */
  wait(userId: string, timeoutMs: number, max: number, signal?: AbortSignal): Promise<WaitOutcome> {
    const queue = this.queues.get(userId) ?? [];
    if (queue.length >= max) return Promise.resolve("full");
    this.queues.set(userId, queue);
    return new Promise<WaitOutcome>((resolve) => {
      const onAbort = (): void => finish("aborted");
      const waiter: Waiter = {
        resolve: (outcome) => finish(outcome),
        cancel: this.timers.after(timeoutMs, () => finish("timeout")),
      };
      const finish = (outcome: WaitOutcome): void => {
        waiter.cancel();
        signal?.removeEventListener("abort", onAbort);
        if (this.drop(userId, waiter)) resolve(outcome);
        else if (outcome === "admitted") resolve(outcome);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      queue.push(waiter);
      this.total++;
    });
  }

  /** A slot may have freed: admit waiters from the head while slots can be reserved. */
  wake(userId: string): void {
    const queue = this.queues.get(userId);
    while (queue !== undefined && queue.length > 0 && this.tryReserve(userId)) {
      const head = queue.shift();
      this.total--;
      if (queue.length === 0) this.queues.delete(userId);
      head?.resolve("admitted");
    }
  }

  /** Ends every wait with `aborted` (shutdown). */
  abortAll(): void {
    for (const queue of [...this.queues.values()]) for (const waiter of [...queue]) waiter.resolve("aborted");
  }

  private drop(userId: string, waiter: Waiter): boolean {
    const queue = this.queues.get(userId);
    if (queue === undefined) return false;
    const i = queue.indexOf(waiter);
    if (i < 0) return false;
    queue.splice(i, 1);
    this.total--;
    if (queue.length === 0) this.queues.delete(userId);
    return true;
  }
}
