/**
 * A FileSource running in a test, and what it handed over: its lines in
 * order, its batches, and its error if the run failed. For the file source's
 * tests (test/operator/sources/file.test.ts, file.model.test.ts). `stop()` it
 * after the test.
 */
import { statSync } from "node:fs";
import { expect, vi } from "vitest";
import type { FileSource } from "../../src/operator/sources/file.js";
import type { LineBatch } from "../../src/operator/sources/source.js";

/** A running source and what it handed over. */
export class Tail {
  readonly lines: string[] = [];
  readonly batches: LineBatch[] = [];
  error: Error | null = null;
  private readonly controller = new AbortController();
  readonly done: Promise<void>;

  constructor(
    readonly source: FileSource,
    onBatch: (batch: LineBatch, tail: Tail) => Promise<void> = (batch) => batch.commit(),
  ) {
    this.done = source
      .run(async (batch) => {
        const text = batch.data.toString();
        expect(text.endsWith("\n")).toBe(true);
        const lines = text.slice(0, -1).split("\n");
        expect(lines).toHaveLength(batch.lines);
        this.lines.push(...lines);
        this.batches.push(batch);
        await onBatch(batch, this);
      }, this.controller.signal)
      .catch((err: unknown) => {
        this.error = err instanceof Error ? err : new Error(String(err));
      });
  }

  abort(): void {
    this.controller.abort();
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.done;
  }

  /** Waits until the lines handed over are `want` (fails fast if the run failed). */
  async until(want: string[]): Promise<void> {
    await vi.waitFor(
      () => {
        if (this.error !== null) throw new Error("the source failed", { cause: this.error });
        expect(this.lines).toEqual(want);
      },
      { timeout: 5000, interval: 5 },
    );
  }

  /** Waits until the source has opened the file and reads at its end. */
  async caughtUp(): Promise<void> {
    await vi.waitFor(
      () => {
        if (this.error !== null) throw new Error("the source failed", { cause: this.error });
        expect(this.source.position?.offset).toBe(statSync(this.source.path).size);
      },
      { timeout: 5000, interval: 5 },
    );
  }
}

