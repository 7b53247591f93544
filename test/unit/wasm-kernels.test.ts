/**
 * hwa's wasm training kernels (packages/engine/src/backend/wasm-kernels.ts) against tfjs's pure-JS `cpu`
 * backend, the reference. Both backends live in this process; tensors are rebuilt on each from the same
 * Float32Arrays and results come back through dataSync().
 *
 * Tolerance: max |wasm − cpu| ≤ 1e-5 · max(1, max |cpu|) per output. XNNPACK sums the same float32 products
 * in a different order than the cpu backend's loops, so bit equality is not expected; the largest
 * reductions here (a few thousand terms) stay around 1e-6 of the output's scale.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { mulberry32 } from '@hwa/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  WASM_TRAINING_KERNELS,
  registerWasmTrainingKernels,
  unregisterWasmTrainingKernels,
} from '../../packages/engine/src/backend/wasm-kernels.js';

const TOLERANCE = 1e-5;

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

function random(n: number, seed: number): Float32Array {
  const next = mulberry32(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = next() * 2 - 1;
  return a;
}

const count = (shape: readonly number[]) => shape.reduce((p, d) => p * d, 1);

/** Runs `build` (which makes its tensors from arrays) on cpu, then on wasm; returns each output's values. */
async function onBoth(build: () => tf.Tensor | tf.Tensor[]): Promise<{ cpu: Float32Array[]; wasm: Float32Array[] }> {
  const run = async (backend: string) => {
    await tf.setBackend(backend);
    return tf.tidy(() => [build()].flat().map((t) => t.dataSync() as Float32Array));
  };
  const cpu = await run('cpu');
  const wasm = await run('wasm');
  return { cpu, wasm };
}

function expectClose(actual: Float32Array, expected: Float32Array, what: string): void {
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

async function expectSame(what: string, build: () => tf.Tensor | tf.Tensor[]): Promise<void> {
  const { cpu, wasm } = await onBoth(build);
  cpu.forEach((c, i) => expectClose(wasm[i], c, `${what} [output ${i}]`));
}

interface ConvCase {
  n: number;
  h: number;
  w: number;
  ci: number;
  co: number;
  k: [number, number];
  s: number | [number, number];
  pad: Pad;
  nchw?: boolean;
}

// Strides 1 and 2, 'same'/'valid'/explicit pads (incl. pads wider than the kernel), odd sizes, batch 1 and >1,
// channels 1 and >1, 1×1 (matmul) cases, im2col cases, and NCHW.
const CONV_CASES: ConvCase[] = [
  { n: 1, h: 5, w: 7, ci: 1, co: 1, k: [3, 3], s: 1, pad: 'same' },
  { n: 3, h: 9, w: 8, ci: 2, co: 4, k: [3, 2], s: 2, pad: 'valid' },
  { n: 2, h: 8, w: 8, ci: 3, co: 5, k: [3, 3], s: 2, pad: 'same' },
  { n: 2, h: 7, w: 6, ci: 4, co: 3, k: [5, 5], s: 1, pad: 'valid' },
  { n: 2, h: 6, w: 6, ci: 3, co: 2, k: [1, 1], s: 1, pad: 'valid' },
  { n: 2, h: 5, w: 5, ci: 2, co: 3, k: [1, 1], s: 2, pad: 'valid' },
  { n: 2, h: 9, w: 7, ci: 2, co: 3, k: [3, 3], s: 2, pad: [[0, 0], [1, 2], [0, 1], [0, 0]] },
  { n: 2, h: 6, w: 6, ci: 2, co: 3, k: [2, 2], s: 1, pad: [[0, 0], [3, 0], [0, 2], [0, 0]] },
  { n: 4, h: 11, w: 13, ci: 3, co: 6, k: [3, 3], s: [2, 1], pad: 'same' },
  { n: 5, h: 28, w: 28, ci: 1, co: 8, k: [3, 3], s: 1, pad: 'valid' },
  // few input channels, many output channels: the weight gradient goes through im2col
  { n: 3, h: 12, w: 10, ci: 1, co: 32, k: [3, 3], s: 2, pad: 'same' },
  { n: 2, h: 9, w: 9, ci: 2, co: 24, k: [2, 2], s: 1, pad: 'valid' },
  { n: 2, h: 8, w: 7, ci: 1, co: 16, k: [3, 3], s: 1, pad: [[0, 0], [2, 0], [1, 1], [0, 0]] },
  { n: 2, h: 7, w: 9, ci: 3, co: 4, k: [3, 3], s: 2, pad: 'same', nchw: true },
  { n: 2, h: 7, w: 9, ci: 3, co: 4, k: [3, 3], s: 1, pad: [[0, 0], [1, 0], [2, 1], [0, 0]], nchw: true },
];

function convShapes(c: ConvCase) {
  const x = c.nchw ? [c.n, c.ci, c.h, c.w] : [c.n, c.h, c.w, c.ci];
  const filter = [c.k[0], c.k[1], c.ci, c.co];
  const info = tf.backend_util.computeConv2DInfo(
    [c.n, c.h, c.w, c.ci],
    filter as [number, number, number, number],
    c.s,
    1,
    c.pad,
  );
  const dy = c.nchw ? [c.n, c.co, info.outHeight, info.outWidth] : [c.n, info.outHeight, info.outWidth, c.co];
  return { x, filter, dy };
}

/** Explicit pads are given in the tensor's layout: NCHW lists H and W third and fourth. */
function kernelPad(c: ConvCase): Pad {
  if (!c.nchw || !Array.isArray(c.pad)) return c.pad;
  const [n, h, w, ch] = c.pad;
  return [n, ch, h, w];
}

const label = (c: ConvCase) =>
  `x ${c.nchw ? 'NCHW' : 'NHWC'} [${c.n},${c.h},${c.w},${c.ci}] k ${c.k} co ${c.co} s ${c.s} pad ${JSON.stringify(c.pad)}`;

beforeAll(async () => {
  registerWasmTrainingKernels();
  expect(await tf.setBackend('wasm')).toBe(true);
  expect(await tf.setBackend('cpu')).toBe(true);
});

describe('wasm training kernels equal the cpu backend', () => {
  it.each(CONV_CASES.map((c) => [label(c), c] as const))('Conv2DBackpropFilter, %s', async (_, c) => {
    const s = convShapes(c);
    const x = random(count(s.x), 1);
    const dy = random(count(s.dy), 2);
    const attrs = { strides: c.s, pad: kernelPad(c), dataFormat: c.nchw ? 'NCHW' : 'NHWC', filterShape: s.filter };
    await expectSame(
      'Conv2DBackpropFilter',
      () => tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor(x, s.x), dy: tf.tensor(dy, s.dy) }, attrs) as tf.Tensor,
    );
  });

  it.each(CONV_CASES.map((c) => [label(c), c] as const))('Conv2DBackpropInput, %s', async (_, c) => {
    const s = convShapes(c);
    const filter = random(count(s.filter), 3);
    const dy = random(count(s.dy), 4);
    const attrs = { strides: c.s, pad: kernelPad(c), dataFormat: c.nchw ? 'NCHW' : 'NHWC', inputShape: s.x };
    await expectSame(
      'Conv2DBackpropInput',
      () =>
        tf.engine().runKernel('Conv2DBackpropInput', { dy: tf.tensor(dy, s.dy), filter: tf.tensor(filter, s.filter) }, attrs) as tf.Tensor,
    );
  });

  it.each([
    ['multiplier 1, stride 1 same', [2, 7, 6, 3], [3, 3, 3, 1], 1, 'same'],
    ['multiplier 2, stride 2 valid', [3, 9, 8, 2], [3, 3, 2, 2], 2, 'valid'],
    ['multiplier 3, stride 2 same, 5×5', [2, 11, 10, 4], [5, 5, 4, 3], 2, 'same'],
    ['explicit pads', [1, 6, 7, 2], [2, 3, 2, 1], 1, [[0, 0], [1, 2], [0, 3], [0, 0]]],
  ] as const)('DepthwiseConv2dNative gradients, %s', async (_, xShape, filterShape, stride, pad) => {
    const info = tf.backend_util.computeConv2DInfo(
      [...xShape] as [number, number, number, number],
      [...filterShape] as [number, number, number, number],
      stride,
      1,
      pad as Pad,
      undefined,
      true,
    );
    const x = random(count(xShape), 16);
    const filter = random(count(filterShape), 17);
    const dy = random(count(info.outShape), 18);
    const attrs = { strides: stride, dilations: 1, pad };
    await expectSame('DepthwiseConv2dNativeBackpropFilter', () =>
      tf.engine().runKernel(
        'DepthwiseConv2dNativeBackpropFilter',
        { x: tf.tensor(x, [...xShape]), dy: tf.tensor(dy, info.outShape) },
        { ...attrs, filterShape: [...filterShape] },
      ) as tf.Tensor,
    );
    await expectSame('DepthwiseConv2dNativeBackpropInput', () =>
      tf.engine().runKernel(
        'DepthwiseConv2dNativeBackpropInput',
        { dy: tf.tensor(dy, info.outShape), filter: tf.tensor(filter, [...filterShape]) },
        { ...attrs, inputShape: [...xShape] },
      ) as tf.Tensor,
    );
  });

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

  it.each([
    ['2×2 stride 2 valid, even size', [3, 8, 8, 5], 2, 2, 'valid'],
    ['2×2 stride 2 valid, odd size', [2, 9, 7, 3], 2, 2, 'valid'],
    ['3×3 stride 2 same (overlapping windows)', [2, 9, 8, 4], 3, 2, 'same'],
    ['3×3 stride 1 same', [1, 6, 7, 2], 3, 1, 'same'],
    ['2×2 stride 1 valid', [2, 5, 5, 3], 2, 1, 'valid'],
    ['CNN layer size 8×26×26×32', [8, 26, 26, 32], 2, 2, 'valid'],
  ] as const)('MaxPoolGrad %s, with ties', async (_, shape, size, stride, pad) => {
    // Quantized ReLU output: many windows hold equal maxima (all zeros), where the first one must win.
    const x = random(count(shape), 10).map((v) => Math.max(0, Math.round(v * 4)));
    const yShape = tf.backend_util.computePool2DInfo([...shape] as [number, number, number, number], size, stride, 1, pad).outShape;
    const dy = random(count(yShape), 11);
    await expectSame('MaxPoolGrad', () => {
      const input = tf.tensor(x, [...shape]);
      const output = tf.maxPool(input as tf.Tensor4D, size, stride, pad);
      return tf.engine().runKernel(
        'MaxPoolGrad',
        { dy: tf.tensor(dy, yShape), input, output },
        { filterSize: size, strides: stride, pad },
      ) as tf.Tensor;
    });
  });

  it.each([
    ['bias gradient, pooled path', [64, 26, 26, 32], [0, 1, 2], false],
    ['bias gradient, prime row count', [1, 131, 521, 3], [0, 1, 2], false],
    ['dense bias gradient, JS path', [64, 256], [0], false],
    ['keepDims', [6, 5, 4], [0, 1], true],
    ['inner axis (stock kernel)', [6, 5, 4], [2], false],
    ['middle axis (stock kernel)', [6, 5, 4], [1], false],
  ] as const)('Sum, %s', async (_, shape, axes, keepDims) => {
    const x = random(count(shape), 12);
    await expectSame('Sum', () => tf.sum(tf.tensor(x, [...shape]), [...axes], keepDims));
  });

  it.each([
    ['leading axes, pooled path', [64, 16, 16, 24], [0, 1, 2], false],
    ['leading axes, JS path, keepDims', [5, 7, 3], [0, 1], true],
    ['inner axis (stock kernel)', [6, 5, 4], [2], false],
  ] as const)('Mean, %s', async (_, shape, axes, keepDims) => {
    const x = random(count(shape), 14);
    await expectSame('Mean', () => tf.mean(tf.tensor(x, [...shape]), [...axes], keepDims));
  });

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

  it('UnsortedSegmentSum, ids out of range dropped', async () => {
    const ids = [0, 3, 3, 1, 0, 4, 2, 3];
    const x = random(ids.length * 6, 13);
    await expectSame('UnsortedSegmentSum', () =>
      tf.unsortedSegmentSum(tf.tensor(x, [ids.length, 2, 3]), tf.tensor1d(ids, 'int32'), 4),
    );
  });
});

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
