/**
 * Training kernels for the tfjs `wasm` backend (tfjs-backend-wasm 4.22).
 *
 * Stock wasm cannot train a conv net (no `Conv2DBackpropFilter`) and is slow at the rest of a backward pass:
 * its `Conv2DBackpropInput` is a scalar loop (~3.7 GFLOP/s) and its `BatchMatMul` leaves XNNPACK for a
 * scalar blocked loop whenever `transposeA`/`transposeB` is set (~2.5 GFLOP/s against ~37). The kernels here
 * are compositions of the fast stock kernels (XNNPACK `Conv2D`, untransposed `BatchMatMul`, `Transpose`,
 * `PadV2`, `AvgPool`, ...), called directly as kernel functions the way tfjs-backend-wasm's own kernels call
 * each other: no engine round trip, so intermediates are raw TensorInfos that are freed here with
 * `backend.disposeData` and never show up in `tf.memory().numTensors`. A few are plain loops over the wasm
 * heap where no fast kernel fits (MaxPoolGrad, Tile, UnsortedSegmentSum).
 *
 * Measured with bench/step.ts (2 cores, batch 64, ms per kernel call unless noted):
 *   matMul 64×784·784×256, transposeB: stock 8.9, here 1.0 (explicit transposes, packing the smaller side)
 *   batched matMul 8 × 64×128·128×64, transposeB: stock 4.4, here 0.8 (one XNNPACK product per matrix)
 *   Conv2DBackpropInput 64×11×11×64 → 64×13×13×32: stock 96, here 11–13 (one XNNPACK convolution)
 *   Conv2DBackpropFilter: stock none; CNN conv2 13, conv1 4 (im2col)
 *   MaxPoolGrad 2×2 over 64×26×26×32: stock 15–28, here 2–7 (both depend on the data)
 *   Sum of 64×26×26×32 over all but channels: stock 2.8–3.4, here 0.15–0.35
 *   Identity (the engine's clone of every tensor saved for backprop): stock a copy, here a reference
 *   whole steps, stock → here: mlp 17.3 → 3.6 ms, cnn (stock cannot train it) 53 ms, resnet20 3.6 → 1.1 s
 * (docs/measurements.md#wasm-kernels; one file per kernel family in this folder)
 */
import * as tf from '@tensorflow/tfjs';
import { makeCast, makeIdentity, makeTile } from './broadcast-and-copy.js';
import { BACKEND, STOCK, type TaggedConfig } from './common.js';
import { conv2DBackpropFilter, conv2DBackpropInput } from './conv.js';
import { depthwiseBackpropFilter, depthwiseBackpropInput } from './depthwise.js';
import { makeBatchMatMul, makeFusedMatMul } from './matmul.js';
import { makeLeadingReduce, maxPoolGrad, unsortedSegmentSum } from './reduce-and-pool.js';

/**
 * Gradients of Sum and Mean that broadcast dy with Tile. tfjs-core's multiply dy by `ones(x.shape)`, an array
 * that it fills in JS and uploads on every call: 20% of a ResNet-20 step on wasm (BatchNorm's moments are
 * Means over the whole activation). Multiplying by one is exact, so the values are the same. Gradients are
 * not per backend: while registered, these serve every backend in the process.
 */
function broadcastBack(dy: tf.Tensor, x: tf.Tensor, axis: number | number[]): tf.Tensor {
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const kept = x.shape.slice();
  for (const a of axes) kept[a] = 1;
  return tf.broadcastTo(tf.reshape(dy, kept), x.shape);
}

const GRADIENTS: readonly tf.GradConfig[] = [
  {
    kernelName: 'Sum',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => ({ x: () => broadcastBack(dy as tf.Tensor, saved[0], attrs.axis as number[]) }),
  },
  {
    kernelName: 'Mean',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const axes = tf.util.parseAxisParam(attrs.axis as number[], x.shape);
      const reduceSize = axes.reduce((n, a) => n * x.shape[a], 1);
      return { x: () => tf.div(broadcastBack(dy as tf.Tensor, x, axes), reduceSize) };
    },
  },
];

type TaggedGradient = tf.GradConfig & { [STOCK]?: tf.GradConfig | null };

interface Replacement {
  readonly name: string;
  /** Builds the kernel function, given the stock config it replaces (null if wasm has none). */
  readonly make: (stock: tf.KernelConfig | null) => tf.KernelFunc;
}

const REPLACEMENTS: readonly Replacement[] = [
  { name: 'Conv2DBackpropFilter', make: () => conv2DBackpropFilter },
  { name: 'Conv2DBackpropInput', make: () => conv2DBackpropInput },
  { name: 'DepthwiseConv2dNativeBackpropFilter', make: () => depthwiseBackpropFilter },
  { name: 'DepthwiseConv2dNativeBackpropInput', make: () => depthwiseBackpropInput },
  { name: 'BatchMatMul', make: makeBatchMatMul },
  { name: '_FusedMatMul', make: makeFusedMatMul },
  { name: 'UnsortedSegmentSum', make: () => unsortedSegmentSum },
  { name: 'MaxPoolGrad', make: () => maxPoolGrad },
  { name: 'Sum', make: (stock) => makeLeadingReduce(stock, 'Sum') },
  { name: 'Mean', make: (stock) => makeLeadingReduce(stock, 'Mean') },
  { name: 'Tile', make: makeTile },
  { name: 'Identity', make: makeIdentity },
  { name: 'Cast', make: makeCast },
];

/** Kernel names registerWasmTrainingKernels() installs for the `wasm` backend. */
export const WASM_TRAINING_KERNELS: readonly string[] = REPLACEMENTS.map((r) => r.name);

/**
 * Registers hwa's training kernels for the `wasm` backend, replacing stock ones of the same name (their
 * `setupFunc` is kept, so the backend still initializes them), and the Sum/Mean gradients above (for all
 * backends; same values). Idempotent: calling it again re-registers the same kernels around the same stock
 * ones. Works before or after `tf.setBackend('wasm')`; the module
 * `@tensorflow/tfjs-backend-wasm` must have been imported first (it registers the stock kernels).
 */
export function registerWasmTrainingKernels(): void {
  for (const { name, make } of REPLACEMENTS) {
    const current = tf.getKernel(name, BACKEND) as TaggedConfig | undefined;
    const stock = current == null ? null : STOCK in current ? (current[STOCK] ?? null) : current;
    if (current != null) tf.unregisterKernel(name, BACKEND);
    const config: TaggedConfig = {
      kernelName: name,
      backendName: BACKEND,
      kernelFunc: make(stock),
      [STOCK]: stock,
    };
    // setBackend('wasm') runs every setupFunc; the stock ones already ran if wasm was set before this call.
    if (stock?.setupFunc != null) config.setupFunc = stock.setupFunc;
    if (stock?.disposeFunc != null) config.disposeFunc = stock.disposeFunc;
    tf.registerKernel(config);
  }
  for (const gradient of GRADIENTS) {
    const current = tf.getGradient(gradient.kernelName) as TaggedGradient | undefined;
    const stock = current == null ? null : STOCK in current ? (current[STOCK] ?? null) : current;
    tf.registerGradient({ ...gradient, [STOCK]: stock } as TaggedGradient);
  }
}

/**
 * Puts the stock wasm kernels back (and removes the ones stock wasm lacks), undoing
 * registerWasmTrainingKernels(). For benchmarks and tests that compare against stock tfjs-backend-wasm.
 */
export function unregisterWasmTrainingKernels(): void {
  for (const { name } of REPLACEMENTS) {
    const current = tf.getKernel(name, BACKEND) as TaggedConfig | undefined;
    if (current == null || !(STOCK in current)) continue;
    tf.unregisterKernel(name, BACKEND);
    const stock = current[STOCK];
    if (stock != null) tf.registerKernel(stock);
  }
  for (const { kernelName } of GRADIENTS) {
    const current = tf.getGradient(kernelName) as TaggedGradient | undefined;
    if (current == null || !(STOCK in current)) continue;
    tf.unregisterGradient(kernelName);
    const stock = current[STOCK];
    if (stock != null) tf.registerGradient(stock);
  }
}
