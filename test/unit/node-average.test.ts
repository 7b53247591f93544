/**
 * Two-level averaging's arithmetic (packages/core/src/node-average.ts): node means weighted by their worker
 * counts equal the flat mean of all workers to 1e-6, checked against a float64 mean computed here.
 */
import { ConfigError, combineStats, meanRangeInto, mulberry32, weightedMean, weightedMeanCodesRangeInto, weightedMeanRangeInto } from '@hwa/core';
import { decodeRange, decodeTable, encodeRange } from '@hwa/protocol';
import { describe, expect, it } from 'vitest';
import { maxAbsDiff } from '../helpers/vectors.js';

function vectors(k: number, n: number, seed: number): Float32Array[] {
  const random = mulberry32(seed);
  return Array.from({ length: k }, () => Float32Array.from({ length: n }, () => (random() - 0.5) * 4));
}

/** The flat mean in float64, element by element: the independent reference. */
function flatMean(inputs: Float32Array[]): Float64Array {
  const out = new Float64Array(inputs[0].length);
  for (let i = 0; i < out.length; i++) out[i] = inputs.reduce((a, v) => a + v[i], 0) / inputs.length;
  return out;
}

/** Node means of `sizes` consecutive groups of `inputs`, then their mean weighted by the group sizes. */
function twoLevel(inputs: Float32Array[], sizes: number[]): Float32Array {
  const n = inputs[0].length;
  let at = 0;
  const nodes = sizes.map((g) => {
    const node = meanRangeInto(new Float32Array(n), inputs.slice(at, at + g));
    at += g;
    return node;
  });
  return weightedMeanRangeInto(new Float32Array(n), nodes, sizes);
}

describe('weighted mean of node means', () => {
  const n = 4096;

  it('equals the flat mean to 1e-6 for even and uneven nodes', () => {
    const inputs = vectors(8, n, 12);
    const reference = flatMean(inputs);
    for (const sizes of [[4, 4], [2, 2, 2, 2], [5, 3], [1, 7], [3, 1, 4]]) {
      const diff = maxAbsDiff(twoLevel(inputs, sizes), reference);
      expect(diff, `nodes ${sizes.join('+')}`).toBeLessThanOrEqual(1e-6);
      expect(diff).toBeGreaterThanOrEqual(0);
    }
  });

  it('is the plain mean, bit for bit, when every node counts the same number of workers', () => {
    const nodes = vectors(3, n, 5);
    expect(weightedMeanRangeInto(new Float32Array(n), nodes, [4, 4, 4])).toEqual(meanRangeInto(new Float32Array(n), nodes));
  });

  it('weights by worker count: a node of three pulls three times as hard as a node of one', () => {
    const out = weightedMeanRangeInto(new Float32Array(2), [Float32Array.of(1, 10), Float32Array.of(5, 2)], [3, 1]);
    expect(Array.from(out)).toEqual([2, 8]);
  });

  it('over 16-bit codes equals decoding first, then the float32 weighted mean', () => {
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const nodes = vectors(3, n, 9);
      const codes = nodes.map((v) => {
        const bytes = new Uint8Array(n * 2);
        encodeRange(v, 0, n, dtype, bytes);
        return new Uint16Array(bytes.buffer);
      });
      const decoded = codes.map((c) => {
        const out = new Float32Array(n);
        decodeRange(new Uint8Array(c.buffer), n, dtype, out, 0);
        return out;
      });
      const expected = weightedMeanRangeInto(new Float32Array(n), decoded, [2, 1, 3]);
      expect(weightedMeanCodesRangeInto(new Float32Array(n), codes, decodeTable(dtype), [2, 1, 3])).toEqual(expected);
    }
  });

  it('refuses weights that are no worker counts, naming the weight', () => {
    const nodes = vectors(2, 4, 1);
    expect(() => weightedMeanRangeInto(new Float32Array(4), nodes, [1, 0])).toThrow(ConfigError);
    expect(() => weightedMeanRangeInto(new Float32Array(4), nodes, [1, 0])).toThrow(/weight 0 is not a positive integer/);
    expect(() => weightedMeanRangeInto(new Float32Array(4), nodes, [1])).toThrow(/2 inputs but 1 weights/);
  });
});

describe('node stats', () => {
  it("the coordinator's loss, weighted by worker counts, is the flat mean loss of the workers that counted", () => {
    const losses = [0.5, 1.5, 2, 4, 3];
    const counted = [true, true, false, true, true];
    const nodeA = combineStats(losses.slice(0, 3).map((loss) => ({ loss, computeMs: loss * 10, samples: 16 })), counted.slice(0, 3));
    const nodeB = combineStats(losses.slice(3).map((loss) => ({ loss, computeMs: loss * 10, samples: 16, lr: 0.1 })), counted.slice(3));
    expect(nodeA).toEqual({ loss: 1, computeMs: 20, samples: 48, lr: undefined });
    expect(nodeB).toEqual({ loss: 3.5, computeMs: 40, samples: 32, lr: 0.1 });
    const flat = losses.filter((_, j) => counted[j]);
    expect(weightedMean([nodeA.loss as number, nodeB.loss as number], [2, 2])).toBeCloseTo(flat.reduce((a, b) => a + b) / flat.length, 12);
  });

  it('a node with no counted worker sends no loss', () => {
    expect(combineStats([{ loss: null, computeMs: 1, samples: 8 }], [false]).loss).toBeNull();
  });
});
