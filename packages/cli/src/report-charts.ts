/**
 * The plots of report.html as Vega-Lite specs, from run records. Curves are aggregated here, not in the page:
 * per series and round, the mean over seeds and a band of ± one standard deviation; on a wall-time axis a
 * point sits at the seeds' mean wall time of that round. A single run is a series of one seed (no band).
 */
import type { TopLevelSpec } from 'vega-lite';
import type { EvalRecord, RoundRecord } from '@hwa/core';
import { spread } from './results.js';
import { commMsOf, type RunRecords, type Stamped } from './run-records.js';

/** One plot: its element id suffix, its title and its spec. */
export interface Chart {
  name: string;
  title: string;
  spec: TopLevelSpec;
}

/** A point of an aggregated curve. */
export interface CurvePoint {
  series: string;
  round: number;
  epoch: number;
  /** Mean wall time (s) at this round over the seeds that have it. */
  wall: number;
  mean: number;
  lo: number;
  hi: number;
  /** Seeds at this round. */
  n: number;
}

type Timed = { round: number; epoch: number } & Partial<Stamped>;

/** A named set of runs (the seeds of one mode) and the value each record gives. */
export interface SeriesOf<T extends Timed> {
  series: string;
  items: readonly (readonly T[])[];
  value: (t: T) => number;
}

/** Mean ± std over seeds per series and round, rounds in order. */
export function curves<T extends Timed>(sets: readonly SeriesOf<T>[]): CurvePoint[] {
  return sets.flatMap(({ series, items, value }) => {
    const byRound = new Map<number, T[]>();
    for (const run of items) for (const t of run) byRound.set(t.round, [...(byRound.get(t.round) ?? []), t]);
    return [...byRound.entries()]
      .sort(([a], [b]) => a - b)
      .flatMap(([round, ts]) => {
        const s = spread(ts.map(value));
        if (s.n === 0) return [];
        return [{ series, round, epoch: ts[0].epoch, wall: spread(ts.map((t) => (t.elapsedMs ?? NaN) / 1000)).mean, mean: s.mean, lo: s.mean - s.std, hi: s.mean + s.std, n: s.n }];
      });
  });
}

type Axis = 'epoch' | 'wall' | 'round';
const AXIS_TITLE: Record<Axis, string> = { epoch: 'epoch (per worker)', wall: 'wall time (s)', round: 'round' };

/** A line per series with its ± std band. */
export function curveChart(o: { name: string; title: string; points: CurvePoint[]; x: Axis; y: string; percent?: boolean; order: readonly string[] }): Chart {
  const format = o.percent ? '.1%' : undefined;
  const pointsPerSeries = Math.max(0, ...o.order.map((s) => o.points.filter((p) => p.series === s).length));
  const spec: TopLevelSpec = {
    title: o.title,
    width: 460,
    height: 260,
    // A share cannot leave [0, 1], whatever mean ± std says.
    data: { values: o.points.filter((p) => Number.isFinite(p[o.x]) && Number.isFinite(p.mean)).map((p) => (o.percent ? { ...p, lo: Math.max(0, p.lo), hi: Math.min(1, p.hi) } : p)) as unknown as Record<string, number | string>[] },
    encoding: {
      x: { field: o.x, type: 'quantitative', title: AXIS_TITLE[o.x] },
      color: { field: 'series', type: 'nominal', title: null, scale: { domain: [...o.order] } },
    },
    layer: [
      {
        mark: { type: 'area', opacity: 0.18 },
        encoding: {
          y: { field: 'lo', type: 'quantitative', title: o.y, scale: { zero: false }, axis: format ? { format } : {} },
          y2: { field: 'hi' },
        },
      },
      {
        mark: { type: 'line', point: pointsPerSeries <= 60, strokeWidth: 1.8 },
        encoding: {
          y: { field: 'mean', type: 'quantitative' },
          tooltip: [
            { field: 'series', type: 'nominal' },
            { field: 'round', type: 'quantitative' },
            { field: 'epoch', type: 'quantitative', format: '.2f' },
            { field: 'wall', type: 'quantitative', format: '.1f', title: 'wall time (s)' },
            { field: 'mean', type: 'quantitative', format: format ?? '.4g', title: o.y },
            { field: 'n', type: 'quantitative', title: 'seeds' },
          ],
        },
      },
    ],
  };
  return { name: o.name, title: o.title, spec };
}

/** A group of runs drawn as one series: the seeds of one mode. */
export interface RunGroup {
  series: string;
  runs: readonly RunRecords[];
}

type Model = 'online' | 'offline';
const evalsOf = (g: RunGroup) => g.runs.map((r) => r.evals);
const roundsOf = (g: RunGroup) => g.runs.map((r) => r.rounds);
const accuracy = (m: Model) => (e: EvalRecord) => e[m].accuracy;
const loss = (m: Model) => (e: EvalRecord) => e[m].loss;

/** The training-side plots every report has: training loss, learning rate, communication share per round. */
function trainingCharts(groups: readonly RunGroup[]): Chart[] {
  const order = groups.map((g) => g.series);
  const of = (value: (r: RoundRecord) => number) => curves(groups.map((g) => ({ series: g.series, items: roundsOf(g), value })));
  return [
    curveChart({ name: 'train-loss', title: 'Training loss (mean over the round\'s steps and workers)', points: of((r) => r.loss), x: 'epoch', y: 'training loss', order }),
    curveChart({ name: 'lr', title: 'Learning rate', points: of((r) => r.lr), x: 'epoch', y: 'learning rate', order }),
    curveChart({
      name: 'comm-share',
      title: 'Communication share of each round\'s wall time',
      points: of((r) => (r.wallMs > 0 ? commMsOf(r) / r.wallMs : NaN)),
      x: 'round',
      y: 'share of round wall time',
      percent: true,
      order,
    }),
  ];
}

/** Test accuracy and loss against epochs and wall time, for the given evaluation series. */
function testCharts(sets: { series: string; group: RunGroup; model: Model }[], what: string): Chart[] {
  const order = sets.map((s) => s.series);
  const of = (value: (m: Model) => (e: EvalRecord) => number) =>
    curves(sets.map((s) => ({ series: s.series, items: evalsOf(s.group), value: value(s.model) })));
  const acc = of(accuracy);
  const lss = of(loss);
  return [
    curveChart({ name: 'accuracy-epoch', title: `Test accuracy ${what}`, points: acc, x: 'epoch', y: 'test accuracy', percent: true, order }),
    curveChart({ name: 'accuracy-wall', title: `Test accuracy ${what}, against wall time`, points: acc, x: 'wall', y: 'test accuracy', percent: true, order }),
    curveChart({ name: 'loss-epoch', title: `Test loss ${what}`, points: lss, x: 'epoch', y: 'test loss', order }),
    curveChart({ name: 'loss-wall', title: `Test loss ${what}, against wall time`, points: lss, x: 'wall', y: 'test loss', order }),
  ];
}

const BOTH = (g: RunGroup) => [
  { series: 'online (θ̄)', group: g, model: 'online' as const },
  { series: 'offline (θ_HWA)', group: g, model: 'offline' as const },
];

/** The plots of one run: online and offline model side by side. */
export function runCharts(run: RunRecords): Chart[] {
  const group = { series: run.config.mode, runs: [run] };
  return [...testCharts(BOTH(group), 'of the online and the offline model'), ...trainingCharts([group])];
}

/**
 * The plots of a comparison: each mode's exported (offline) model, mean ± std over seeds; HWA's online and
 * offline models on their own plot when the comparison has hwa runs.
 */
export function comparisonCharts(groups: readonly RunGroup[]): Chart[] {
  const exported = groups.map((g) => ({ series: g.series, group: g, model: 'offline' as const }));
  const hwa = groups.find((g) => g.series === 'hwa');
  const onlineOffline = hwa
    ? [
        curveChart({
          name: 'hwa-online-offline',
          title: 'HWA: online (θ̄) against offline (θ_HWA) test accuracy',
          points: curves(BOTH(hwa).map((s) => ({ series: s.series, items: evalsOf(s.group), value: accuracy(s.model) }))),
          x: 'epoch',
          y: 'test accuracy',
          percent: true,
          order: BOTH(hwa).map((s) => s.series),
        }),
      ]
    : [];
  return [...testCharts(exported, 'of each mode\'s exported model'), ...onlineOffline, ...trainingCharts(groups)];
}
