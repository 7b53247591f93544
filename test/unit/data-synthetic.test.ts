import { describe, expect, it } from 'vitest';
import { ConfigError } from '@hwa/core';
import { loadDataset, syntheticDataset, type Dataset } from '@hwa/engine';

/** Bitwise equality of two float arrays (vitest's deep equality walks elements one by one: slow here). */
const same = (a: Float32Array, b: Float32Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

const base = { count: 200, shape: [28, 28, 1] as const, numClasses: 10, seed: 7 };

/** Nearest-class-mean classifier fitted on `train`, accuracy on `test`: a cheap proxy for "learnable". */
function nearestMeanAccuracy(train: Dataset, test: Dataset): number {
  const size = train.images.length / train.count;
  const means = new Float64Array(train.numClasses * size);
  const counts = new Array<number>(train.numClasses).fill(0);
  for (let n = 0; n < train.count; n++) {
    const k = train.labels[n];
    counts[k]++;
    for (let i = 0; i < size; i++) means[k * size + i] += train.images[n * size + i];
  }
  for (let k = 0; k < train.numClasses; k++) for (let i = 0; i < size; i++) means[k * size + i] /= counts[k];
  let correct = 0;
  for (let n = 0; n < test.count; n++) {
    let best = -1;
    let bestDist = Infinity;
    for (let k = 0; k < train.numClasses; k++) {
      let d = 0;
      for (let i = 0; i < size; i++) d += (test.images[n * size + i] - means[k * size + i]) ** 2;
      if (d < bestDist) [best, bestDist] = [k, d];
    }
    if (best === test.labels[n]) correct++;
  }
  return correct / test.count;
}

describe('synthetic dataset', () => {
  it('is a pure function of its options', () => {
    const a = syntheticDataset(base);
    const b = syntheticDataset(base);
    expect(same(a.images, b.images)).toBe(true);
    expect(a.labels).toEqual(b.labels);
    const c = syntheticDataset({ ...base, seed: 8 });
    expect(same(c.images, a.images)).toBe(false);
  });

  it('has the requested shape, balanced cycling labels and a default name', () => {
    const d = syntheticDataset({ ...base, count: 25, shape: [32, 32, 3] });
    expect(d.name).toBe('synthetic/train');
    expect(d.count).toBe(25);
    expect(d.shape).toEqual([32, 32, 3]);
    expect(d.images.length).toBe(25 * 32 * 32 * 3);
    expect([...d.labels.subarray(0, 12)]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    expect(d.images.every(Number.isFinite)).toBe(true);
  });

  it('gives a prefix of the larger set when count is smaller', () => {
    const small = syntheticDataset({ ...base, count: 33, shape: [5, 5, 3] });
    const large = syntheticDataset({ ...base, count: 100, shape: [5, 5, 3] });
    expect(same(small.images, large.images.subarray(0, small.images.length))).toBe(true);
  });

  it('draws different examples for train and test around the same class prototypes', () => {
    const train = syntheticDataset({ ...base, split: 'train' });
    const test = syntheticDataset({ ...base, split: 'test' });
    expect(test.name).toBe('synthetic/test');
    expect(same(test.images, train.images)).toBe(false);
    expect(nearestMeanAccuracy(train, test)).toBeGreaterThan(0.95);
  });

  it('is learnable in the 32×32×3 variant too, and harder with more noise', () => {
    const opts = { ...base, shape: [32, 32, 3] as const };
    const acc = nearestMeanAccuracy(syntheticDataset(opts), syntheticDataset({ ...opts, split: 'test' }));
    expect(acc).toBeGreaterThan(0.95);
    const noisy = { ...opts, count: 100, noise: 20 };
    const noisyAcc = nearestMeanAccuracy(syntheticDataset(noisy), syntheticDataset({ ...noisy, split: 'test' }));
    expect(noisyAcc).toBeLessThan(acc);
  });

  it('rejects bad options with a ConfigError naming the option', () => {
    expect(() => syntheticDataset({ ...base, count: -1 })).toThrow(ConfigError);
    expect(() => syntheticDataset({ ...base, shape: [28, 0, 1] })).toThrow(/shape/);
    expect(() => syntheticDataset({ ...base, numClasses: 300 })).toThrow(/numClasses/);
    expect(() => syntheticDataset({ ...base, noise: -1 })).toThrow(/noise/);
  });

  it("is what loadDataset('synthetic') returns: 2048/512 of 28×28×1 by default, limits set the counts", async () => {
    const { train, test } = await loadDataset('synthetic', { seed: 3 });
    expect([train.count, test.count]).toEqual([2048, 512]);
    expect(train.shape).toEqual([28, 28, 1]);
    const small = await loadDataset('synthetic', { seed: 3, trainLimit: 64, testLimit: 16 });
    expect([small.train.count, small.test.count]).toEqual([64, 16]);
    expect(same(small.train.images, train.images.subarray(0, 64 * 784))).toBe(true);
    expect(same(small.test.images, test.images.subarray(0, 16 * 784))).toBe(true);
  });
});
