/**
 * Evaluation on a set of examples and BatchNorm statistics recomputation for averaged models.
 */
import * as tf from '@tensorflow/tfjs';
import { mixSeed, mulberry32, permutation, type EvalTally } from '@hwa/core';
import { BatchBuilder } from './batch.js';
import type { Dataset } from './data/dataset.js';
import { labelledExamples, type Examples } from './data/examples.js';
import { batchSums, makeObjective, type Objective } from './objective.js';

const EVAL_BATCH = 500;
const CROSS_ENTROPY = makeObjective('softmax-cross-entropy');

/**
 * Summed loss, correct count and metric sums of `model` on examples [start, end) of `set` (examples, or a
 * built-in image dataset), under `objective` (default: softmax cross-entropy on one-hot labels, the built-in
 * datasets' loss).
 */
export function evaluateRange(model: tf.LayersModel, set: Examples | Dataset, start = 0, end = set.count, objective: Objective = CROSS_ENTROPY): EvalTally {
  const examples = 'images' in set ? labelledExamples(set) : set;
  const builder = new BatchBuilder(examples, EVAL_BATCH);
  const names = Object.keys(objective.metrics);
  const tally: EvalTally = { loss: 0, correct: objective.correct ? 0 : null, count: Math.max(0, end - start) };
  const metrics = names.map(() => 0);
  for (let from = start; from < end; from += EVAL_BATCH) {
    const to = Math.min(end, from + EVAL_BATCH);
    const values = tf.tidy(() => {
      const { x, y } = builder.range(from, to);
      const sums = batchSums(objective, y, model.predict(x) as tf.Tensor);
      return [sums.loss, sums.correct ?? tf.scalar(0), ...sums.metrics].map((t) => t.dataSync()[0]);
    });
    tally.loss += values[0];
    if (tally.correct !== null) tally.correct += values[1];
    names.forEach((_, i) => (metrics[i] += values[2 + i]));
  }
  if (names.length) tally.metrics = Object.fromEntries(names.map((n, i) => [n, metrics[i]]));
  return tally;
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
export function recomputeBatchNorm(model: tf.LayersModel, train: Examples, batches: readonly Uint32Array[]): void {
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
