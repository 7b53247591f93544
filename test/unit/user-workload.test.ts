/**
 * The parts behind user models and data: the built-in losses against hand-computed values, Adam and AdamW
 * steps against PyTorch's update written out in float64, every data form read into the same examples, and
 * --val-fraction's split.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { DataError } from '@hwa/core';
import { batchSums, holdOut, makeObjective, OptimizerStep, selectBackend, toExamples } from '@hwa/engine';

beforeAll(async () => {
  await selectBackend('wasm');
});

const scalar = (t: tf.Tensor) => t.dataSync()[0];

describe('losses', () => {
  const y = tf.tensor2d([[1, 0], [0, 1]]);
  const logits = tf.tensor2d([[2, 0], [1, 3]]);
  it('softmax cross-entropy (one-hot) and its sparse form agree with −log softmax and count argmax hits', () => {
    const expected = (-Math.log(Math.exp(2) / (Math.exp(2) + 1)) - Math.log(Math.exp(3) / (Math.exp(1) + Math.exp(3)))) / 2;
    for (const [name, labels] of [['softmax-cross-entropy', y], ['sparse-softmax-cross-entropy', tf.tensor1d([0, 1])]] as const) {
      const o = makeObjective(name);
      expect(scalar(o.loss(labels, logits))).toBeCloseTo(expected, 5);
      const sums = batchSums(o, labels, logits);
      expect(scalar(sums.loss)).toBeCloseTo(2 * expected, 5);
      expect(scalar(sums.correct!)).toBe(2);
    }
  });
  it('sigmoid cross-entropy counts an example correct only when every label is', () => {
    const o = makeObjective('sigmoid-cross-entropy');
    const labels = tf.tensor2d([[1, 0], [1, 1]]);
    const p = tf.tensor2d([[3, -1], [2, -2]]);
    const bce = (z: number, t: number) => Math.max(z, 0) - z * t + Math.log(1 + Math.exp(-Math.abs(z)));
    expect(scalar(o.loss(labels, p))).toBeCloseTo((bce(3, 1) + bce(-1, 0) + bce(2, 1) + bce(-2, 1)) / 4, 5);
    expect(scalar(batchSums(o, labels, p).correct!)).toBe(1);
  });
  it('mse and mae have no accuracy; a metric of per-example values is summed', () => {
    const t = tf.tensor2d([[1], [3]]);
    const p = tf.tensor2d([[2], [1]]);
    expect(scalar(makeObjective('mse').loss(t, p))).toBeCloseTo(2.5, 6);
    const mae = makeObjective('mae', { err: (a: tf.Tensor, b: tf.Tensor) => a.sub(b).abs().mean(1) });
    const sums = batchSums(mae, t, p);
    expect(scalar(sums.loss)).toBeCloseTo(3, 6);
    expect(sums.correct).toBeNull();
    expect(scalar(sums.metrics[0])).toBeCloseTo(3, 6);
  });
  it('names the problem with a bad loss or metric', () => {
    expect(() => makeObjective('hinge' as never, {}, '--loss')).toThrow(/--loss: unknown loss 'hinge'; expected one of softmax-cross-entropy/);
    expect(() => makeObjective('mse', { r2: 3 }, './net.js')).toThrow(/\.\/net\.js: metric 'r2' is number, expected a function/);
  });
});

describe('Adam and AdamW', () => {
  /** One weight w (a 1×1 dense kernel), loss mean((w·x − y)²) on x = 1, y = 0: gradient 2w. */
  function run(optimizer: 'adam' | 'adamw', steps: number): number[] {
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [1], units: 1, useBias: false, kernelInitializer: tf.initializers.constant({ value: 0.5 }) })] });
    const opt = new OptimizerStep(model, { optimizer, momentum: 0, weightDecay: 0.1, beta1: 0.9, beta2: 0.99, epsilon: 1e-8 }, (y, p) => tf.losses.meanSquaredError(y, p) as tf.Scalar);
    const out: number[] = [];
    for (let t = 1; t <= steps; t++) {
      opt.run(tf.tensor2d([[1]]), tf.tensor2d([[0]]), 0.1, t);
      out.push(model.getWeights()[0].dataSync()[0]);
    }
    return out;
  }
  /** PyTorch's Adam / AdamW on the same problem, in float64. */
  function reference(optimizer: 'adam' | 'adamw', steps: number): number[] {
    let w = 0.5, m = 0, s = 0;
    const out: number[] = [];
    for (let t = 1; t <= steps; t++) {
      let g = 2 * w;
      if (optimizer === 'adam') g += 0.1 * w;
      else w -= 0.1 * 0.1 * w;
      m = 0.9 * m + 0.1 * g;
      s = 0.99 * s + 0.01 * g * g;
      w -= (0.1 / (1 - 0.9 ** t)) * (m / (Math.sqrt(s / (1 - 0.99 ** t)) + 1e-8));
      out.push(w);
    }
    return out;
  }
  for (const optimizer of ['adam', 'adamw'] as const)
    it(`${optimizer} follows PyTorch's update for 5 steps`, () => {
      const got = run(optimizer, 5);
      reference(optimizer, 5).forEach((w, i) => expect(got[i]).toBeCloseTo(w, 5));
    });
});

describe('data forms', () => {
  const xs = [[1, 2], [3, 4], [5, 6]];
  const ys = [0.5, 1.5, 2.5];
  it('arrays, tensors, a tf.data.Dataset of batches and an async iterable give the same examples', async () => {
    const forms = [
      { xs, ys },
      { xs: tf.tensor2d(xs), ys: tf.tensor1d(ys) },
      tf.data.zip({ xs: tf.data.array(xs), ys: tf.data.array(ys) }).batch(2),
      (async function* () {
        yield { xs: [xs[0]], ys: [ys[0]] };
        yield { xs: xs.slice(1), ys: ys.slice(1) };
      })(),
    ];
    for (const form of forms) {
      const e = await toExamples(form as never, 'train');
      expect(e.count).toBe(3);
      expect(e.xShape).toEqual([2]);
      expect(e.yShape).toEqual([]);
      expect(Array.from(e.x)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(Array.from(e.y)).toEqual(ys);
    }
  });
  it('names the split and batch of a malformed one', async () => {
    await expect(toExamples({ xs: [[1, 2]], ys: [1, 2] }, './data.js: train')).rejects.toThrow(/\.\/data\.js: train, batch 0: xs has 1 examples, ys has 2/);
    await expect(toExamples(42 as never, './data.js: test')).rejects.toThrow(DataError);
  });
  it('--val-fraction holds out the same examples from the same seed, none twice', async () => {
    const e = await toExamples({ xs: Array.from({ length: 20 }, (_, i) => [i]), ys: Array.from({ length: 20 }, (_, i) => i) }, 'x/train');
    const a = holdOut(e, 0.25, 3);
    const b = holdOut(e, 0.25, 3);
    expect(a.validation.count).toBe(5);
    expect(Array.from(a.validation.y)).toEqual(Array.from(b.validation.y));
    expect(new Set([...a.train.y, ...a.validation.y]).size).toBe(20);
    expect(a.validation.name).toBe('x/validation');
  });
});
