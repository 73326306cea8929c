// A small SVG chart writer (no dependency): horizontal bar charts, grouped bar charts and line
// charts, plain SVG 1.1 text that renders on GitHub and in browsers.

export interface Bar {
  label: string;
  value: number | null;
  /** Text after the bar; defaults to the value. */
  text?: string;
}

const PALETTE = ['#2b6cb0', '#38a169', '#d69e2e', '#c53030', '#805ad5', '#319795', '#dd6b20', '#718096'];
const FONT = 'font-family="-apple-system,Segoe UI,Helvetica,Arial,sans-serif"';

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

export function formatNumber(v: number): string {
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** Horizontal bars, one per item, with the value written after each bar. */
export function barChart(o: { title: string; unit: string; bars: Bar[]; width?: number }): string {
  return groupedBarChart({
    title: o.title,
    unit: o.unit,
    groups: [{ label: '', bars: o.bars }],
    width: o.width,
    colorByBar: false,
  });
}

/** Horizontal bars in groups (e.g. one group per scenario, one bar per router), with a legend. */
export function groupedBarChart(o: {
  title: string;
  unit: string;
  groups: { label: string; bars: Bar[] }[];
  width?: number;
  /** Colour bars by their label (same router, same colour) and draw a legend. */
  colorByBar?: boolean;
  max?: number;
}): string {
  const width = o.width ?? 760;
  const labelW = 250;
  const barH = 18;
  const gap = 6;
  const groupGap = o.groups.length > 1 ? 22 : 0;
  const top = 40;
  const plotW = width - labelW - 90;
  const colorBy = o.colorByBar ?? o.groups.length > 1;
  const names = [...new Set(o.groups.flatMap((g) => g.bars.map((b) => b.label)))];
  const colour = (label: string, i: number): string => PALETTE[(colorBy ? names.indexOf(label) : i) % PALETTE.length];
  const max = o.max ?? Math.max(1e-9, ...o.groups.flatMap((g) => g.bars.map((b) => b.value ?? 0)));
  const parts: string[] = [];
  let y = top;
  for (const g of o.groups) {
    if (g.label) {
      parts.push(`<text x="8" y="${y + 12}" font-size="13" font-weight="600" ${FONT}>${escapeXml(g.label)}</text>`);
      y += 18;
    }
    g.bars.forEach((b, i) => {
      const w = b.value === null ? 0 : Math.max(1, (b.value / max) * plotW);
      parts.push(
        `<text x="${labelW - 8}" y="${y + barH - 5}" font-size="12" text-anchor="end" ${FONT}>${escapeXml(b.label)}</text>`,
      );
      if (b.value !== null)
        parts.push(
          `<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${colour(b.label, i)}"><title>${escapeXml(`${b.label}: ${b.text ?? formatNumber(b.value)} ${o.unit}`)}</title></rect>`,
        );
      const text = b.value === null ? 'n/a' : (b.text ?? formatNumber(b.value));
      parts.push(`<text x="${labelW + w + 6}" y="${y + barH - 5}" font-size="12" ${FONT}>${escapeXml(text)}</text>`);
      y += barH + gap;
    });
    y += groupGap;
  }
  const height = y + 24;
  return svg(width, height, [
    `<text x="8" y="22" font-size="15" font-weight="700" ${FONT}>${escapeXml(o.title)}</text>`,
    `<text x="${width - 8}" y="22" font-size="12" text-anchor="end" fill="#555" ${FONT}>${escapeXml(o.unit)}</text>`,
    `<line x1="${labelW}" y1="${top - 4}" x2="${labelW}" y2="${y - groupGap}" stroke="#999"/>`,
    ...parts,
  ]);
}

export interface Series {
  name: string;
  points: [number, number][];
}

/** Lines with markers; `logX` for flow counts spanning decades. */
export function lineChart(o: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logX?: boolean;
  width?: number;
  height?: number;
}): string {
  const width = o.width ?? 760;
  const height = o.height ?? 380;
  const left = 70;
  const right = 200;
  const top = 40;
  const bottom = 50;
  const pw = width - left - right;
  const ph = height - top - bottom;
  const xs = o.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = o.series.flatMap((s) => s.points.map((p) => p[1]));
  const fx = (v: number): number => (o.logX ? Math.log10(Math.max(v, 1)) : v);
  const x0 = Math.min(...xs.map(fx));
  const x1 = Math.max(...xs.map(fx));
  const yMax = niceCeil(Math.max(1e-9, ...ys));
  const sx = (v: number): number => left + (x1 === x0 ? pw / 2 : ((fx(v) - x0) / (x1 - x0)) * pw);
  const sy = (v: number): number => top + ph - (v / yMax) * ph;
  const parts: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    parts.push(`<line x1="${left}" y1="${sy(v)}" x2="${left + pw}" y2="${sy(v)}" stroke="#e2e2e2"/>`);
    parts.push(
      `<text x="${left - 6}" y="${sy(v) + 4}" font-size="11" text-anchor="end" ${FONT}>${formatNumber(v)}</text>`,
    );
  }
  for (const x of [...new Set(xs)].sort((a, b) => a - b)) {
    parts.push(
      `<text x="${sx(x)}" y="${top + ph + 16}" font-size="11" text-anchor="middle" ${FONT}>${formatNumber(x)}</text>`,
    );
  }
  o.series.forEach((s, i) => {
    const c = PALETTE[i % PALETTE.length];
    const pts = s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${pts}" fill="none" stroke="${c}" stroke-width="2"/>`);
    for (const p of s.points)
      parts.push(
        `<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="3.5" fill="${c}"><title>${escapeXml(`${s.name}: ${formatNumber(p[0])} -> ${formatNumber(p[1])}`)}</title></circle>`,
      );
    parts.push(`<rect x="${left + pw + 16}" y="${top + i * 20}" width="12" height="12" fill="${c}"/>`);
    parts.push(
      `<text x="${left + pw + 34}" y="${top + i * 20 + 11}" font-size="12" ${FONT}>${escapeXml(s.name)}</text>`,
    );
  });
  return svg(width, height, [
    `<text x="8" y="22" font-size="15" font-weight="700" ${FONT}>${escapeXml(o.title)}</text>`,
    `<line x1="${left}" y1="${top + ph}" x2="${left + pw}" y2="${top + ph}" stroke="#999"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + ph}" stroke="#999"/>`,
    `<text x="${left + pw / 2}" y="${height - 12}" font-size="12" text-anchor="middle" ${FONT}>${escapeXml(o.xLabel)}</text>`,
    `<text x="16" y="${top + ph / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 16 ${top + ph / 2})" ${FONT}>${escapeXml(o.yLabel)}</text>`,
    ...parts,
  ]);
}

function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function svg(width: number, height: number, body: string[]): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${Math.ceil(height)}" viewBox="0 0 ${width} ${Math.ceil(height)}">\n<rect width="100%" height="100%" fill="#fff"/>\n${body.join('\n')}\n</svg>\n`;
}
