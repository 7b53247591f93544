/** hwa's wasm MaxPoolGrad, Sum, Mean and UnsortedSegmentSum kernels equal the cpu backend's (tolerance: see test/helpers/wasm-vs-cpu.ts). */
import * as tf from '@tensorflow/tfjs';
import { describe, it } from 'vitest';
import { random, count, expectSame, useWasmAndCpu } from '../helpers/wasm-vs-cpu.js';

useWasmAndCpu();

describe('wasm MaxPoolGrad, Sum, Mean and UnsortedSegmentSum kernels equal the cpu backend', () => {
  it.each([
    ['2×2 stride 2 valid, even size', [3, 8, 8, 5], 2, 2, 'valid'],
    ['2×2 stride 2 valid, odd size', [2, 9, 7, 3], 2, 2, 'valid'],
    ['3×3 stride 2 same (overlapping windows)', [2, 9, 8, 4], 3, 2, 'same'],
    ['3×3 stride 1 same', [1, 6, 7, 2], 3, 1, 'same'],
    ['2×2 stride 1 valid', [2, 5, 5, 3], 2, 1, 'valid'],
    ['CNN layer size 8×26×26×32', [8, 26, 26, 32], 2, 2, 'valid'],
  ] as const)('MaxPoolGrad %s, with ties', async (_, shape, size, stride, pad) => {
    // Quantized ReLU output: many windows hold equal maxima (all zeros), where the first one must win.
    const x = random(count(shape), 10).map((v) => Math.max(0, Math.round(v * 4)));
    const yShape = tf.backend_util.computePool2DInfo([...shape] as [number, number, number, number], size, stride, 1, pad).outShape;
    const dy = random(count(yShape), 11);
    await expectSame('MaxPoolGrad', () => {
      const input = tf.tensor(x, [...shape]);
      const output = tf.maxPool(input as tf.Tensor4D, size, stride, pad);
      return tf.engine().runKernel(
        'MaxPoolGrad',
        { dy: tf.tensor(dy, yShape), input, output },
        { filterSize: size, strides: stride, pad },
      ) as tf.Tensor;
    });
  });

  it.each([
    ['bias gradient, pooled path', [64, 26, 26, 32], [0, 1, 2], false],
    ['bias gradient, prime row count', [1, 131, 521, 3], [0, 1, 2], false],
    ['dense bias gradient, JS path', [64, 256], [0], false],
    ['keepDims', [6, 5, 4], [0, 1], true],
    ['inner axis (stock kernel)', [6, 5, 4], [2], false],
    ['middle axis (stock kernel)', [6, 5, 4], [1], false],
  ] as const)('Sum, %s', async (_, shape, axes, keepDims) => {
    const x = random(count(shape), 12);
    await expectSame('Sum', () => tf.sum(tf.tensor(x, [...shape]), [...axes], keepDims));
  });

  it.each([
    ['leading axes, pooled path', [64, 16, 16, 24], [0, 1, 2], false],
    ['leading axes, JS path, keepDims', [5, 7, 3], [0, 1], true],
    ['inner axis (stock kernel)', [6, 5, 4], [2], false],
  ] as const)('Mean, %s', async (_, shape, axes, keepDims) => {
    const x = random(count(shape), 14);
    await expectSame('Mean', () => tf.mean(tf.tensor(x, [...shape]), [...axes], keepDims));
  });

  it('UnsortedSegmentSum, ids out of range dropped', async () => {
    const ids = [0, 3, 3, 1, 0, 4, 2, 3];
    const x = random(ids.length * 6, 13);
    await expectSame('UnsortedSegmentSum', () =>
      tf.unsortedSegmentSum(tf.tensor(x, [ids.length, 2, 3]), tf.tensor1d(ids, 'int32'), 4),
    );
  });
});
