/**
 * A factory `EventLog` that keeps every line in memory, for tests that build
 * the factory's parts by hand and read what they logged: level, event, fields
 * and message, in order.
 */
import type { EventFields, EventLog } from "../../src/factory/log.js";
import type { FactoryEvent } from "../../src/contract/events.js";

export interface LoggedLine {
  level: "debug" | "info" | "warn" | "error";
  event: string;
  fields: EventFields;
  message: string;
}

export class RecordingEventLog implements EventLog {
  readonly lines: LoggedLine[] = [];
  readonly debugEnabled = true;
  debug(event: FactoryEvent, fields: EventFields, message: string): void {
    this.lines.push({ level: "debug", event, fields, message });
  }
  info(event: FactoryEvent, fields: EventFields, message: string): void {
    this.lines.push({ level: "info", event, fields, message });
  }
  warn(event: FactoryEvent, fields: EventFields, message: string): void {
    this.lines.push({ level: "warn", event, fields, message });
  }
  error(event: FactoryEvent, fields: EventFields, message: string): void {
    this.lines.push({ level: "error", event, fields, message });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  /** The events logged, in order. */
  events(): string[] {
    return this.lines.map((l) => l.event);
  }
}
