// A model of the adaptive bench, without sockets: the numbers behind ADR 38's
// TAIL_QUANTILE and TAIL_MARGIN. 1,000 connections draw pongs from the
// bench's own delays (delays.mjs) plus a lognormal overhead per round trip,
// keep an EWMA SRTT each (α = 1/8), pool their ratios in a ring of 4,096, and
// are probed every 2 sweeps; 5 % are replaced by fresh ones each round.
// Prints false evictions per 200,000 probes and the waits' p50 / p99.
//
//   node bench/adaptive/model.mjs MEDIAN_MS OVERHEAD_MS QUANTILE MARGIN
//   node bench/adaptive/model.mjs 20 0.5 0 0         # φ alone
//   node bench/adaptive/model.mjs 20 0.5 0.999 1.75  # ADR 38
//   node bench/adaptive/model.mjs 1 5 0.999 1.75     # loopback-like
import { delaySource, normal, prng } from "./delays.mjs";

const [medianMs, overheadMs, quantile, margin] = process.argv.slice(2).map(Number);
const PHI = 8 * Math.LN10;
const WINDOW = 4096;
const N = 1000;
const FLOOR = 100;

function run(seed) {
  const src = delaySource({ seed, medianMs, tailPermille: 20, capMs: 800 });
  const random = prng(seed + 7);
  const ring = [];
  let next = 0;
  const fresh = () => ({ m: src.connectionMedian(), srtt: 0, n: 0 });
  const measure = (c) => src.pong(c.m).ms + overheadMs * Math.exp(0.5 * normal(random));
  const add = (c, r) => {
    if (c.n >= 3) {
      const ratio = r / Math.max(FLOOR, PHI * c.srtt);
      if (ring.length < WINDOW) ring.push(ratio);
      else ring[next++ % WINDOW] = ratio;
    }
    c.srtt = c.n === 0 ? r : 0.875 * c.srtt + 0.125 * r;
    c.n++;
  };
  const warm = (c) => {
    for (let s = 0; s < 8; s++) add(c, measure(c));
    return c;
  };
  const conns = Array.from({ length: N }, () => warm(fresh()));
  let falseEvictions = 0;
  const waits = [];
  for (let round = 0; round < 200; round++) {
    for (let s = 0; s < 2; s++) for (const c of conns) add(c, measure(c));
    let stretch = 1;
    if (margin > 0 && ring.length > 0) {
      const sorted = [...ring].sort((a, b) => a - b);
      stretch = Math.max(1, margin * sorted[Math.max(0, Math.ceil(quantile * sorted.length) - 1)]);
    }
    for (const c of conns) {
      const r = measure(c);
      const wait = Math.min(1000, Math.max(FLOOR, PHI * c.srtt) * stretch);
      waits.push(wait);
      if (r > wait) falseEvictions++;
      add(c, r);
    }
    for (let i = 0; i < N / 20; i++) conns[Math.floor(random() * N)] = warm(fresh());
  }
  waits.sort((a, b) => a - b);
  return { falseEvictions, probes: waits.length, waitP50: Math.round(waits[waits.length >> 1]), waitP99: Math.round(waits[Math.floor(waits.length * 0.99)]) };
}

for (const seed of [1, 2, 3]) console.log(JSON.stringify({ seed, ...run(seed) }));
