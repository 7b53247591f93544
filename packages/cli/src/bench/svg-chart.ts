/**
 * A log-log line chart as a standalone SVG string, written by hand (no plotting dependency): enough for
 * "round time vs model size, one line per transport/dtype" with dashed ceilings.
 */

/** One line of the chart. */
export interface Series {
  name: string;
  /** [x, y] points, both > 0 (log axes). */
  points: [number, number][];
  /** Draw dashed (ceilings, references). */
  dashed?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Formats an x tick (default: the number). */
  formatX?: (x: number) => string;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Powers of ten (and 2×, 5× between them) that fall in [lo, hi]. */
function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) ticks.push(v);
    }
  return ticks;
}

export function lineChartSvg(o: ChartOptions): string {
  const width = 820;
  const height = 480;
  const m = { left: 70, right: 230, top: 40, bottom: 55 };
  const pts = o.series.flatMap((s) => s.points).filter(([x, y]) => x > 0 && y > 0);
  if (pts.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="60"><text x="10" y="30">${escape(o.title)}: no data</text></svg>\n`;
  // Pad the ranges a little so single points and flat lines still get an axis.
  const [x0, x1] = [Math.min(...pts.map((p) => p[0])) / 1.3, Math.max(...pts.map((p) => p[0])) * 1.3];
  const [y0, y1] = [Math.min(...pts.map((p) => p[1])) / 1.3, Math.max(...pts.map((p) => p[1])) * 1.3];
  const sx = (x: number) => m.left + ((Math.log(x) - Math.log(x0)) / (Math.log(x1) - Math.log(x0))) * (width - m.left - m.right);
  const sy = (y: number) => height - m.bottom - ((Math.log(y) - Math.log(y0)) / (Math.log(y1) - Math.log(y0))) * (height - m.top - m.bottom);
  const fx = o.formatX ?? ((x: number) => String(x));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${m.left}" y="22" font-size="15" font-weight="bold">${escape(o.title)}</text>`,
  ];
  for (const t of logTicks(x0, x1)) {
    out.push(`<line x1="${sx(t).toFixed(1)}" y1="${m.top}" x2="${sx(t).toFixed(1)}" y2="${height - m.bottom}" stroke="#eee"/>`);
    out.push(`<text x="${sx(t).toFixed(1)}" y="${height - m.bottom + 16}" text-anchor="middle">${escape(fx(t))}</text>`);
  }
  for (const t of logTicks(y0, y1)) {
    out.push(`<line x1="${m.left}" y1="${sy(t).toFixed(1)}" x2="${width - m.right}" y2="${sy(t).toFixed(1)}" stroke="#eee"/>`);
    out.push(`<text x="${m.left - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${width - m.left - m.right}" height="${height - m.top - m.bottom}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${(m.left + width - m.right) / 2}" y="${height - 15}" text-anchor="middle">${escape(o.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${(m.top + height - m.bottom) / 2}) rotate(-90)" text-anchor="middle">${escape(o.yLabel)}</text>`);
  o.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const points = s.points.filter(([x, y]) => x > 0 && y > 0).sort((a, b) => a[0] - b[0]);
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    if (points.length > 1)
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash} points="${points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of points) out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = m.top + 8 + i * 18;
    out.push(`<line x1="${width - m.right + 12}" y1="${ly}" x2="${width - m.right + 40}" y2="${ly}" stroke="${color}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${width - m.right + 46}" y="${ly + 4}">${escape(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
