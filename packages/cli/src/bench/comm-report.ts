/**
 * What `hwa bench comm` prints and writes (docs/measurements.md#the-communication-benchmark): the table of
 * cases as they are measured, the per-K comparison of hwa's flat and node-averaged rounds with gloo, the
 * averaging-kernel lines, the JSON results and the SVG plot. No targets: the figures speak for themselves.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { bytesPerElement } from '@hwa/protocol';
import { fmtCount, type BenchCommOptions, type BenchSink, type CaseResult, type CommBench } from './comm-bench.js';
import type { GlooResult } from './comm-gloo.js';
import { lineChartSvg, type Series } from './svg-chart.js';

/** Milliseconds with 3 significant digits or so; '-' for none. */
export const ms = (x: number) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2)) : '-');

const COLUMNS = [
  ['N', 6], ['K', 2], ['path', 5], ['tr', 4], ['thr', 3], ['dtype', 8], ['chunk', 6], ['round min/med/max ms', 21], ['GB/s', 5], ['echo ms', 7],
  ['÷echo', 6], ['avg ms', 7], ['kernel ms', 9], ['avg÷memcpy', 10], ['enc ms', 6], ['offl ms', 7], ['conv e/d ms', 11],
] as const;

function row(cells: string[]): string {
  return cells.map((cell, i) => cell.padStart(COLUMNS[i][1])).join('  ');
}

/** "flat" or "G=4" (node averagers of 4 workers). */
const pathName = (perNode: number) => (perNode > 1 ? `G=${perNode}` : 'flat');

function tableRow(r: CaseResult): string {
  return row([
    fmtCount(r.floats), String(r.workers), pathName(r.perNode), r.transport, String(r.averageThreads), r.dtype, r.chunkFloats ? fmtCount(r.chunkFloats) : 'none',
    `${ms(r.round.min)}/${ms(r.round.median)}/${ms(r.round.max)}`, r.roundGBps.toFixed(2), ms(r.echo.median),
    Number.isFinite(r.roundOverEcho) ? r.roundOverEcho.toFixed(2) : '-', ms(r.coordinator.mean.median), ms(r.inProcess.average.median),
    `${(r.averageOverMemcpy * 100).toFixed(0)}%`, ms(r.coordinator.encode.median), ms(r.coordinator.offline.median),
    `${ms(r.inProcess.encode.median)}/${ms(r.inProcess.decode.median)}`,
  ]);
}

function glooLine(g: GlooResult): string {
  return `gloo all-reduce N=${fmtCount(g.floats)} K=${g.procs}: ${g.error ? `failed (${g.error})` : `median ${ms(g.median_ms)} ms (min ${ms(g.min_ms)}, max ${ms(g.max_ms)}), torch ${g.torch}`}\n`;
}

/** The first lines, then the table's rows and the gloo lines as they come. */
export function printingSink(o: BenchCommOptions, out: NodeJS.WritableStream): BenchSink {
  const tunables = process.env.GLIBC_TUNABLES ?? 'unset';
  out.write(
    `hwa bench comm: ${o.rounds} measured rounds after ${o.warmup} warm-up, mode ${o.mode}${o.mode === 'hwa' ? ` (window ${o.window})` : ''}; ` +
      `${cpus().length} cores, load ${loadavg()[0].toFixed(2)}; GLIBC_TUNABLES ${tunables}\n` +
      `path: flat = every worker to the coordinator; G=n = node averagers of n workers (shared memory), they to the coordinator over tr\n\n`,
  );
  out.write(row(COLUMNS.map(([name]) => name)) + '\n');
  return {
    skipped: (why) => out.write(`skipped ${why}\n`),
    result: (r) => out.write(tableRow(r) + '\n'),
    gloo: (g) => out.write(glooLine(g)),
  };
}

/** The fastest of `results` by median round, or undefined. */
function fastest(results: readonly CaseResult[]): CaseResult | undefined {
  return results.reduce<CaseResult | undefined>((b, r) => (!b || r.round.median < b.round.median ? r : b), undefined);
}

/** "shm ×2": a transport and, for rounds averaged on several threads, how many. */
const transportName = (r: CaseResult) => `${r.transport}${r.averageThreads > 1 ? ` ×${r.averageThreads}` : ''}`;

const option = (r: CaseResult) => `${transportName(r)} ${r.dtype}${r.chunkFloats ? ` c${fmtCount(r.chunkFloats)}` : ''}`;

/** Per N and K: the best flat round, the best node-averaged round, gloo, and hwa's best ÷ gloo. */
export function perWorkersTable(bench: CommBench): string {
  const lines = [
    ['N', 'K', 'flat best ms (option)', 'node-averaged best ms (G, option)', 'gloo ms', 'hwa best ÷ gloo'],
  ];
  const keys = [...new Set(bench.results.map((r) => `${r.floats}:${r.workers}`))];
  for (const key of keys) {
    const [floats, workers] = key.split(':').map(Number);
    const cases = bench.results.filter((r) => r.floats === floats && r.workers === workers);
    const flat = fastest(cases.filter((r) => r.perNode === 1));
    const node = fastest(cases.filter((r) => r.perNode > 1));
    const best = fastest(cases);
    const g = bench.gloo.find((x) => x.floats === floats && x.procs === workers && !x.error);
    lines.push([
      fmtCount(floats), String(workers),
      flat ? `${ms(flat.round.median)} (${option(flat)})` : '-',
      node ? `${ms(node.round.median)} (G=${node.perNode}, ${option(node)})` : '-',
      g ? ms(g.median_ms) : '-',
      g && best ? (best.round.median / g.median_ms).toFixed(2) : '-',
    ]);
  }
  const widths = lines[0].map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  return lines.map((l) => l.map((cell, i) => cell.padStart(widths[i])).join('  ')).join('\n') + '\n';
}

/** The summary after the table: the per-K comparison and the averaging kernel against memcpy. */
export function summaryText(bench: CommBench, o: BenchCommOptions): string {
  let text = `\nmedian round per N and K (hwa: the fastest wire option measured; gloo: PyTorch all-reduce${o.gloo ? '' : ', not run: --gloo PYTHON'}):\n`;
  text += perWorkersTable(bench);
  // The kernel is timed once per N and K: one line per pair, whatever the thread counts of the rounds.
  const seen = new Set<string>();
  for (const r of bench.results.filter((x) => x.dtype === 'float32' && x.perNode === 1 && x.transport === o.transports[0])) {
    if (seen.has(`${r.floats}/${r.workers}`)) continue;
    seen.add(`${r.floats}/${r.workers}`);
    text +=
      `averaging N=${fmtCount(r.floats)} K=${r.workers}: ${r.averageGBps.toFixed(2)} GB/s = ${(r.averageOverMemcpy * 100).toFixed(0)}% of memcpy ${r.memcpyGBps.toFixed(2)} GB/s ` +
      `(kernel on staged blocks, as shm rounds run it); ${r.averageStagedGBps.toFixed(2)} GB/s = ${((r.averageStagedGBps / r.memcpyGBps) * 100).toFixed(0)}% ` +
      `when the inputs are first copied in from JS memory, as frame rounds do\n`;
  }
  return text;
}

/** Writes the JSON results to `o.out` and the SVG plot next to it; returns the SVG's path. */
export function writeResults(bench: CommBench, o: BenchCommOptions): string {
  const svgFile = o.out.replace(/\.json$/i, '') + '.svg';
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(
    o.out,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        cpu: cpus()[0]?.model ?? 'unknown',
        cores: cpus().length,
        memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
        loadAverage: { before: Number(bench.startedLoad.toFixed(2)), after: Number(loadavg()[0].toFixed(2)) },
        command: `hwa ${process.argv.slice(2).join(' ')}`,
        glibcTunables: process.env.GLIBC_TUNABLES ?? null,
        definitions: {
          round: "coordinator wall time from one round's averages being queued to the next round's (ms)",
          perNode: 'workers per node averager; 1 = flat (every worker to the coordinator)',
          averageThreads: 'threads that averaged each shm round in the coordinator (--average-threads, resolved; 1 for other transports and short vectors)',
          bytesPerRound: '2·C·N·bytes per element through the coordinator (C vectors in, C averages out; C = K flat, K/G node-averaged)',
          GBps: 'bytes per round / median time, 1e9 bytes per GB',
          averageGBps: 'K·N·4 input bytes / median time of the standalone mean kernel on inputs in its staging slots (shm rounds)',
          averageStagedGBps: 'the same with the inputs copied into the slots from JS memory first (frame rounds)',
          memcpyGBps: 'N·4 bytes / median time of Float32Array.set',
        },
        options: o,
        results: bench.results,
        gloo: bench.gloo,
        skipped: bench.skipped,
      },
      null,
      2,
    ) + '\n',
  );
  writeFileSync(svgFile, chart(bench.results));
  return svgFile;
}

/** Round time vs N: one solid line per path/transport/dtype/K(/chunk), dashed raw-echo ceilings. */
function chart(results: CaseResult[]): string {
  const series = new Map<string, Series>();
  const multiK = new Set(results.map((r) => r.workers)).size > 1;
  const multiChunk = new Set(results.map((r) => r.chunkFloats)).size > 1;
  const add = (name: string, x: number, y: number, dashed: boolean) => {
    const s = series.get(name) ?? { name, points: [], dashed };
    if (!s.points.some(([px]) => px === x)) s.points.push([x, y]);
    series.set(name, s);
  };
  for (const r of results) {
    const k = multiK ? ` K${r.workers}` : '';
    const chunk = multiChunk ? ` c${r.chunkFloats ? fmtCount(r.chunkFloats) : '-'}` : '';
    const path = r.perNode > 1 ? ` G${r.perNode}` : '';
    add(`${transportName(r)} ${r.dtype}${k}${path}${chunk}`, r.floats, r.round.median, false);
  }
  for (const r of results.filter((x) => x.perNode === 1))
    add(`echo ${r.transport} ${bytesPerElement(r.dtype) * 8}-bit${multiK ? ` K${r.workers}` : ''}`, r.floats, r.echo.median, true);
  const ks = [...new Set(results.map((r) => r.workers))].join(',');
  return lineChartSvg({
    title: `hwa sync round time vs model size (K=${ks}; G: node-averaged; dashed: raw zeromq echo of the same bytes)`,
    xLabel: 'model size (floats)',
    yLabel: 'median round time (ms)',
    series: [...series.values()],
    formatX: fmtCount,
  });
}
