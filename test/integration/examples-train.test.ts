/**
 * The three examples of examples/, each trained on small data by 2 worker processes as a user would run it:
 * a custom conv net (BatchNorm, Dropout) on MNIST, a tabular regression from a CSV file with a validation
 * split, and the programmatic API with a model factory and in-memory multi-label data. Each exported model
 * reloads with tf.loadLayersModel, predicts what θ_HWA of the checkpoint predicts, and scores the loss the
 * workers reported for it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '@hwa/engine';
import { killAll, runHwa, runNode } from '../helpers/cli.js';
import { compareExport, runReport } from '../helpers/exported.js';
import { maxAbsDiff } from '../helpers/vectors.js';

const examples = fileURLToPath(new URL('../../examples/', import.meta.url));
let root: string;
beforeAll(async () => {
  await selectBackend('wasm');
  root = mkdtempSync(join(tmpdir(), 'hwa-examples-'));
});
afterEach(killAll);
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function expectExportMatches(dir: string): Promise<void> {
  const { evals } = runReport(dir);
  const { exported, rebuilt, loss } = await compareExport(dir);
  expect(maxAbsDiff(exported, rebuilt)).toBeLessThanOrEqual(1e-5);
  expect(loss).toBeCloseTo(evals.at(-1)!.offline.loss, 4);
}

describe('examples/', () => {
  it('custom-cnn: a user conv net with BatchNorm and Dropout on MNIST, 2 workers', async () => {
    const out = join(root, 'cnn');
    const run = runHwa(['train', '--model', join(examples, 'custom-cnn/net.js'), '--dataset', 'mnist', '--train-limit', '256', '--test-limit', '64',
      '--workers', '2', '--batch-size', '32', '--sync-period', '4', '--bn-batches', '2', '--out-dir', out, '--progress', 'off']);
    const { code, output } = await run.done;
    expect(code, output).toBe(0);
    const { config, evals } = runReport(out);
    expect(config.model).toMatch(/custom-cnn\/net\.js#sha256=[0-9a-f]{16}$/);
    expect(evals.at(-1)!.offline.accuracy).toBeGreaterThan(0.1);
    await expectExportMatches(out);
  });

  it('tabular-regression: a CSV through a data module, Adam, MSE with an MAE metric and a validation split', async () => {
    const out = join(root, 'tabular');
    const run = runHwa(['train', '--model', join(examples, 'tabular-regression/net.js'), '--dataset', join(examples, 'tabular-regression/data.js'),
      '--optimizer', 'adam', '--lr', '0.01', '--workers', '2', '--val-fraction', '0.2', '--batch-size', '32', '--epochs', '2', '--sync-period', '4',
      '--out-dir', out, '--progress', 'off']);
    const { code, output } = await run.done;
    expect(code, output).toBe(0);
    const { evals, totals } = runReport(out);
    const last = evals.at(-1)!;
    expect(last.set).toBe('validation');
    // Standardized prices have variance 1: a trained model does far better than predicting the mean.
    expect(last.offline.loss).toBeLessThan(0.5);
    expect(last.offline.metrics?.mae).toBeGreaterThan(0);
    expect(totals.test?.offline.loss).toBeLessThan(0.5);
    expect(output).toMatch(/offline loss \(test\)/);
    await expectExportMatches(out);
  });

  it('api: train() with a model factory and in-memory multi-label data starts 2 worker processes', async () => {
    const out = join(root, 'api');
    const run = runNode([join(examples, 'api/train.mjs'), out]);
    const { code, output } = await run.done;
    expect(code, output).toBe(0);
    expect(output).toMatch(/worker 1 started, pid \d+/);
    expect(output).toMatch(/θ_HWA: [\d.]+% of test examples with all 3 labels right/);
    const { config, evals } = runReport(out);
    expect(config.model).toMatch(/initial-model\/model\.json#sha256=/);
    expect(config.loss).toBe('sigmoid-cross-entropy');
    expect(evals.at(-1)!.offline.accuracy).toBeGreaterThan(0.5);
    await expectExportMatches(out);
  });
});
