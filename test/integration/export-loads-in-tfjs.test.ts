/**
 * The shipped artifact: the final offline (HWA) model exported as a tfjs LayersModel folder loads with
 * tf.loadLayersModel and scores exactly what the trainer reported — for a plain model and for one with
 * BatchNorm, whose statistics are recomputed before export.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeRunConfig, trainingPart } from '@hwa/core';
import {
  evaluateRange,
  loadDataset,
  loadLayersModelFromDir,
  saveLayersModel,
  selectBackend,
  trainInProcess,
  WeightLayout,
} from '@hwa/engine';

let dir: string;
beforeAll(async () => {
  await selectBackend('wasm');
  dir = mkdtempSync(join(tmpdir(), 'hwa-export-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('exported offline model', () => {
  it('MLP on MNIST: reloaded model has the reported accuracy and the offline weights', async () => {
    const config = trainingPart(makeRunConfig({ trainLimit: 4096, testLimit: 1000, epochs: 1, workers: 2, syncPeriod: 8, window: 4 }));
    const data = await loadDataset('mnist', { trainLimit: config.trainLimit, testLimit: config.testLimit });
    const result = await trainInProcess(config, data);
    const reported = result.evals.at(-1)!.offline;
    expect(reported.accuracy).toBeGreaterThan(0.8);

    result.trainer.prepareForEval(result.offline);
    await saveLayersModel(result.trainer.model, join(dir, 'mlp'));
    const manifest = JSON.parse(readFileSync(join(dir, 'mlp', 'model.json'), 'utf8')) as { format: string };
    expect(manifest.format).toBe('layers-model');

    const loaded = await loadLayersModelFromDir(join(dir, 'mlp'));
    const flat = new WeightLayout(loaded).snapshot();
    expect(Array.from(flat)).toEqual(Array.from(result.offline));
    const tally = evaluateRange(loaded, data.test);
    expect(tally.correct! / tally.count).toBe(reported.accuracy);
    loaded.dispose();
    result.trainer.dispose();
  });

  it('ResNet-20 with BatchNorm: recomputed statistics are exported and predictions match', async () => {
    const config = trainingPart(
      makeRunConfig({ model: 'resnet20', dataset: 'synthetic', trainLimit: 64, testLimit: 16, batchSize: 8, epochs: 0.25, workers: 2, syncPeriod: 1, bnBatches: 2 }),
    );
    const data = await loadDataset('synthetic', { trainLimit: 64, testLimit: 16 });
    // synthetic is 28×28×1 by default; ResNet-20 takes any image size.
    const result = await trainInProcess(config, data);
    result.trainer.prepareForEval(result.offline);
    const before = tf.tidy(() => (result.trainer.model.predict(tf.tensor4d(data.test.images, [16, 28, 28, 1])) as tf.Tensor).arraySync());
    await saveLayersModel(result.trainer.model, join(dir, 'resnet'));
    const loaded = await loadLayersModelFromDir(join(dir, 'resnet'));
    const after = tf.tidy(() => (loaded.predict(tf.tensor4d(data.test.images, [16, 28, 28, 1])) as tf.Tensor).arraySync());
    expect(after).toEqual(before);
    // Recomputed statistics differ from the averaged ones that the offline vector carries.
    const exported = new WeightLayout(loaded).snapshot();
    const layout = new WeightLayout(loaded);
    const stats = layout.entries.filter((e) => !e.trainable);
    expect(stats.length).toBeGreaterThan(0);
    const differs = stats.some((e) => exported.subarray(e.offset, e.offset + e.size).some((v, i) => v !== result.offline[e.offset + i]));
    expect(differs).toBe(true);
    loaded.dispose();
    result.trainer.dispose();
  });
});
