/**
 * Round trips a connection has shown (ping → pong), and how long the probe
 * should wait for its next pong before calling it a zombie (issue 18,
 * ADR 28). Two estimators are kept side by side so that the benchmark can
 * compare them on the same samples:
 *
 * - `rfc6298`: TCP's retransmission timer (RFC 6298): SRTT and RTTVAR
 *   smoothed with α = 1/8, β = 1/4; wait SRTT + 4·RTTVAR.
 * Pings carry a sequence number; only the pong to the last ping counts.
 *
 * - `phi`: a φ accrual failure detector (Hayashibara et al. 2004) with the
 *   exponential model Cassandra uses (P(RTT > t) = e^(−t/mean)), the mean
 *   being the smoothed round trip (SRTT, which weighs the last ~8 most): wait
 *   until φ = −log10 P(RTT > t) reaches `PHI_THRESHOLD`, i.e.
 *   t = φ · ln 10 · SRTT. (A window of recent samples would cost every
 *   connection a buffer; the smoothed mean costs one number.) The exponential tail is
 *   heavy enough that a pong ten times later than usual is still expected;
 *   that is what keeps live tabs from being evicted (the benchmark measures
 *   it).
 *
 * Either way the wait is clamped to [floor, ceiling] (`--probe-floor`,
 * `--probe-timeout`), and a connection with fewer than `MIN_SAMPLES` round
 * trips gets the ceiling.
 *
 * `phi` is stretched where live pongs have come close to it (ADR 38): a
 * factory-wide `RttTail` keeps, for the last `TAIL_WINDOW` round trips of
 * every connection with history, the share of its φ wait (floor included)
 * each one used. When 1 in 1,000 of them used more than 1/`TAIL_MARGIN` of
 * it, every φ wait is stretched so that they would have used that much.
 * Pongs sometimes ten times late (a radio network) stretch it; a quiet
 * network, or an event loop stall shorter than the floor / `TAIL_MARGIN`,
 * does not. A client that delays its pongs on purpose can only lengthen the
 * waits, up to the ceiling (the fixed probe): never evict anyone sooner.
 */

/** Fewer round trips than this: no history, wait the ceiling. */
export const MIN_SAMPLES = 3;
/** φ at which a connection is declared dead (Akka and Cassandra default to 8). */
export const PHI_THRESHOLD = 8;
/** The φ wait in multiples of the SRTT: φ · ln 10 ≈ 18.4. */
export const PHI_RATIO = PHI_THRESHOLD * Math.LN10;
/** Round trips the factory-wide tail keeps (the most recent; 32 KiB). */
export const TAIL_WINDOW = 4096;
/** The tail `phi` covers: the share of its wait that 1 in 1,000 recent round trips exceeded. */
export const TAIL_QUANTILE = 0.999;
/** That share, stretched, may use at most 1/TAIL_MARGIN of a wait. */
export const TAIL_MARGIN = 1.75;

/**
 * How close live pongs have come to their `phi` wait, over every connection
 * of a factory: for each of the last `TAIL_WINDOW` round trips of a
 * connection with history, the round trip over the φ wait it had
 * (max(floor, φ·ln10 × SRTT just before it)). `stretch()` is what every φ
 * wait is multiplied by: `TAIL_MARGIN` × their `TAIL_QUANTILE` quantile, at
 * least 1. The quantile is computed by sorting a copy of the ring when
 * asked, at most once per 1/16 of a window of new round trips once the ring
 * is full, so that a burst of probes costs one sort.
 */
export class RttTail {
  private readonly ring = new Float64Array(TAIL_WINDOW);
  private count = 0;
  /** Shares recorded since `cached` was computed. */
  private fresh = 0;
  private cached = 1;

  /** @param floorMs the probe's floor (`--probe-floor`): the shortest φ wait a round trip is measured against */
  constructor(private readonly floorMs = 0) {}

  /** Records one round trip (ms) of a connection whose SRTT before it was `srttMs`; ignores what is not a finite non-negative time. */
  record(rttMs: number, srttMs: number): void {
    const share = rttMs / Math.max(1, this.floorMs, PHI_RATIO * srttMs);
    if (!(share >= 0) || share === Infinity) return;
    this.ring[this.count % TAIL_WINDOW] = share;
    this.count++;
    this.fresh++;
  }

  /** Round trips recorded so far (the ring holds the last `TAIL_WINDOW`). */
  get samples(): number {
    return this.count;
  }

  /** What every `phi` wait is multiplied by: `TAIL_MARGIN` × the recent `TAIL_QUANTILE` share, at least 1. */
  stretch(): number {
    const held = Math.min(this.count, TAIL_WINDOW);
    if (this.fresh > 0 && (held < TAIL_WINDOW || this.fresh >= TAIL_WINDOW / 16)) {
      const sorted = this.ring.slice(0, held).sort();
      this.cached = Math.max(1, TAIL_MARGIN * sorted[Math.ceil(TAIL_QUANTILE * held) - 1]!);
      this.fresh = 0;
    }
    return this.cached;
  }
}

export type ProbeDeadline = "phi" | "rfc6298" | "fixed";

export class RttEstimator {
  private count = 0;
  /** RFC 6298's smoothed round trip and its variation (ms). */
  srtt = 0;
  rttvar = 0;

  /** Records one round trip, in ms; also in `tail` once the connection has history (`MIN_SAMPLES`). */
  add(rttMs: number, tail?: RttTail): void {
    const r = Math.max(0, rttMs);
    if (this.count >= MIN_SAMPLES) tail?.record(r, this.srtt);
    if (this.count === 0) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.count++;
  }

  /** Round trips recorded so far. */
  get samples(): number {
    return this.count;
  }

  /**
   * How long to wait for the next pong, ms, by `mode`, within [floorMs,
   * ceilingMs]. `stretch` (`RttTail.stretch()`, `phi` only) multiplies the
   * φ wait, floor included.
   */
  deadline(mode: ProbeDeadline, floorMs: number, ceilingMs: number, stretch = 1): number {
    if (mode === "fixed" || this.count < MIN_SAMPLES) return ceilingMs;
    if (mode === "rfc6298") return Math.min(ceilingMs, Math.max(floorMs, this.srtt + 4 * this.rttvar));
    return Math.min(ceilingMs, Math.max(floorMs, PHI_RATIO * this.srtt) * stretch);
  }
}
