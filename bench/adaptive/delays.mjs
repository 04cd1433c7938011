// The pong delays of the adaptive benchmark's live clients: a seeded,
// heavy-tailed distribution, so that every mode of a run sees the same
// clients (the same per-connection medians, in opening order) and the same
// kind of pongs.
//
// For a profile with median M ms:
//   - each connection gets its own median m = M · e^(σc·Z), σc = 0.5
//     (some clients are near, some far: 90 % of them between 0.44 M and 2.3 M);
//   - each pong of that connection waits d = m · e^(σj·Z'), σj = 0.3 (jitter);
//   - with probability `tailPermille`/1000 (default 20, i.e. 2 %) the pong is
//     10× late: d × 10 (a stalled tab, a radio waking up, a GC pause);
//   - d is capped at `capMs` (default 800 ms), below the heartbeat's 1 s
//     interval and the probe's 1 s ceiling: a pong later than the ceiling is
//     lost by every mode alike and tells nothing about the estimators.
// Z, Z' are standard normal (Box–Muller over mulberry32).

/** The distribution's fixed shape (documented in BENCHMARKS.md). */
export const SHAPE = { sigmaConnection: 0.5, sigmaJitter: 0.3, tailFactor: 10 };

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal draw from `random` (Box–Muller). */
export function normal(random) {
  const u = 1 - random(); // (0, 1]: log(0) never happens
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/**
 * The delay source of one client process: `connectionMedian()` for each new
 * connection, `pong(m)` for each ping it answers (returns `{ ms, late }`).
 */
export function delaySource({ seed, medianMs, tailPermille, capMs }) {
  const connections = prng(seed);
  const pongs = prng(seed ^ 0x9e3779b9);
  return {
    connectionMedian: () => medianMs * Math.exp(SHAPE.sigmaConnection * normal(connections)),
    pong: (m) => {
      const late = pongs() < tailPermille / 1000;
      const d = m * Math.exp(SHAPE.sigmaJitter * normal(pongs)) * (late ? SHAPE.tailFactor : 1);
      return { ms: Math.min(capMs, d), late };
    },
  };
}
