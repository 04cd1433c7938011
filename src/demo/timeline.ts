/**
 * A readable, live timeline for the demo: elapsed milliseconds, the component
 * that spoke and what happened.
 */
import { Writable } from "node:stream";
import { FactoryEvent } from "../contract/events.js";
import { OperatorEvent } from "../operator/log.js";

/** Factory events worth showing. */
export const FACTORY_SHOWN: ReadonlySet<string> = new Set([
  FactoryEvent.resourceLimit,
  FactoryEvent.hardLimit,
  FactoryEvent.error,
  FactoryEvent.cleanup,
  FactoryEvent.degraded,
  FactoryEvent.queued,
  FactoryEvent.refused,
  FactoryEvent.faultEnabled,
]);

/** Operator events worth showing. */
export const OPERATOR_SHOWN: ReadonlySet<string> = new Set([
  OperatorEvent.incidentOpened,
  OperatorEvent.rung,
  OperatorEvent.verification,
  OperatorEvent.incidentClosed,
  OperatorEvent.suppressed,
  OperatorEvent.storeError,
]);

export interface TimelineEntry {
  elapsedMs: number;
  component: string;
  text: string;
  event?: string;
}

export class Timeline {
  readonly entries: TimelineEntry[] = [];
  private start = performance.now();

  constructor(private readonly out: ((line: string) => void) | null) {}

  /** Starts counting from now. */
  reset(): void {
    this.start = performance.now();
  }

  /** Adds one entry and prints it. */
  note(component: string, text: string, event?: string): void {
    const entry: TimelineEntry = { elapsedMs: Math.round(performance.now() - this.start), component, text, ...(event ? { event } : {}) };
    this.entries.push(entry);
    this.out?.(`  +${String(entry.elapsedMs).padStart(6)} ms  ${component.padEnd(8)} ${text}`);
  }

  /** Prints a heading line. */
  heading(text: string): void {
    this.out?.(`\n${text}`);
  }

  /** A stream for a component's JSON log lines: `shown` events go to the timeline; every line is kept in `lines`. */
  logStream(component: string, shown: ReadonlySet<string>, lines: Record<string, unknown>[]): Writable {
    let partial = "";
    return new Writable({
      write: (chunk: Buffer, _enc, done) => {
        partial += chunk.toString("utf8");
        let nl: number;
        while ((nl = partial.indexOf("\n")) >= 0) {
          const line = partial.slice(0, nl);
          partial = partial.slice(nl + 1);
          const entry = JSON.parse(line) as Record<string, unknown>;
          lines.push(entry);
          if (typeof entry.event === "string" && shown.has(entry.event)) {
            this.note(component, `${String(entry.severity)} ${String(entry.message)}`, entry.event);
          }
        }
        done();
      },
    });
  }
}
