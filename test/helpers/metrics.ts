// The Prometheus text format as the tests read it: every sample as `name{labels}` -> value.

/** Prometheus text -> Map('name{labels}' -> value); comment lines and blank lines are skipped. */
export function parseMetrics(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    m.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return m;
}
