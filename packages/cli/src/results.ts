/**
 * The results of runs as numbers and as a table: per run its final and best test accuracy, the epochs it
 * took to reach a target accuracy, its samples and wall time; per mode the mean ± standard deviation of each
 * over seeds. `hwa compare` prints the table as markdown and report.html shows it as HTML.
 *
 * Accuracy is the offline model's (θ_HWA): the model each mode exports. For sgd and localsgd it is θ̄.
 */
import type { RunRecords } from './run-records.js';

/** What one run achieved. */
export interface RunResult {
  /** The run's series: its mode in a comparison. */
  series: string;
  seed: number;
  /** K, the run's model copies. */
  workers: number;
  /** Test accuracy of the offline model at the last evaluation (NaN when it has none). */
  finalAccuracy: number;
  /** The online model's (θ̄), for comparison. */
  finalOnlineAccuracy: number;
  /** Highest offline test accuracy of any evaluation. */
  bestAccuracy: number;
  finalLoss: number;
  /** Epoch of the first evaluation at or above the target accuracy; null when none reached it. */
  epochsToTarget: number | null;
  /** Training samples, all workers, all rounds. */
  samples: number;
  wallSec: number;
  /** Whether the run finished (it has run.json's totals). */
  finished: boolean;
}

/**
 * One run's results.
 * @param target - accuracy in [0, 1] for `epochsToTarget`.
 */
export function runResult(records: RunRecords, target: number, series: string = records.config.mode): RunResult {
  const { evals, rounds, totals, config } = records;
  const last = evals.at(-1);
  const reached = evals.find((e) => e.offline.accuracy >= target);
  const lastStamp = [...rounds, ...evals].reduce((a, r) => Math.max(a, r.elapsedMs ?? 0), 0);
  return {
    series,
    seed: config.seed,
    workers: config.workers ?? 1,
    finalAccuracy: last?.offline.accuracy ?? NaN,
    finalOnlineAccuracy: last?.online.accuracy ?? NaN,
    bestAccuracy: evals.length ? Math.max(...evals.map((e) => e.offline.accuracy)) : NaN,
    finalLoss: last?.offline.loss ?? NaN,
    epochsToTarget: reached ? reached.epoch : null,
    samples: totals?.samples ?? rounds.reduce((a, r) => a + r.samples, 0),
    wallSec: (totals?.wallMs ?? lastStamp) / 1000,
    finished: totals !== null,
  };
}

/** Mean and sample standard deviation (n − 1; 0 for a single value) of the finite values. */
export interface Spread {
  mean: number;
  std: number;
  n: number;
}

export function spread(values: readonly number[]): Spread {
  const xs = values.filter(Number.isFinite);
  const n = xs.length;
  if (n === 0) return { mean: NaN, std: NaN, n: 0 };
  const mean = xs.reduce((a, x) => a + x, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}

/** A series' results over its seeds. */
export interface SeriesSummary {
  series: string;
  workers: number;
  /** Seeds with results, and how many of them finished. */
  runs: number;
  finished: number;
  finalAccuracy: Spread;
  finalOnlineAccuracy: Spread;
  bestAccuracy: Spread;
  finalLoss: Spread;
  /** Over the runs that reached the target; `reached` of `runs` did. */
  epochsToTarget: Spread;
  reached: number;
  samples: Spread;
  wallSec: Spread;
}

/** Results grouped by series, in the order of `order` (series not in it follow in order of appearance). */
export function summarize(results: readonly RunResult[], order: readonly string[] = []): SeriesSummary[] {
  const names = [...new Set([...order.filter((s) => results.some((r) => r.series === s)), ...results.map((r) => r.series)])];
  return names.map((series) => {
    const rs = results.filter((r) => r.series === series);
    const of = (f: (r: RunResult) => number) => spread(rs.map(f));
    const reached = rs.flatMap((r) => (r.epochsToTarget === null ? [] : [r.epochsToTarget]));
    return {
      series,
      workers: Math.max(...rs.map((r) => r.workers)),
      runs: rs.length,
      finished: rs.filter((r) => r.finished).length,
      finalAccuracy: of((r) => r.finalAccuracy),
      finalOnlineAccuracy: of((r) => r.finalOnlineAccuracy),
      bestAccuracy: of((r) => r.bestAccuracy),
      finalLoss: of((r) => r.finalLoss),
      epochsToTarget: spread(reached),
      reached: reached.length,
      samples: of((r) => r.samples),
      wallSec: of((r) => r.wallSec),
    };
  });
}

/** A table as header and rows of text, for markdown and HTML alike. */
export interface TextTable {
  header: string[];
  rows: string[][];
}

/** `97.12 ± 0.08` (× scale, fixed digits); the ± part only with more than one value; `–` for none. */
export function formatSpread(s: Spread, digits: number, scale = 1): string {
  if (s.n === 0) return '–';
  const mean = (s.mean * scale).toFixed(digits);
  return s.n > 1 ? `${mean} ± ${(s.std * scale).toFixed(digits)}` : mean;
}

/** The results table: one row per series, mean ± std over its seeds. */
export function resultsTable(summaries: readonly SeriesSummary[], target: number): TextTable {
  const pct = (target * 100).toFixed(target * 100 === Math.round(target * 100) ? 0 : 1);
  return {
    header: ['mode', 'K', 'seeds', 'final acc. (%)', 'best acc. (%)', `epochs to ${pct}%`, 'final test loss', 'samples / run', 'wall time (s)'],
    rows: summaries.map((s) => [
      s.series,
      String(s.workers),
      s.finished === s.runs ? String(s.runs) : `${s.runs} (${s.finished} finished)`,
      formatSpread(s.finalAccuracy, 2, 100),
      formatSpread(s.bestAccuracy, 2, 100),
      s.reached === 0 ? 'not reached' : `${formatSpread(s.epochsToTarget, 2)}${s.reached < s.runs ? ` (${s.reached} of ${s.runs})` : ''}`,
      formatSpread(s.finalLoss, 4),
      formatSpread(s.samples, 0),
      formatSpread(s.wallSec, 1),
    ]),
  };
}

/** A table in GitHub markdown, columns padded so that it reads as text too. */
export function markdownTable(t: TextTable): string {
  const cells = [t.header, ...t.rows].map((r) => r.map((c) => c.replace(/\|/g, '\\|')));
  const widths = t.header.map((_, i) => Math.max(3, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 2)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(cells[0]), rule, ...cells.slice(1).map(line)].join('\n');
}
