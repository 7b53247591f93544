/** Gathers a mini-batch from in-memory examples into reusable buffers (no allocation per step). */
import * as tf from '@tensorflow/tfjs';
import { rowSize, type Examples } from './data/examples.js';

export class BatchBuilder {
  private readonly x: Float32Array;
  private readonly y: Float32Array;
  private readonly xSize: number;
  private readonly ySize: number;

  constructor(
    private readonly examples: Examples,
    /** Largest batch this builder is asked for. */
    readonly maxBatch: number,
  ) {
    this.xSize = rowSize(examples.xShape);
    this.ySize = rowSize(examples.yShape);
    this.x = new Float32Array(maxBatch * this.xSize);
    this.y = new Float32Array(maxBatch * this.ySize);
  }

  /** Inputs [n, ...xShape] and targets [n, ...yShape] of the given example indices. */
  tensors(indices: ArrayLike<number>): { x: tf.Tensor; y: tf.Tensor } {
    const n = indices.length;
    const { x, y, xShape, yShape } = this.examples;
    const xs = this.xSize;
    const ys = this.ySize;
    for (let i = 0; i < n; i++) {
      const k = indices[i];
      this.x.set(x.subarray(k * xs, (k + 1) * xs), i * xs);
      this.y.set(y.subarray(k * ys, (k + 1) * ys), i * ys);
    }
    return {
      x: tf.tensor(this.x.subarray(0, n * xs), [n, ...xShape]),
      y: tf.tensor(this.y.subarray(0, n * ys), [n, ...yShape]),
    };
  }

  /** Tensors of the contiguous example range [start, end). */
  range(start: number, end: number): { x: tf.Tensor; y: tf.Tensor } {
    const indices = new Uint32Array(end - start);
    for (let i = 0; i < indices.length; i++) indices[i] = start + i;
    return this.tensors(indices);
  }
}
