/**
 * The numbers behind report.html and `hwa compare`'s table: per-run results, mean ± std over seeds, curves
 * aggregated per round, the markdown table, and `--modes` as a comma list of the schema's modes.
 */
import { describe, expect, it } from 'vitest';
import { Command } from 'commander';
import { makeRunConfig, type EvalRecord, type RoundRecord } from '@hwa/core';
import { curves } from '../../packages/cli/src/report-charts.js';
import { markdownTable, resultsTable, runResult, spread, summarize } from '../../packages/cli/src/results.js';
import type { RunRecords } from '../../packages/cli/src/run-records.js';
import { addSchemaOptions, resolveRunConfig } from '../../packages/cli/src/options.js';
import { compareSchema } from '../../packages/cli/src/commands/compare.js';

const evalAt = (round: number, epoch: number, offline: number, online = offline, elapsedMs = round * 1000): EvalRecord & { elapsedMs: number } => ({
  round,
  epoch,
  online: { accuracy: online, loss: 1 - online },
  offline: { accuracy: offline, loss: 1 - offline },
  elapsedMs,
});

const roundAt = (round: number, samples: number): RoundRecord => ({
  round, epoch: round / 4, step: round * 2, loss: 1 / round, lr: 0.05, samples, wallMs: 100, computeMs: 60, sendMs: 10, waitMs: 5, averageMs: 5, bytes: 0,
});

function records(seed: number, accuracies: number[], finished = true): RunRecords {
  const evals = accuracies.map((a, i) => evalAt(2 * (i + 1), (i + 1) / 2, a));
  const rounds = Array.from({ length: 2 * accuracies.length }, (_, i) => roundAt(i + 1, 32));
  return {
    dir: `/runs/hwa-seed${seed}`,
    config: makeRunConfig({ seed, workers: 2 }),
    rounds,
    evals,
    totals: finished ? ({ samples: 32 * rounds.length, wallMs: 4321 } as RunRecords['totals']) : null,
  };
}

describe('per-run results', () => {
  it('final, best and the first epoch at the target, from the offline model', () => {
    const r = runResult(records(0, [0.5, 0.92, 0.88, 0.91]), 0.9);
    expect(r).toMatchObject({ series: 'hwa', seed: 0, workers: 2, finalAccuracy: 0.91, bestAccuracy: 0.92, epochsToTarget: 1, samples: 256, wallSec: 4.321, finished: true });
    expect(runResult(records(0, [0.5, 0.6]), 0.9).epochsToTarget).toBeNull();
  });

  it('a run without run.json counts its rounds\' samples and its last stamp', () => {
    const r = runResult(records(1, [0.5, 0.6], false), 0.9);
    expect(r.finished).toBe(false);
    expect(r.samples).toBe(4 * 32);
    expect(r.wallSec).toBe(4); // the last eval's elapsedMs, round 4
  });
});

describe('mean ± std over seeds', () => {
  it('is the sample standard deviation (n − 1), and 0 for one value', () => {
    // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum 32, /7.
    expect(spread([2, 4, 4, 4, 5, 5, 7, 9])).toEqual({ mean: 5, std: Math.sqrt(32 / 7), n: 8 });
    expect(spread([0.3])).toEqual({ mean: 0.3, std: 0, n: 1 });
    expect(spread([NaN]).n).toBe(0);
  });

  it('makes one markdown row per mode, in the given order, with seeds that missed the target named', () => {
    const results = [
      runResult(records(0, [0.8, 0.95]), 0.9, 'hwa'),
      runResult(records(1, [0.8, 0.85]), 0.9, 'hwa'),
      runResult(records(0, [0.7, 0.9]), 0.9, 'sgd'),
    ];
    const table = resultsTable(summarize(results, ['sgd', 'hwa']), 0.9);
    expect(table.rows.map((r) => r[0])).toEqual(['sgd', 'hwa']);
    const hwa = table.rows[1];
    // final: 95 and 85 → 90.00 ± 7.07; epochs to 90%: only seed 0 reached it, at epoch 1.
    expect(hwa[3]).toBe(`90.00 ± ${((Math.SQRT2 * 5)).toFixed(2)}`);
    expect(hwa[5]).toBe('1.00 (1 of 2)');
    expect(table.rows[0][3]).toBe('90.00'); // one seed: no ± part
    const md = markdownTable(table).split('\n');
    expect(md[0]).toMatch(/^\| mode +\| K +\| seeds +\| final acc\. \(%\) +\|/);
    expect(md[1]).toMatch(/^\|-+\|-+:\|/);
    expect(md).toHaveLength(4);
    for (const line of md) expect(line.split('|')).toHaveLength(table.header.length + 2);
  });
});

describe('curves over seeds', () => {
  it('are the mean and ± std per round, at the seeds\' mean wall time', () => {
    const a = [evalAt(2, 0.5, 0.6, 0.6, 1000), evalAt(4, 1, 0.8, 0.8, 3000)];
    const b = [evalAt(2, 0.5, 0.7, 0.7, 2000), evalAt(4, 1, 0.9, 0.9, 5000)];
    const points = curves([{ series: 'hwa', items: [a, b], value: (e: EvalRecord) => e.offline.accuracy }]);
    expect(points.map((p) => p.round)).toEqual([2, 4]);
    const sd = Math.sqrt(((0.6 - 0.65) ** 2 + (0.7 - 0.65) ** 2) / 1);
    expect(points[0].mean).toBeCloseTo(0.65, 12);
    expect(points[0].hi - points[0].mean).toBeCloseTo(sd, 12);
    expect(points[0].wall).toBeCloseTo(1.5, 12);
    expect(points[1]).toMatchObject({ epoch: 1, n: 2 });
    expect(points[1].wall).toBeCloseTo(4, 12);
  });
});

describe('--modes', () => {
  const resolve = (flags: Record<string, unknown>) => resolveRunConfig({ flags, schema: compareSchema }).config;

  it('is a comma list of modes, all six by default', () => {
    expect(resolve({}).modes).toEqual(['hwa', 'sgd', 'localsgd', 'swa', 'lawa', 'ema']);
    const command = addSchemaOptions(new Command('compare'), compareSchema).exitOverride();
    command.parse(['--modes', 'sgd,hwa', '--seeds', '2'], { from: 'user' });
    expect(resolve(command.opts()).modes).toEqual(['sgd', 'hwa']);
    expect(resolveRunConfig({ env: { HWA_MODES: 'ema, swa' }, schema: compareSchema }).config.modes).toEqual(['ema', 'swa']);
  });

  it('names a mode that does not exist, and what does', () => {
    expect(() => resolve({ modes: 'sgd,hwx' })).toThrow("--modes: entry 2 'hwx' is not one of hwa, sgd, localsgd, swa, lawa, ema");
  });
});
