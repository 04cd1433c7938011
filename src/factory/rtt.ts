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
 */

/** Fewer round trips than this: no history, wait the ceiling. */
export const MIN_SAMPLES = 3;
/** φ at which a connection is declared dead (Akka and Cassandra default to 8). */
export const PHI_THRESHOLD = 8;

export type ProbeDeadline = "phi" | "rfc6298" | "fixed";

export class RttEstimator {
  private count = 0;
  /** RFC 6298's smoothed round trip and its variation (ms). */
  srtt = 0;
  rttvar = 0;

  /** Records one round trip, in ms. */
  add(rttMs: number): void {
    const r = Math.max(0, rttMs);
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

  /** How long to wait for the next pong, ms, by `mode`, within [floorMs, ceilingMs]. */
  deadline(mode: ProbeDeadline, floorMs: number, ceilingMs: number): number {
    if (mode === "fixed" || this.count < MIN_SAMPLES) return ceilingMs;
    const raw = mode === "rfc6298" ? this.srtt + 4 * this.rttvar : PHI_THRESHOLD * Math.LN10 * this.srtt;
    return Math.min(ceilingMs, Math.max(floorMs, raw));
  }
}
