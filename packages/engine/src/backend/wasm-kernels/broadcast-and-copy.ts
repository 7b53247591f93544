/** Tile, Identity and Cast: block copies, or no copy at all where the data can be shared. */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type Info, reshape, size } from './common.js';

/**
 * Tile as block copies on the wasm heap (memcpy via copyWithin, doubling), for every dtype but string. Stock
 * wasm loops element by element: BatchNorm's gradient tiles its per-channel statistics to the activation
 * shape, which made Tile the largest kernel of a ResNet-20 step (21 calls, 950 ms of 2.4 s).
 */
export function makeTile(stock: tf.KernelConfig | null): tf.KernelFunc {
  return (args) => {
    const backend = args.backend as BackendWasm;
    const x = args.inputs.x as Info;
    const reps = (args.attrs ?? {}).reps as number[];
    if (x.dtype === 'string' || size(x.shape) === 0 || reps.length !== x.shape.length) {
      if (stock == null) throw new Error('hwa wasm Tile: the wasm backend has no stock Tile');
      return stock.kernelFunc(args);
    }
    const rank = x.shape.length;
    const outShape = x.shape.map((d, i) => d * reps[i]);
    const out = backend.makeOutput(outShape, x.dtype);
    const o = backend.typedArrayFromHeap(out);
    const xs = backend.typedArrayFromHeap(x);
    const xStrides = new Array<number>(rank);
    const oStrides = new Array<number>(rank);
    for (let i = rank - 1, xs1 = 1, os1 = 1; i >= 0; i--) {
      xStrides[i] = xs1;
      oStrides[i] = os1;
      xs1 *= x.shape[i];
      os1 *= outShape[i];
    }
    // From this axis inward nothing is repeated, so x's sub-block is one contiguous copy.
    const untiled = reps.map((_, i) => reps.slice(i).every((r) => r === 1));
    // Writes x's sub-block at `level` into o at `at`, then repeats it reps[level] times along that axis.
    const fill = (level: number, from: number, at: number): void => {
      const d = x.shape[level];
      if (untiled[level]) {
        o.set(xs.subarray(from, from + d * xStrides[level]), at);
        return;
      }
      if (level === rank - 1) {
        o.set(xs.subarray(from, from + d), at);
      } else {
        for (let i = 0; i < d; i++) fill(level + 1, from + i * xStrides[level], at + i * oStrides[level]);
      }
      const block = d * oStrides[level];
      for (let done = 1; done < reps[level]; ) {
        const n = Math.min(done, reps[level] - done);
        o.copyWithin(at + done * block, at, at + n * block);
        done += n;
      }
    };
    if (rank === 0) o.set(xs);
    else fill(0, 0, 0);
    return out;
  };
}

/**
 * Identity (tf.clone) sharing the buffer by reference count, as the cpu backend's Identity does, instead of
 * wasm's copy. tfjs never writes a buffer in place, and the engine clones every tensor it saves for the
 * backward pass (Engine.saveTensorsForBackwardMode): 31 full copies per CNN step, 1.2 ms.
 */
export function makeIdentity(stock: tf.KernelConfig | null): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x as Info;
    if (x.dtype === 'string' && stock != null) return stock.kernelFunc(args);
    return reshape(args.backend as BackendWasm, x, [...x.shape]);
  };
}

/** Cast to the dtype a tensor already has is an Identity too (ReLU's gradient casts its float32 mask). */
export function makeCast(stock: tf.KernelConfig | null): tf.KernelFunc {
  return (args) => {
    const x = args.inputs.x as Info;
    const dtype = (args.attrs ?? {}).dtype as tf.DataType;
    if (dtype === x.dtype && dtype !== 'string') return reshape(args.backend as BackendWasm, x, [...x.shape]);
    if (stock == null) throw new Error('hwa wasm Cast: the wasm backend has no stock Cast');
    return stock.kernelFunc(args);
  };
}
