/**
 * What every rung works with. Rungs are plain functions over this context, so
 * the in-process ladder and the control API run exactly the same code.
 */
import type { Clock } from "../../contract/clock.js";
import type { Removal } from "../../contract/control.js";
import type { Evictor } from "../evict.js";
import type { ProbeDeadline, RttTail } from "../rtt.js";
import type { FactoryMetrics } from "../metrics.js";
import type { Registry } from "../registry.js";

export interface RungContext {
  registry: Registry;
  evictor: Evictor;
  clock: Clock;
  metrics: FactoryMetrics;
  /** How close live pongs have come to their `phi` waits on this factory (ADR 38): `probe` stretches the waits by it. None: φ alone. */
  rttTail?: RttTail;
  /** Defaults the rungs fall back on when a parameter is not given. */
  defaults: RungDefaults;
}

export interface RungDefaults {
  /** `conservative`: idle cutoff on inbound activity (3 heartbeat intervals, at least 2 min). */
  idleMs: number;
  /** `probe`: the longest wait for a pong, default 1000 ms (`--probe-timeout`): a connection with no round trips yet waits this long. */
  probeTimeoutMs: number;
  /** `probe`: how each connection's wait follows its round trips (`--probe-deadline`, ADR 28). */
  probeDeadline: ProbeDeadline;
  /** `probe`: the shortest wait for a pong, however fast the connection's round trips (`--probe-floor`). */
  probeFloorMs: number;
  /** `probe`: a send buffer at or above this, not draining, is stuck; default 1 MiB. */
  bufferThresholdBytes: number;
  /** `degrade`: the raised limit when none is given, default limit + 5. */
  degradeLimit: number;
  /** `degrade`: the highest raise accepted, default 2 × limit. */
  maxDegradeLimit: number;
}

/** What a rung did: the managers it removed. */
export type RungRemovals = Removal[];
