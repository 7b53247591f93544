/**
 * Registration of hwa's wasm training kernels: a small conv net's gradients through all of them equal the cpu
 * backend's, nothing leaks, and registering is idempotent and reversible.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  WASM_TRAINING_KERNELS,
  registerWasmTrainingKernels,
  unregisterWasmTrainingKernels,
} from '@hwa/engine';
import { CONV_CASES, convShapes } from '../helpers/conv-cases.js';
import { random, count, expectClose, expectSame, useWasmAndCpu } from '../helpers/wasm-vs-cpu.js';

useWasmAndCpu();

describe('a small conv net trains the same on wasm as on cpu', () => {
  it('gradients of the loss w.r.t. every weight agree to 1e-5', async () => {
    const batch = 6;
    const input = [12, 12, 2] as const;
    const layers = () => [
      // relu inside the layer: tfjs-layers runs conv + bias + relu unfused under a gradient tape
      tf.layers.conv2d({ inputShape: [...input], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }),
      // batch statistics in training mode: the gradient tiles and reduces per channel (Tile, Mean, Sum)
      tf.layers.batchNormalization({}),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      // linear activation: the fused conv's custom gradient (Conv2DBackpropInput/Filter, stride 2 'valid')
      tf.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'valid' }),
      tf.layers.activation({ activation: 'relu' }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 8, activation: 'relu' }),
      tf.layers.dense({ units: 5 }),
    ];
    const x = random(batch * count(input), 20);
    const labels = Array.from({ length: batch }, (_, i) => (i * 3) % 5);
    const gradients = async (backend: string) => {
      await tf.setBackend(backend);
      const model = tf.sequential({ layers: layers() });
      // Same weights on both backends, from the test's own generator.
      model.setWeights(model.getWeights().map((w, i) => tf.tensor(random(w.size, 100 + i).map((v) => v * 0.5), w.shape)));
      const weights = model.trainableWeights.map((w) => w.read() as tf.Variable);
      const out = tf.tidy(() => {
        const xs = tf.tensor4d(x, [batch, ...input]);
        const ys = tf.oneHot(tf.tensor1d(labels, 'int32'), 5);
        const { value, grads } = tf.variableGrads(
          () => tf.losses.softmaxCrossEntropy(ys, model.apply(xs, { training: true }) as tf.Tensor) as tf.Scalar,
          weights,
        );
        return [value, ...weights.map((w) => grads[w.name])].map((t) => t.dataSync() as Float32Array);
      });
      model.dispose();
      return out;
    };
    const cpu = await gradients('cpu');
    const wasm = await gradients('wasm');
    expect(wasm.length).toBe(11); // loss + 4 kernels + 4 biases + BatchNorm γ and β
    cpu.forEach((c, i) => expectClose(wasm[i], c, i === 0 ? 'loss' : `gradient ${i - 1}`));
  });
});

describe('registration', () => {
  it('leaks no tensors and no wasm buffers', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const c = CONV_CASES[2];
    const s = convShapes(c);
    const inputs = tf.tidy(() => ({
      x: tf.tensor(random(count(s.x), 1), s.x),
      dy: tf.tensor(random(count(s.dy), 2), s.dy),
      filter: tf.tensor(random(count(s.filter), 3), s.filter),
      a: tf.tensor(random(64 * 30, 4), [64, 30]),
      b: tf.tensor(random(30 * 20, 5), [20, 30]),
      big: tf.tensor(random(64 * 32 * 40, 6), [64, 32, 40]),
      pool: tf.tensor(random(2 * 8 * 8 * 3, 7), [2, 8, 8, 3]),
      depthwise: tf.tensor(random(3 * 3 * 3 * 2, 8), [3, 3, 3, 2]),
      batched: tf.tensor(random(4 * 40 * 50, 9), [4, 40, 50]),
    }));
    const step = () =>
      tf.tidy(() => {
        const conv = { strides: c.s, pad: c.pad, dataFormat: 'NHWC' };
        tf.engine().runKernel('Conv2DBackpropFilter', { x: inputs.x, dy: inputs.dy }, { ...conv, filterShape: s.filter });
        tf.engine().runKernel('Conv2DBackpropInput', { dy: inputs.dy, filter: inputs.filter }, { ...conv, inputShape: s.x });
        tf.matMul(inputs.a, inputs.b, false, true);
        tf.matMul(inputs.a, inputs.a, true, false);
        tf.matMul(inputs.b, inputs.a, false, true);
        tf.matMul(inputs.batched, inputs.batched, false, true);
        tf.sum(inputs.big, [0, 1]);
        tf.mean(inputs.big, [0, 1]);
        tf.tile(inputs.b, [2, 3]);
        tf.grad((p: tf.Tensor) => tf.maxPool(p as tf.Tensor4D, 2, 2, 'valid').sum())(inputs.pool);
        tf.grads((p: tf.Tensor, f: tf.Tensor) => tf.depthwiseConv2d(p as tf.Tensor4D, f as tf.Tensor4D, 2, 'same').sum())([
          inputs.pool,
          inputs.depthwise,
        ]);
      });
    step(); // first call may allocate lasting state (XNNPACK operators for the kept inputs)
    const tensors = tf.memory().numTensors;
    const buffers = backend.numDataIds();
    for (let i = 0; i < 3; i++) step();
    expect(tf.memory().numTensors).toBe(tensors);
    expect(backend.numDataIds()).toBe(buffers);
    tf.dispose(Object.values(inputs));
  });

  it("replaces Sum's and Mean's gradients by ones that give tfjs-core's values", async () => {
    await tf.setBackend('cpu');
    const x = random(4 * 5 * 6, 30);
    const grads = () =>
      tf.tidy(() => {
        const t = tf.tensor(x, [4, 5, 6]);
        const f = (v: tf.Tensor) => tf.add(tf.sum(tf.mul(v, v), [0, 2]).square().sum(), tf.mean(v, 1).sin().sum());
        return tf.grad(f)(t).dataSync() as Float32Array;
      });
    const ours = grads();
    unregisterWasmTrainingKernels();
    const stock = grads();
    registerWasmTrainingKernels();
    expect(ours).toEqual(stock);
  });

  it('is idempotent and reversible', async () => {
    registerWasmTrainingKernels();
    registerWasmTrainingKernels();
    for (const name of WASM_TRAINING_KERNELS) expect(tf.getKernel(name, 'wasm'), name).toBeDefined();
    // Still computes (a second registration must not wrap, and recurse into, its own replacement).
    await expectSame('BatchMatMul after re-registration', () =>
      tf.matMul(tf.tensor(random(12, 1), [3, 4]), tf.tensor(random(20, 2), [5, 4]), false, true),
    );
    unregisterWasmTrainingKernels();
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeUndefined(); // stock wasm has none
    expect(tf.getKernel('BatchMatMul', 'wasm')).toBeDefined(); // stock one is back
    registerWasmTrainingKernels();
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
  });
});
