// Latency histogram: 1 µs buckets below 2048 µs, then 128 log-spaced buckets per octave.
// Fixed size, no allocation per sample; mergeable across sinks.

const LINEAR = 2048;
const PER_OCTAVE = 128;
export const HISTOGRAM_BUCKETS = LINEAR + PER_OCTAVE * 16;

export function bucketOf(us: number): number {
  if (!(us > 0)) return 0;
  if (us < LINEAR) return Math.floor(us);
  const b = LINEAR + Math.floor((Math.log2(us) - 11) * PER_OCTAVE);
  return b < HISTOGRAM_BUCKETS ? b : HISTOGRAM_BUCKETS - 1;
}

/** Lower bound (µs) of a bucket. */
export function bucketValue(b: number): number {
  if (b < LINEAR) return b;
  return 2 ** ((b - LINEAR) / PER_OCTAVE + 11);
}

export function percentile(hist: ArrayLike<number>, p: number): number | null {
  let total = 0;
  for (let i = 0; i < hist.length; i++) total += hist[i];
  if (total === 0) return null;
  const rank = Math.ceil((p / 100) * total);
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i];
    if (seen >= rank) return bucketValue(i);
  }
  return bucketValue(hist.length - 1);
}
