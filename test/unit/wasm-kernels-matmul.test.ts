/** hwa's wasm BatchMatMul and _FusedMatMul kernels equal the cpu backend's (tolerance: see test/helpers/wasm-vs-cpu.ts). */
import * as tf from '@tensorflow/tfjs';
import { describe, it } from 'vitest';
import { random, count, expectSame, useWasmAndCpu } from '../helpers/wasm-vs-cpu.js';

useWasmAndCpu();

describe('wasm BatchMatMul and _FusedMatMul kernels equal the cpu backend', () => {
  const MATMUL_SHAPES: [number, number, number, number][] = [
    // [batch (0 = rank 2), M, K, N]
    [0, 5, 7, 3],
    [0, 1, 64, 33],
    [0, 40, 3, 17],
    [0, 64, 300, 96],
    [1, 9, 20, 11],
    [3, 6, 5, 4], // batched, small: wasm's own loop
    [4, 40, 50, 30], // batched, large: one XNNPACK product per matrix
  ];
  for (const transposeA of [false, true]) {
    for (const transposeB of [false, true]) {
      it.each(MATMUL_SHAPES)(`BatchMatMul transposeA=${transposeA} transposeB=${transposeB}, batch %i M %i K %i N %i`, async (batch, m, k, n) => {
        const outer = batch === 0 ? [] : [batch];
        const aShape = [...outer, ...(transposeA ? [k, m] : [m, k])];
        const bShape = [...outer, ...(transposeB ? [n, k] : [k, n])];
        const a = random(count(aShape), 5);
        const b = random(count(bShape), 6);
        await expectSame('BatchMatMul', () => {
          const bt = tf.tensor(b, bShape);
          // Twice with the same b: the second product may reuse XNNPACK's packed copy of b.
          return [tf.matMul(tf.tensor(a, aShape), bt, transposeA, transposeB), tf.matMul(tf.tensor(a, aShape), bt, transposeA, transposeB)];
        });
      });
    }
  }

  it.each([
    [false, false],
    [true, false],
    [false, true],
  ])('BatchMatMul, batched a times one broadcast b, transposeA=%s transposeB=%s', async (transposeA, transposeB) => {
    const [m, k, n] = [40, 50, 30];
    const aShape = [3, ...(transposeA ? [k, m] : [m, k])];
    const bShape = transposeB ? [n, k] : [k, n];
    const a = random(count(aShape), 21);
    const b = random(count(bShape), 22);
    await expectSame('BatchMatMul', () => [
      tf.matMul(tf.tensor(a, aShape), tf.tensor(b, bShape), transposeA, transposeB),
      tf.matMul(tf.tensor(b, [1, ...bShape]), tf.tensor(a, aShape), !transposeB, !transposeA),
    ]);
  });

  it.each([
    [false, true],
    [true, false],
    [true, true],
  ])('_FusedMatMul with bias and relu, transposeA=%s transposeB=%s', async (transposeA, transposeB) => {
    const [m, k, n] = [13, 21, 7];
    const aShape = transposeA ? [k, m] : [m, k];
    const bShape = transposeB ? [n, k] : [k, n];
    const a = random(m * k, 7);
    const b = random(k * n, 8);
    const bias = random(n, 9);
    await expectSame('_FusedMatMul', () =>
      tf.fused.matMul({
        a: tf.tensor(a, aShape) as tf.Tensor2D,
        b: tf.tensor(b, bShape) as tf.Tensor2D,
        transposeA,
        transposeB,
        bias: tf.tensor(bias),
        activation: 'relu',
      }),
    );
  });
});
