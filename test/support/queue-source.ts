/**
 * A log source the test feeds line by line: each `push` becomes one batch,
 * handed over in order (each waits for the one before, as real sources do).
 * Positions are kept as real sources keep them: a batch is committed only
 * when the operator says it was handled, and a later `run` (a new term)
 * starts after the last committed batch — so a batch a term stopped in the
 * middle of is handed over again.
 */
import { newSourceStats, type LineBatch, type LogSource } from "../../src/operator/sources/source.js";

export class QueueSource implements LogSource {
  readonly name: string;
  readonly stats = newSourceStats();
  /** Every batch pushed, in order. */
  private readonly batches: string[] = [];
  /** Batches committed (the position): the next run starts here. */
  committed = 0;
  /** Calls of run(), and batches handed over in all. */
  runs = 0;
  delivered = 0;
  /** When set, the next run() fails with it instead of reading (then it is cleared). */
  failNextRun: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(name = "queue") {
    this.name = name;
  }

  /** Adds one batch of lines (each ends with "\n"). */
  push(text: string): void {
    this.batches.push(text);
    this.wake?.();
  }

  /** Batches pushed and not yet committed. */
  get pending(): number {
    return this.batches.length - this.committed;
  }

  async run(onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<void> {
    this.runs++;
    if (this.failNextRun !== null) {
      const err = this.failNextRun;
      this.failNextRun = null;
      throw err;
    }
    let next = this.committed;
    const onAbort = (): void => this.wake?.();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (!signal.aborted) {
        if (next >= this.batches.length) {
          await new Promise<void>((resolve) => (this.wake = resolve));
          this.wake = null;
          continue;
        }
        const index = next++;
        const text = this.batches[index]!;
        this.delivered++;
        this.stats.linesRead += text.split("\n").length - 1;
        await onBatch({
          data: Buffer.from(text),
          lines: text.split("\n").length - 1,
          commit: () => {
            this.committed = Math.max(this.committed, index + 1);
            return Promise.resolve();
          },
        });
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
}
