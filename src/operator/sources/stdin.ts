/**
 * `stdin`: lines piped into the operator (`kubectl logs -f … | reclaim
 * operator --source stdin`), or any other Readable, in the same batches of
 * complete lines as the file source. There is no position to keep: a pipe
 * cannot be read again.
 *
 * Input whose first non-blank byte is "[" is a JSON array, the output of
 * `gcloud logging read --format=json` (newest first): it is decoded entry by
 * entry and handed on oldest first once the input has ended, in bounded
 * memory (gcloud-array.ts, spill-sort.ts).
 */
import type { Readable } from "node:stream";
import { GcloudArrayError, readGcloudArray, startsWithArray } from "./gcloud-array.js";
import { DEFAULT_MAX_LINE_BYTES, LineFramer, type Framed } from "./lines.js";
import { newSourceStats, type LineBatch, type LogSource, type SourceStats } from "./source.js";

export interface StdinSourceOptions {
  /** What to read (default `process.stdin`). Byte or string chunks; object mode is refused. */
  stream?: Readable;
  /** The source's name, a metric label (default `stdin`). */
  name?: string;
  /** Longest line kept, "\n" excluded; longer ones are skipped and counted (default 1 MiB). Also the longest entry of a JSON array. */
  maxLineBytes?: number;
  /** A JSON array: memory for entries held before a sorted run goes to a temp file (default 32 MiB). */
  runBytes?: number;
  /** A JSON array: where its temp files go (default os.tmpdir()). */
  tmpDir?: string;
}

/** A fault of the stdin source; `code` says which. */
export class StdinSourceError extends Error {
  constructor(
    readonly code: "ERR_RECLAIM_SOURCE_READ" | "ERR_RECLAIM_SOURCE_BUSY" | "ERR_RECLAIM_SOURCE_SHAPE",
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "StdinSourceError";
  }
}

const noCommit = (): Promise<void> => Promise.resolve();

/**
 * A source over a Readable: each batch is what the stream had buffered,
 * plus the partial line carried from before. Ends when the stream ends (its
 * last line counts even without "\n") or `signal` aborts; the stream is left
 * open on abort. The next chunk is read only after `onBatch` resolves, so a
 * slow consumer pushes back on the writer through the pipe.
 */
export class StdinSource implements LogSource {
  readonly name: string;
  readonly stats: SourceStats & { skippedLongLines: number } = newSourceStats();
  private readonly stream: Readable;
  private readonly maxLineBytes: number;
  private readonly arrayOptions: { runBytes?: number; tmpDir?: string };
  private running = false;

  constructor(options: StdinSourceOptions = {}) {
    this.stream = options.stream ?? process.stdin;
    this.name = options.name ?? "stdin";
    const max = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    if (!Number.isInteger(max) || max < 1) {
      throw new TypeError(`StdinSource: maxLineBytes must be a positive integer, got ${String(options.maxLineBytes)}`);
    }
    this.maxLineBytes = max;
    this.arrayOptions = {
      ...(options.runBytes === undefined ? {} : { runBytes: options.runBytes }),
      ...(options.tmpDir === undefined ? {} : { tmpDir: options.tmpDir }),
    };
    if (this.stream.readableObjectMode) throw new TypeError("StdinSource: the stream must not be in object mode");
  }

  /** Hands over batches until the stream ends or `signal` aborts; rejects with a `StdinSourceError` if the stream fails. */
  async run(onBatch: (batch: LineBatch) => Promise<void>, signal: AbortSignal): Promise<void> {
    if (this.running) throw new StdinSourceError("ERR_RECLAIM_SOURCE_BUSY", `${this.name}: already running`);
    this.running = true;
    const stream = this.stream;
    const framer = new LineFramer(this.maxLineBytes, this.stats);
    let failure: unknown = null;
    // Listening for 'error' for the whole run: an 'error' event without a listener would crash the process.
    const onError = (err: unknown): void => {
      failure ??= err;
    };
    stream.on("error", onError);
    const deliver = async (framed: Framed): Promise<void> => {
      if (framed.data === null) return;
      this.stats.linesRead += framed.lines;
      await onBatch({ data: framed.data, lines: framed.lines, commit: noCommit });
    };
    const read = async (): Promise<Buffer | null> => {
      const chunk = await this.next(signal, () => failure);
      // Destroyed with an error whose 'error' event is still to come: a failure all the same.
      failure ??= stream.errored;
      if (failure !== null) throw new StdinSourceError("ERR_RECLAIM_SOURCE_READ", `${this.name}: read failed`, { cause: failure });
      if (chunk !== null) this.stats.bytesRead += chunk.length;
      return chunk;
    };
    try {
      // Lines or a JSON array: decided by the first non-blank byte.
      const head: Buffer[] = [];
      let array: boolean | null = null;
      while (array === null) {
        const chunk = await read();
        if (chunk === null) break;
        head.push(chunk);
        array = startsWithArray(head.length === 1 ? chunk : Buffer.concat(head));
      }
      if (array === true) {
        await this.readArray(head, read, onBatch, signal);
        return;
      }
      for (const chunk of head) await deliver(framer.push(chunk));
      for (;;) {
        const chunk = await read();
        if (chunk === null) break;
        await deliver(framer.push(chunk));
      }
      if (!signal.aborted) await deliver(framer.finish());
    } finally {
      stream.off("error", onError);
      // destroy(err) emits 'error' on the next tick, after this run may already have failed on
      // `stream.errored`: without a listener that late event would crash the process.
      if (stream.errored !== null) stream.once("error", () => undefined);
      this.running = false;
    }
  }

  /** The input is a JSON array (gcloud logging read): its entries, oldest first, once it has ended. */
  private async readArray(
    head: Buffer[],
    read: () => Promise<Buffer | null>,
    onBatch: (batch: LineBatch) => Promise<void>,
    signal: AbortSignal,
  ): Promise<void> {
    async function* chunks(): AsyncGenerator<Buffer> {
      yield* head;
      for (let chunk = await read(); chunk !== null; chunk = await read()) yield chunk;
    }
    try {
      await readGcloudArray(chunks(), onBatch, { ...this.arrayOptions, maxEntryBytes: this.maxLineBytes, stats: this.stats }, signal);
    } catch (err) {
      if (err instanceof GcloudArrayError) throw new StdinSourceError("ERR_RECLAIM_SOURCE_SHAPE", `${this.name}: ${err.message}`, { cause: err });
      throw err;
    }
  }

  /** Everything the stream has buffered, waiting for it if need be; null at its end or on abort. */
  private async next(signal: AbortSignal, failed: () => unknown): Promise<Buffer | null> {
    const stream = this.stream;
    for (;;) {
      if (signal.aborted || failed() !== null) return null;
      const chunk: unknown = stream.read();
      if (chunk !== null) return typeof chunk === "string" ? Buffer.from(chunk, "utf8") : (chunk as Buffer);
      if (stream.readableEnded || stream.destroyed) return null;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          stream.off("readable", done);
          stream.off("end", done);
          stream.off("close", done);
          stream.off("error", done);
          signal.removeEventListener("abort", done);
          resolve();
        };
        stream.on("readable", done);
        stream.on("end", done);
        stream.on("close", done);
        stream.on("error", done);
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }
}
