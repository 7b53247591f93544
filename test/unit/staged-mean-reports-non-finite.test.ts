/**
 * The WebAssembly averaging kernels say whether the mean they stored holds a NaN or ±Inf, so the coordinator
 * checks θ̄ finite in the averaging pass itself. Every K (1, the specialised 2 and 4, the generic loop), in
 * the vector loop and in the n % 4 tail; the means stay bit-identical to meanRangeInto.
 */
import { describe, expect, it } from 'vitest';
import { StagedMean, meanRangeInto } from '@hwa/core';

describe.each([1, 2, 3, 4, 5])('K = %i', (k) => {
  const n = 1030; // 257 vectors of 4 and a tail of 2
  const inputs = () => Array.from({ length: k }, (_, j) => Float32Array.from({ length: n }, (_, i) => Math.sin(i + j) * 3e38));

  it('reports nothing for finite inputs, however large, and means as meanRangeInto does', () => {
    const stager = new StagedMean(k, 256);
    const out = new Float32Array(n);
    stager.meanRangeInto(out, inputs());
    expect(stager.takeNonFinite()).toBe(false);
    expect(out).toEqual(meanRangeInto(new Float32Array(n), inputs()));
  });

  it.each([
    ['NaN in the vector loop', 5, NaN],
    ['+Inf in the tail', n - 1, Infinity],
    ['-Inf in the last full vector', n - 3, -Infinity],
  ])('reports %s, once', (_what, at, value) => {
    const stager = new StagedMean(k, 256);
    const v = inputs();
    v[k - 1][at] = value;
    stager.meanRangeInto(new Float32Array(n), v);
    expect(stager.takeNonFinite()).toBe(true);
    expect(stager.takeNonFinite()).toBe(false);
  });
});
