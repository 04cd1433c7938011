/**
 * The factory's admission built by hand, wired as `startFactory` wires it
 * (src/factory/factory.ts): Registry, AdmissionQueue (its timeouts on the
 * clock's timers: timersOf), InProcessCleanup with an empty ladder (it frees
 * nothing), RefusalTracker, FactoryMetrics and AdmissionControl, on a clock
 * the test gives (a ManualClock: raises and queue timeouts end when it is
 * moved). Only the log is an in-memory recorder. For the admission rules
 * (test/mutation/admission-rules.test.ts) and the admission model
 * (test/factory/admission.model.test.ts).
 */
import { timersOf, type Clock } from "../../src/contract/clock.js";
import { AdmissionControl } from "../../src/factory/admission.js";
import { InProcessCleanup } from "../../src/factory/cleanup.js";
import { Evictor } from "../../src/factory/evict.js";
import { FactoryMetrics } from "../../src/factory/metrics.js";
import { AdmissionQueue, type TryReserve } from "../../src/factory/queue.js";
import { RefusalTracker } from "../../src/factory/refusals.js";
import { Registry } from "../../src/factory/registry.js";
import type { RungDefaults } from "../../src/factory/rungs/context.js";
import { RungRunner } from "../../src/factory/rungs/runner.js";
import { RecordingEventLog } from "./event-log.js";

/** A wait nobody reaches in a test. */
export const NEVER_MS = 600_000;

export const DEFAULTS: RungDefaults = {
  idleMs: 120_000,
  probeTimeoutMs: NEVER_MS,
  probeDeadline: "phi",
  probeFloorMs: 100,
  bufferThresholdBytes: 1 << 30,
  degradeLimit: 10,
  maxDegradeLimit: 10,
};

export interface Harness {
  registry: Registry;
  queue: AdmissionQueue;
  admission: AdmissionControl;
  refusals: RefusalTracker;
  log: RecordingEventLog;
  metrics: FactoryMetrics;
  /** Ends every wait and stops every timer. */
  close(): void;
}

/** What a harness may be given; every one has a default. */
export interface HarnessOptions {
  limit?: number;
  queueTimeoutMs?: number;
  queueMax?: number;
  retryAfterSeconds?: number;
  /** The queue to use, given how it reserves a slot (default: an AdmissionQueue on the clock's timers, as in the factory). */
  makeQueue?: (tryReserve: TryReserve) => AdmissionQueue;
}

/**
 * Admission wired as the factory wires it, on `clock`, with an in-process
 * cleanup that frees nothing. `close()` it after the test: it ends every
 * wait, stops the raise timers and the refusal log's timer.
 */
export function admissionHarness(clock: Clock, options: HarnessOptions = {}): Harness {
  const log = new RecordingEventLog();
  const registry: Registry = new Registry(options.limit ?? 2, clock, { slotFreed: (userId) => queue.wake(userId) });
  const tryReserve: TryReserve = (userId) => {
    if (!registry.hasRoom(userId)) return false;
    registry.reserve(userId);
    return true;
  };
  const queue = options.makeQueue?.(tryReserve) ?? new AdmissionQueue(tryReserve, timersOf(clock));
  const metrics = new FactoryMetrics({ managers: () => registry.size, connections: () => 0, usersAtLimit: () => 0, queueLength: () => queue.size }, { defaultMetrics: false });
  const refusals = new RefusalTracker(clock, (userId) => registry.holds(userId));
  const evictor = new Evictor(registry, log, metrics, NEVER_MS);
  const runner: RungRunner = new RungRunner({ registry, evictor, clock, metrics, defaults: DEFAULTS }, log, (userId) => admission.wouldAdmit(userId));
  const cleanup = new InProcessCleanup("ladder", [], { registry, evictor, runner, clock, metrics, log });
  const admission = new AdmissionControl(
    registry,
    queue,
    cleanup,
    clock,
    log,
    metrics,
    { queueTimeoutMs: options.queueTimeoutMs ?? 0, queueMax: options.queueMax ?? 10, retryAfterSeconds: options.retryAfterSeconds ?? 5 },
    refusals,
  );
  const close = (): void => {
    queue.abortAll();
    registry.clearTimers();
    admission.close();
  };
  return { registry, queue, admission, refusals, log, metrics, close };
}
