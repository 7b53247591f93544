/** hwa's wasm Tile kernels equal the cpu backend's (tolerance: see test/helpers/wasm-vs-cpu.ts). */
import * as tf from '@tensorflow/tfjs';
import { describe, it } from 'vitest';
import { random, count, expectSame, useWasmAndCpu } from '../helpers/wasm-vs-cpu.js';

useWasmAndCpu();

describe('wasm Tile kernels equal the cpu backend', () => {
  it.each([
    ['BatchNorm statistics to activation shape', [1, 1, 1, 5], [4, 3, 2, 1], 'float32'],
    ['every axis', [2, 3, 4], [3, 1, 2], 'float32'],
    ['inner axes only', [3, 2, 2], [1, 2, 3], 'int32'],
    ['identity', [3, 4], [1, 1], 'float32'],
    ['rank 1', [7], [5], 'bool'],
  ] as const)('Tile, %s', async (_, shape, reps, dtype) => {
    const x = random(count(shape), 15).map((v) => (dtype === 'float32' ? v : Math.round(v * 5)));
    await expectSame('Tile', () => tf.tile(tf.tensor(x, [...shape], dtype), [...reps]).toFloat());
  });
});
