// A log source the soak benchmark feeds (the LogSource of
// src/operator/sources/source.ts; a twin of test/support/queue-source.ts
// that forgets what was handled, so a week of lines costs it nothing): each
// `push` is one batch, handed over in order, each after the one before was
// handled (backpressure, as real sources do). A batch is forgotten once the
// operator commits it; a later `run` (a new term) starts at the first batch
// not committed, as a real source restarts from its saved position.
import { newSourceStats } from "../../dist/operator/sources/source.js";

export class QueueSource {
  constructor(name = "soak") {
    this.name = name;
    this.stats = newSourceStats();
    /** Batches not yet committed: `{ seq, text }`, oldest first. */
    this.batches = [];
    this.pushed = 0;
    this.committed = 0;
    /** The newest batch whose `onBatch` has resolved. */
    this.handled = 0;
    this.wake = null;
  }

  /** Adds one batch of lines (each ends with "\n"). */
  push(text) {
    this.batches.push({ seq: ++this.pushed, text });
    this.wake?.();
  }

  /** Batches pushed and not yet handled: the simulation is not quiet while there are any. */
  get pending() {
    return this.pushed - this.handled;
  }

  async run(onBatch, signal) {
    let next = this.committed + 1;
    const onAbort = () => this.wake?.();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (!signal.aborted) {
        const batch = this.batches[next - (this.batches[0]?.seq ?? next)];
        if (batch === undefined) {
          await new Promise((resolve) => (this.wake = resolve));
          this.wake = null;
          continue;
        }
        next++;
        const lines = countLines(batch.text);
        this.stats.linesRead += lines;
        this.stats.bytesRead += Buffer.byteLength(batch.text);
        await onBatch({
          data: Buffer.from(batch.text),
          lines,
          commit: () => {
            this.committed = Math.max(this.committed, batch.seq);
            while (this.batches.length > 0 && this.batches[0].seq <= this.committed) this.batches.shift();
            return Promise.resolve();
          },
        });
        this.handled = Math.max(this.handled, batch.seq);
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
}

function countLines(text) {
  let n = 0;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) n++;
  return n;
}
