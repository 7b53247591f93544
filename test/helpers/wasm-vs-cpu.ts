/**
 * hwa's wasm training kernels against tfjs's pure-JS `cpu` backend, the reference. Both backends live in the
 * test's process; tensors are rebuilt on each from the same Float32Arrays and results come back through
 * dataSync().
 *
 * Tolerance: max |wasm − cpu| ≤ 1e-5 · max(1, max |cpu|) per output. XNNPACK sums the same float32 products
 * in a different order than the cpu backend's loops, so bit equality is not expected; the largest
 * reductions in these tests (a few thousand terms) stay around 1e-6 of the output's scale.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { mulberry32 } from '@hwa/core';
import { beforeAll, expect } from 'vitest';
import { registerWasmTrainingKernels } from '@hwa/engine';

export const TOLERANCE = 1e-5;

export type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

export function random(n: number, seed: number): Float32Array {
  const next = mulberry32(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = next() * 2 - 1;
  return a;
}

export const count = (shape: readonly number[]) => shape.reduce((p, d) => p * d, 1);

/** Runs `build` (which makes its tensors from arrays) on cpu, then on wasm; returns each output's values. */
export async function onBoth(build: () => tf.Tensor | tf.Tensor[]): Promise<{ cpu: Float32Array[]; wasm: Float32Array[] }> {
  const run = async (backend: string) => {
    await tf.setBackend(backend);
    return tf.tidy(() => [build()].flat().map((t) => t.dataSync() as Float32Array));
  };
  const cpu = await run('cpu');
  const wasm = await run('wasm');
  return { cpu, wasm };
}

export function expectClose(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length, `${what}: size`).toBe(expected.length);
  let scale = 1;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    scale = Math.max(scale, Math.abs(expected[i]));
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= worst)) worst = d; // NaN-safe: a NaN difference sticks
  }
  expect(worst, `${what}: max |wasm − cpu| (scale ${scale})`).toBeLessThanOrEqual(TOLERANCE * scale);
}

export async function expectSame(what: string, build: () => tf.Tensor | tf.Tensor[]): Promise<void> {
  const { cpu, wasm } = await onBoth(build);
  cpu.forEach((c, i) => expectClose(wasm[i], c, `${what} [output ${i}]`));
}

/** Registers hwa's kernels and initializes both backends once for the calling test file. */
export function useWasmAndCpu(): void {
  beforeAll(async () => {
    registerWasmTrainingKernels();
    expect(await tf.setBackend('wasm')).toBe(true);
    expect(await tf.setBackend('cpu')).toBe(true);
  });
}
