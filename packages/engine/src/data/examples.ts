/**
 * Training examples of any shape held in memory: inputs and targets as flat Float32Arrays, one row per
 * example. Every split a run uses (train, validation, test) is one of these, whether it came from a built-in
 * image dataset or from a user's data module, so batches are gathered by index the same way for all of them
 * and every process draws the same batches (DataOrder).
 */
import { mixSeed, mulberry32, permutation } from '@hwa/core';
import type { Dataset } from './dataset.js';

export interface Examples {
  /** Human-readable name, e.g. "mnist/train" or "./data.js/train". */
  readonly name: string;
  /** Number of examples. */
  readonly count: number;
  /** Shape of one input, e.g. [28, 28, 1] for an image, [13] for a table row, [50, 8] for a sequence. */
  readonly xShape: readonly number[];
  /** count × size(xShape) floats, example after example. */
  readonly x: Float32Array;
  /** Shape of one target: [classes] for one-hot or multi-label, [] for a class index or one value, [k] for k values. */
  readonly yShape: readonly number[];
  /** count × size(yShape) floats. */
  readonly y: Float32Array;
}

/** The splits of a run. Evaluations during training use `validation` when there is one, else `test`. */
export interface ExampleSplits {
  readonly train: Examples;
  readonly test: Examples;
  /** Held-out examples for model selection; the test set is then scored only at the end. */
  readonly validation?: Examples;
}

/** Floats in one row of a shape. */
export function rowSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** An image-classification dataset as examples: images as inputs, one-hot labels as targets. */
export function labelledExamples(d: Dataset): Examples {
  const y = new Float32Array(d.count * d.numClasses);
  for (let i = 0; i < d.count; i++) y[i * d.numClasses + d.labels[i]] = 1;
  return { name: d.name, count: d.count, xShape: d.shape, x: d.images, yShape: [d.numClasses], y };
}

/** Examples [start, end) of `e`, sharing its memory. */
export function sliceExamples(e: Examples, start: number, end: number, name = e.name): Examples {
  const xs = rowSize(e.xShape);
  const ys = rowSize(e.yShape);
  return { ...e, name, count: end - start, x: e.x.subarray(start * xs, end * xs), y: e.y.subarray(start * ys, end * ys) };
}

/** The examples at `indices`, copied in that order. */
export function pickExamples(e: Examples, indices: ArrayLike<number>, name: string): Examples {
  const xs = rowSize(e.xShape);
  const ys = rowSize(e.yShape);
  const x = new Float32Array(indices.length * xs);
  const y = new Float32Array(indices.length * ys);
  for (let i = 0; i < indices.length; i++) {
    const k = indices[i];
    x.set(e.x.subarray(k * xs, (k + 1) * xs), i * xs);
    y.set(e.y.subarray(k * ys, (k + 1) * ys), i * ys);
  }
  return { ...e, name, count: indices.length, x, y };
}

/** How many of `count` training examples {@link holdOut} moves to validation. */
export function heldOutCount(count: number, fraction: number): number {
  return Math.round(fraction * count);
}

/**
 * `--val-fraction`: holds out round(fraction × count) training examples, drawn by a permutation of the seed,
 * as the validation set; the rest (in their original order) is the training set. Every process draws the
 * same split from the same seed.
 */
export function holdOut(train: Examples, fraction: number, seed: number): { train: Examples; validation: Examples } {
  const held = heldOutCount(train.count, fraction);
  const order = permutation(train.count, mulberry32(mixSeed(seed, 0x7a1)));
  const validation = Array.from(order.subarray(0, held)).sort((a, b) => a - b);
  const kept = Array.from(order.subarray(held)).sort((a, b) => a - b);
  const base = train.name.replace(/\/train$/, '');
  return { train: pickExamples(train, kept, train.name), validation: pickExamples(train, validation, `${base}/validation`) };
}
