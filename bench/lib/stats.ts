// Small statistics shared by the harness and the reports.

/** Median of the finite numbers among `values` (the upper one of an even count), or null for none. */
export function median(values: readonly (number | null | undefined)[]): number | null {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  return v.length ? v[v.length >> 1] : null;
}

/** The smaller of two values where null means "not measured". */
export function minNull(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.min(a, b);
}
