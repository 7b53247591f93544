/**
 * What every wasm training kernel builds on: the stock kernel behind each of ours, calling stock kernels
 * directly as functions (no engine round trip), freeing intermediates, and the XNNPACK cost model that picks
 * between equivalent compositions.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

export type Info = tf.TensorInfo;
export type Attrs = tf.NamedAttrMap;
export type Inputs = tf.NamedTensorInfoMap;
export type Pad4 = [[number, number], [number, number], [number, number], [number, number]];

export const BACKEND = 'wasm';

/**
 * Every config registered here carries the stock config it replaced under this key, so that a second
 * registration (selectBackend called twice, or two copies of this module in one process) still finds the
 * stock kernel instead of wrapping, and then recursing into, its own replacement.
 */
export const STOCK = Symbol.for('hwa.wasm-training-kernels.stock');
export type TaggedConfig = tf.KernelConfig & { [STOCK]?: tf.KernelConfig | null };

/** The stock wasm kernel of this name (looking through our replacement), or null if wasm has none. */
function stockConfig(name: string): tf.KernelConfig | null {
  const current = tf.getKernel(name, BACKEND) as TaggedConfig | undefined;
  if (current == null) return null;
  return STOCK in current ? (current[STOCK] ?? null) : current;
}

/** Runs the stock wasm kernel `name` directly (no engine bookkeeping); the caller owns the result. */
export function run(name: string, backend: BackendWasm, inputs: Inputs, attrs: Attrs = {}): Info {
  const config = stockConfig(name);
  if (config == null) throw new Error(`hwa wasm kernels: the wasm backend has no '${name}' kernel`);
  const out = config.kernelFunc({ inputs, backend, attrs });
  if (Array.isArray(out)) throw new Error(`hwa wasm kernels: '${name}' returned ${out.length} outputs, expected 1`);
  return out;
}

export function free(backend: BackendWasm, ...infos: Info[]): void {
  for (const t of infos) backend.disposeData(t.dataId);
}

export function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Same data, new shape: shares the buffer (a reference, like wasm's own Reshape). */
export function reshape(backend: BackendWasm, x: Info, shape: number[]): Info {
  if (size(shape) !== size(x.shape)) throw new Error(`hwa wasm kernels: cannot reshape [${x.shape}] to [${shape}]`);
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape, dtype: x.dtype };
}

/**
 * Transpose, or a reshape when the permutation only moves axes of size 1 (then the memory order is
 * unchanged and a copy would be wasted; e.g. x [N,H,W,1] → [1,H,W,N] in the first conv layer).
 */
export function permute(backend: BackendWasm, x: Info, perm: number[]): Info {
  const outShape = perm.map((p) => x.shape[p]);
  const kept = perm.filter((p) => x.shape[p] !== 1);
  if (kept.every((p, i) => i === 0 || kept[i - 1] < p)) return reshape(backend, x, outShape);
  return run('Transpose', backend, { x }, { perm });
}

/** Copies x[begin : begin+sizes] (wasm's Slice is a JS loop over the innermost runs, so keep them long). */
export function slice(backend: BackendWasm, x: Info, begin: number[], sizes: number[]): Info {
  if (sizes.every((s, i) => s === x.shape[i])) return reshape(backend, x, [...x.shape]);
  return run('Slice', backend, { x }, { begin, size: sizes });
}

export function conv2d(backend: BackendWasm, x: Info, filter: Info, pads: Pad4, dilations: [number, number]): Info {
  return run(
    'Conv2D',
    backend,
    { x, filter },
    { strides: [1, 1], pad: pads, dataFormat: 'NHWC', dilations, dimRoundingMode: 'floor' },
  );
}

/**
 * Cost model of XNNPACK work, in nanoseconds on this class of machine (bench/step.ts, 2 cores):
 * XNNPACK's fully-connected operator packs its right operand b [K,N] into its own layout on creation, which
 * costs ~4.7 ns per float, ten times a Transpose (~0.5 ns per float). Training creates fresh weights every
 * step, so packing dominates the small products. An extra kernel call costs ~10 µs of JS, but the
 * measured MLP shapes only pick the faster variant when it is charged 30 µs (the GEMM itself is less
 * efficient on some of the swapped shapes, which this model does not see).
 */
export const NS_PER_TRANSPOSED_FLOAT = 0.5;
export const NS_PER_PACKED_FLOAT = 4.7;
export const NS_PER_KERNEL_CALL = 30_000;

/** Runs the kernel registered now (hwa's, if registered), not the stock one. */
export function runCurrent(name: string, backend: BackendWasm, inputs: Inputs, attrs: Attrs): Info {
  return tf.getKernel(name, BACKEND).kernelFunc({ inputs, backend, attrs }) as Info;
}
