/** Gathers a mini-batch from an in-memory dataset into reusable buffers (no allocation per step). */
import * as tf from '@tensorflow/tfjs';
import { imageSize, type Dataset } from './data/dataset.js';

export class BatchBuilder {
  private readonly x: Float32Array;
  private readonly y: Float32Array;
  private readonly pixels: number;

  constructor(
    private readonly dataset: Dataset,
    /** Largest batch this builder is asked for. */
    readonly maxBatch: number,
  ) {
    this.pixels = imageSize(dataset);
    this.x = new Float32Array(maxBatch * this.pixels);
    this.y = new Float32Array(maxBatch * dataset.numClasses);
  }

  /** Input images [n, h, w, c] and one-hot labels [n, classes] of the given example indices. */
  tensors(indices: ArrayLike<number>): { x: tf.Tensor4D; y: tf.Tensor2D } {
    const n = indices.length;
    const { images, labels, numClasses, shape } = this.dataset;
    const p = this.pixels;
    this.y.fill(0, 0, n * numClasses);
    for (let i = 0; i < n; i++) {
      const src = indices[i] * p;
      this.x.set(images.subarray(src, src + p), i * p);
      this.y[i * numClasses + labels[indices[i]]] = 1;
    }
    return {
      x: tf.tensor4d(this.x.subarray(0, n * p), [n, shape[0], shape[1], shape[2]]),
      y: tf.tensor2d(this.y.subarray(0, n * numClasses), [n, numClasses]),
    };
  }

  /** Tensors of the contiguous example range [start, end). */
  range(start: number, end: number): { x: tf.Tensor4D; y: tf.Tensor2D } {
    const indices = new Uint32Array(end - start);
    for (let i = 0; i < indices.length; i++) indices[i] = start + i;
    return this.tensors(indices);
  }
}
