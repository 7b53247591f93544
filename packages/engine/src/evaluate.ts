/**
 * Test-set evaluation and BatchNorm statistics recomputation for averaged models.
 */
import * as tf from '@tensorflow/tfjs';
import { mixSeed, mulberry32, permutation, type EvalTally } from '@hwa/core';
import { BatchBuilder } from './batch.js';
import type { Dataset } from './data/dataset.js';

const EVAL_BATCH = 500;

/** Summed cross-entropy and correct count of `model` on examples [start, end) of `dataset`. */
export function evaluateRange(model: tf.LayersModel, dataset: Dataset, start = 0, end = dataset.count): EvalTally {
  const builder = new BatchBuilder(dataset, EVAL_BATCH);
  let loss = 0;
  let correct = 0;
  for (let from = start; from < end; from += EVAL_BATCH) {
    const to = Math.min(end, from + EVAL_BATCH);
    const [lossSum, hits] = tf.tidy(() => {
      const { x, y } = builder.range(from, to);
      const logits = model.predict(x) as tf.Tensor2D;
      const perExample = tf.losses.softmaxCrossEntropy(y, logits, undefined, undefined, tf.Reduction.NONE);
      const right = tf.equal(tf.argMax(logits, 1), tf.argMax(y, 1)).sum();
      return [perExample.sum().dataSync()[0], right.dataSync()[0]];
    });
    loss += lossSum;
    correct += hits;
  }
  return { loss, correct, count: Math.max(0, end - start) };
}

interface BatchNormLike {
  momentum: number;
  getClassName(): string;
  getWeights(): tf.Tensor[];
  setWeights(weights: tf.Tensor[]): void;
}

function batchNormLayers(model: tf.LayersModel): BatchNormLike[] {
  return model.layers.filter((l) => l.getClassName() === 'BatchNormalization') as unknown as BatchNormLike[];
}

export function hasBatchNorm(model: tf.LayersModel): boolean {
  return batchNormLayers(model).length > 0;
}

/**
 * Indices of the training batches used to recompute BatchNorm statistics: a fixed draw from the seed (not the
 * rank), so every process recomputes exactly the same statistics for the same weights.
 */
export function batchNormIndices(seed: number, trainCount: number, batches: number, batchSize: number): Uint32Array[] {
  const order = permutation(trainCount, mulberry32(mixSeed(seed, 0xb4)));
  const out: Uint32Array[] = [];
  for (let b = 0; b < batches && (b + 1) * batchSize <= trainCount; b++)
    out.push(order.subarray(b * batchSize, (b + 1) * batchSize));
  return out;
}

/**
 * Like PyTorch's swa_utils.update_bn: resets every BatchNorm layer's moving statistics and re-estimates them
 * as the plain (cumulative) mean over the given batches in training mode. An averaged model's averaged
 * statistics do not match its averaged weights; this makes them match.
 */
export function recomputeBatchNorm(model: tf.LayersModel, train: Dataset, batches: readonly Uint32Array[]): void {
  const layers = batchNormLayers(model);
  if (layers.length === 0 || batches.length === 0) return;
  const saved = layers.map((l) => l.momentum);
  tf.tidy(() => {
    for (const layer of layers) {
      const [gamma, beta, mean, variance] = layer.getWeights();
      layer.setWeights([gamma, beta, tf.zerosLike(mean), tf.onesLike(variance)]);
    }
  });
  const builder = new BatchBuilder(train, batches[0].length);
  batches.forEach((indices, t) => {
    // tfjs updates moving = momentum·moving + (1 − momentum)·batch; momentum t/(t+1) makes it the running mean.
    for (const layer of layers) layer.momentum = t / (t + 1);
    tf.tidy(() => {
      const { x } = builder.tensors(indices);
      model.apply(x, { training: true });
    });
  });
  layers.forEach((l, i) => (l.momentum = saved[i]));
}
